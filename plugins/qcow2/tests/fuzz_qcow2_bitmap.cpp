// Fuzz target: `bitmap`'s in-place edit (qcow2_edit_bitmap.cpp) over a hostile image. The input
// is the image; a short action list derived from it (add, remove, clear, enable, disable, merge,
// on the seeds' bitmap names, merging from the image or, as -b, from a copy of it) follows. It must never crash, loop, exceed its memory budget or
// grow the file past its budget, whatever the bitmap directory, tables and refcounts say.
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_edit.h"

#include <instar/guest/edit_bitmap.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using instar::guest::Status;

constexpr std::uint64_t OUTPUT_BUDGET = 32u << 20; // the image may grow by this much at most
constexpr std::size_t MEMORY_BUDGET = 32u << 20;   // the guest arena stand-in
constexpr int ACTIONS = 3;

class ImageFile final : public instar::guest::BlockDevice {
public:
    // fixed: a read-only extra device (its size is the file's length), else an output device.
    ImageFile(const std::uint8_t* d, std::size_t n, bool fixed = false) : out_(OUTPUT_BUDGET), fixed_(fixed) {
        if (n > 0 && out_.write(0, d, n) != Status::Ok)
            std::abort();
    }
    std::uint64_t size() const override { return fixed_ ? out_.length() : out_.size(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (fixed_ && (offset > size() || len > size() - offset))
            return Status::IoError;
        return out_.read(offset, buf, len);
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override { return out_.write(offset, buf, len); }
    void set_length(std::uint64_t n) { out_.set_length(n); }

private:
    instar::hosted::MemoryOutput out_;
    bool fixed_;
};

class Host final : public instar::guest::EditHost {
public:
    Status set_length(instar::guest::BlockDevice& f, std::uint64_t len, instar::guest::Prealloc) override {
        if (len > OUTPUT_BUDGET)
            return Status::TooLarge;
        static_cast<ImageFile&>(f).set_length(len);
        return Status::Ok;
    }
    Status flush(instar::guest::BlockDevice&) override { return Status::Ok; }
    Status add_file(const char*, instar::guest::BlockDevice**) override { return Status::Unsupported; }
    Status out(const char*, std::size_t) override { return Status::Ok; }
    Status err(const char*, std::size_t) override { return Status::Ok; }
    void reason(const char*, std::size_t) override {}
    Status data(std::uint32_t, const void*, std::size_t) override { return Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const char* const NAMES[] = {"a", "b", "c", "b1", "b2", "new"};
    constexpr std::size_t NNAMES = sizeof NAMES / sizeof NAMES[0];
    ImageFile file(data, size);
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    std::uint64_t seed = size;
    for (std::size_t i = 0; i < size && i < 64; ++i)
        seed = seed * 1099511628211ull ^ data[size - 1 - i];
    std::vector<std::uint8_t> args(sizeof(instar::guest::BitmapArgs));
    instar::guest::BitmapArgs head{};
    head.action_count = ACTIONS;
    head.granularity = (seed & 1) ? 512u << (seed >> 8) % 8 : 0;
    for (int i = 0; i < ACTIONS; ++i) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const char* src = NAMES[(seed >> 20) % NNAMES];
        const auto kind = static_cast<std::uint32_t>((seed >> 33) % 6 + 1);
        instar::guest::BitmapAction a{kind, kind == 6 ? static_cast<std::uint32_t>(std::strlen(src)) : 0u};
        const auto* p = reinterpret_cast<const std::uint8_t*>(&a);
        args.insert(args.end(), p, p + sizeof a);
        if (kind == 6)
            args.insert(args.end(), src, src + std::strlen(src));
    }
    const char* name = NAMES[(seed >> 40) % NNAMES];
    head.name_len = static_cast<std::uint32_t>(std::strlen(name));
    args.insert(args.end(), name, name + head.name_len);
    static const char NODE[] = "#block100";
    head.node_len = sizeof NODE - 1;
    args.insert(args.end(), NODE, NODE + head.node_len);
    std::memcpy(args.data(), &head, sizeof head);

    static const std::uint8_t RANDOM[instar::guest::CREATE_RANDOM_BYTES] = {};
    instar::guest::EditRequest req{};
    req.command = instar::guest::EditCommand::Bitmap;
    req.image = &file;
    req.image_length = size;
    req.writable = true;
    req.args = args.data();
    req.args_len = args.size();
    req.random = RANDOM;
    req.qemu_version = 100002;
    req.allocator = &alloc;
    req.codecs = &instar::hosted::host_codecs();
    // Half the runs merge from a second (read-only) copy of the input, as -b does.
    ImageFile source(data, size, true);
    instar::guest::BlockDevice* extra[1] = {&source};
    if ((seed >> 50) & 1) {
        head.flags |= instar::guest::BITMAP_SOURCE_FILE;
        std::memcpy(args.data(), &head, sizeof head);
        req.extra = extra;
        req.extra_count = 1;
    }
    Host host;
    (void)instar::qcow2::edit_bitmap(req, host);
    if (alloc.peak() > MEMORY_BUDGET)
        std::abort();
    return 0;
}
