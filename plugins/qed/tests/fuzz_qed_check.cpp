// Fuzz target: QED check (qemu-img check's walk) on arbitrary bytes with a bounded allocator, and
// (for lengths that are multiples of 3) -r all and a resize on writable copies: never a crash,
// hang, growth of the file or a counter out of range.
#include "hosted_support.h"
#include "qed_check.h"
#include "qed_edit.h"

#include <instar/guest/edit_resize.h>

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

struct Host final : instar::guest::EditHost {
    using Status = instar::guest::Status;
    Status set_length(instar::guest::BlockDevice&, std::uint64_t, instar::guest::Prealloc) override {
        return Status::Unsupported;
    }
    Status flush(instar::guest::BlockDevice&) override { return Status::Ok; }
    Status add_file(const char*, instar::guest::BlockDevice**) override { return Status::Unsupported; }
    Status out(const char*, std::size_t) override { return Status::Ok; }
    Status err(const char*, std::size_t) override { return Status::Ok; }
    void reason(const char*, std::size_t) override {}
    Status data(std::uint32_t, const void*, std::size_t) override { return Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}
};

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
        // resize on another copy: the read-write open's repair, then one header write.
        Writable e;
        e.b.assign(data, data + size);
        instar::hosted::BudgetAllocator alloc3(8u << 20);
        Host host;
        instar::guest::ResizeArgs a{};
        a.new_size = size * 2 + 512;
        instar::guest::EditRequest er{};
        er.command = instar::guest::EditCommand::Resize;
        er.image = &e;
        er.image_length = size;
        er.writable = true;
        er.args = reinterpret_cast<const std::uint8_t*>(&a);
        er.args_len = sizeof a;
        er.allocator = &alloc3;
        (void)instar::qed::edit(er, host);
        if (e.b.size() != size)
            std::abort();
    }
    return 0;
}
