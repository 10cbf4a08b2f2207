// Fuzz target: QED check (qemu-img check's walk) on arbitrary bytes with a bounded allocator, and
// (for lengths that are multiples of 3) -r all on a writable copy: never a crash, hang, growth of
// the file or a counter out of range.
#include "hosted_support.h"
#include "qed_check.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

struct Lines final : instar::guest::CheckSink {
    void line(const char* text, std::size_t len) override {
        if (len == 0 || text[len - 1] != '\n')
            std::abort();
    }
};

struct Writable final : instar::guest::BlockDevice {
    std::vector<std::uint8_t> b;
    std::uint64_t size() const override { return b.size(); }
    instar::guest::Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return instar::guest::Status::IoError;
        std::memcpy(buf, b.data() + off, len);
        return instar::guest::Status::Ok;
    }
    instar::guest::Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return instar::guest::Status::IoError;
        std::memcpy(b.data() + off, buf, len);
        return instar::guest::Status::Ok;
    }
};

instar::guest::Status no_flush(instar::guest::BlockDevice&) { return instar::guest::Status::Ok; }

void sane(const instar::guest::CheckResult& r, std::size_t size) {
    // Every counted cluster is one the file or the tables can name.
    if (r.error > 0 || r.leaks > size || r.fragmented_clusters > r.allocated_clusters)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    instar::hosted::BudgetAllocator alloc(8u << 20);
    Lines lines;
    instar::guest::CheckResult r;
    const instar::guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100002, nullptr};
    if (instar::qed::check(req, lines, &r) == instar::guest::Status::Ok)
        sane(r, size);
    if (size % 3 == 0) {
        Writable w;
        w.b.assign(data, data + size);
        instar::hosted::BudgetAllocator alloc2(8u << 20);
        const instar::guest::CheckRequest fix{&w, nullptr, 0, &alloc2, nullptr,
                                              instar::guest::CHECK_FIX_LEAKS | instar::guest::CHECK_FIX_ERRORS,
                                              100002, no_flush};
        if (instar::qed::check(fix, lines, &r) == instar::guest::Status::Ok)
            sane(r, size);
        if (w.b.size() != size)
            std::abort();
    }
    return 0;
}
