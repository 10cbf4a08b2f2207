// Fuzz target: VDI probe, info and check, then the reader (open, status() and read() over the whole
// disk with bounded calls and memory: hosted_read.h's fuzz_read_walk) on arbitrary bytes.
#include "hosted_read.h"
#include "hosted_support.h"
#include "vdi_check.h"
#include "vdi_format.h"
#include "vdi_read.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {
struct NullSink final : instar::guest::CheckSink {
    void line(const char*, std::size_t) override {}
};
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::vdi::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::vdi::info, dev, {}, 1 << 20);
    instar::hosted::BudgetAllocator alloc(1 << 20);
    NullSink sink;
    instar::guest::CheckResult res;
    const instar::guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100000, nullptr};
    (void)instar::vdi::check(req, sink, &res);
    return instar::hosted::fuzz_read_walk(instar::vdi::open, data, size);
}
