// Fuzz target: qcow2 check (qemu-img check's walk) on arbitrary bytes with a bounded allocator. It
// must never crash, hang or exceed its budget; its lines must be complete and its counters sane.
#include "hosted_support.h"
#include "qcow2_check.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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

// A writable copy for the repair path. Writes past the end extend it, as the -r device does (a
// rebuilt refcount structure goes there), up to `limit`.
struct Writable final : instar::guest::BlockDevice {
    std::vector<std::uint8_t> b;
    std::size_t limit = 0;
    std::uint64_t size() const override { return b.size(); }
    instar::guest::Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return instar::guest::Status::IoError;
        std::memcpy(buf, b.data() + off, len);
        return instar::guest::Status::Ok;
    }
    instar::guest::Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off <= limit && len <= limit - off && off + len > b.size())
            b.resize(off + len);
        if (off > b.size() || len > b.size() - off)
            return instar::guest::Status::IoError;
        std::memcpy(b.data() + off, buf, len);
        return instar::guest::Status::Ok;
    }
};

instar::guest::Status no_flush(instar::guest::BlockDevice&) { return instar::guest::Status::Ok; }

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    instar::hosted::BudgetAllocator alloc(8u << 20);
    Lines lines;
    instar::guest::CheckResult r;
    const instar::guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100002, nullptr};
    if (instar::qcow2::check(req, lines, &r) == instar::guest::Status::Ok) {
        if (r.error > 0 || r.allocated_clusters < r.compressed_clusters ||
            (r.image_end_offset != 0 && r.image_end_offset > (size + (2u << 20)) * 2))
            std::abort();
    }
    // Inputs whose length is a multiple of 3 also go through -r all on a writable copy, then a
    // read-only check of the result.
    if (size % 3 == 0) {
        Writable w;
        w.b.assign(data, data + size);
        w.limit = size + (1u << 20);
        instar::hosted::BudgetAllocator alloc2(8u << 20);
        Lines lines2;
        const instar::guest::CheckRequest fix{&w, nullptr, 0, &alloc2, nullptr,
                                              instar::guest::CHECK_FIX_LEAKS | instar::guest::CHECK_FIX_ERRORS,
                                              100002, no_flush};
        (void)instar::qcow2::check(fix, lines2, &r);
        if (w.b.size() < size || w.b.size() > w.limit)
            std::abort();
        // The repaired file is checked again read-only (qemu-img's double check).
        instar::hosted::MemoryDevice again(w.b);
        instar::hosted::BudgetAllocator alloc3(8u << 20);
        Lines lines3;
        const instar::guest::CheckRequest ro{&again, nullptr, 0, &alloc3, nullptr, 0, 100002, nullptr};
        (void)instar::qcow2::check(ro, lines3, &r);
    }
    return 0;
}
