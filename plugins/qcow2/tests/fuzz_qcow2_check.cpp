// Fuzz target: qcow2 check (qemu-img check's walk) on arbitrary bytes with a bounded allocator. It
// must never crash, hang or exceed its budget; its lines must be complete and its counters sane.
#include "hosted_support.h"
#include "qcow2_check.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct Lines final : instar::guest::CheckSink {
    std::size_t bytes = 0;
    void line(const char* text, std::size_t len) override {
        if (len == 0 || text[len - 1] != '\n')
            std::abort();
        bytes += len;
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    instar::hosted::BudgetAllocator alloc(8u << 20);
    Lines lines;
    instar::guest::CheckResult r;
    const instar::guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100002};
    if (instar::qcow2::check(req, lines, &r) == instar::guest::Status::Ok) {
        if (r.error > 0 || r.allocated_clusters < r.compressed_clusters ||
            (r.image_end_offset != 0 && r.image_end_offset > (size + (2u << 20)) * 2))
            std::abort();
    }
    return 0;
}
