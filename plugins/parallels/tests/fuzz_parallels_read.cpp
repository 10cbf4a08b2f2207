// Fuzz target: Parallels probe, info and check, the writer of convert -n (open_writer, a few writes into a
// bounded in-memory copy), then the reader (open, status() and read() over the whole disk with
// bounded calls and memory: hosted_read.h's fuzz_read_walk) on arbitrary bytes.
#include "fuzz_small_writer.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "prl_check.h"
#include "prl_format.h"
#include "prl_read.h"
#include "prl_write.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {
struct NullSink final : instar::guest::CheckSink {
    void line(const char*, std::size_t) override {}
};
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::parallels::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::parallels::info, dev, {}, 1 << 20);
    instar::hosted::BudgetAllocator alloc(1 << 20);
    NullSink sink;
    instar::guest::CheckResult res;
    // Both profiles: 7.2's and 10.0's passes differ (data_off, duplicates).
    for (const std::uint32_t v : {70200u, 100000u}) {
        const instar::guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, v, nullptr};
        (void)instar::parallels::check(req, sink, &res);
    }
    // The first, a middle and the last sector of a small disk (the writer checks its bounds).
    instar::hosted::small_writer_fuzz::fuzz_writes(data, size, &instar::parallels::open_writer,
                                                   {{0, 512, false}, {1 << 20, 4096, false}, {3u << 20, 8192, true}});
    return instar::hosted::fuzz_read_walk(instar::parallels::open, data, size);
}
