// raw's reader and writer (raw_io.h).
#include "raw_io.h"

#include <instar/guest/arena_new.h>

namespace instar::raw {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

constexpr uint64_t SECTOR = 512;
// qemu's file protocol writes zeros over the first block of a file it has just grown from empty (so
// that its alignment probing reads allocated data): MAX_BLOCKSIZE, or one sector for smaller files.
constexpr uint64_t FIRST_BLOCK = 4096;

class RawReader final : public guest::ImageReader {
public:
    RawReader(BlockDevice& dev, guest::Allocator& alloc)
        : dev_(dev), alloc_(alloc), size_((dev.size() + SECTOR - 1) / SECTOR * SECTOR) {}

    uint64_t virtual_size() const override { return size_; }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= size_ || length == 0 || length > size_ - offset) return Status::Invalid;
        *out = Extent{};
        out->flags = guest::EXTENT_OFFSET_VALID;
        out->offset = offset;
        const uint64_t file = dev_.size();
        if (offset >= file) { // the sub-sector tail past the file's end
            out->allocation = Allocation::Zero;
            out->length = length;
            return Status::Ok;
        }
        bool data = true;
        uint64_t run = 0;
        if (const Status st = dev_.allocation(offset, &data, &run); st != Status::Ok) return st;
        // A run that reaches the file's end covers the rounded-up tail too.
        if (offset + run >= file) run = size_ - offset;
        out->allocation = data ? Allocation::Data : Allocation::Zero;
        out->length = run < length ? run : length;
        return Status::Ok;
    }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > size_ || len > size_ - offset) return Status::Invalid;
        const uint64_t file = dev_.size();
        const uint64_t in_file = offset >= file ? 0 : (file - offset < len ? file - offset : len);
        if (in_file > 0) {
            if (const Status st = dev_.read(offset, buf, in_file); st != Status::Ok) return st;
        }
        __builtin_memset(static_cast<uint8_t*>(buf) + in_file, 0, len - in_file);
        return Status::Ok;
    }

    // A bounds check, one device read and zeros past the file's end: nothing else (read_api.h).
    bool reads_ahead_safe() const override { return true; }

    void close() override { guest::arena_delete(alloc_, this); }

private:
    BlockDevice& dev_;
    guest::Allocator& alloc_;
    uint64_t size_;
};

class RawWriter final : public guest::ImageWriter {
public:
    RawWriter(BlockDevice& dev, guest::Allocator& alloc, uint64_t size, bool zero_init)
        : dev_(dev), alloc_(alloc), size_(size), zero_init_(zero_init) {}

    uint64_t cluster_size() const override { return 0; }
    bool zero_init() const override { return zero_init_; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > size_ || len > size_ - offset) return Status::Invalid;
        return dev_.write(offset, buf, len);
    }
    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > size_ || len > size_ - offset) return Status::Invalid;
        return dev_.discard(offset, len);
    }
    Status write_compressed(uint64_t, const void*, size_t) override { return Status::Unsupported; }
    Status finish() override { return Status::Ok; }
    void close() override { guest::arena_delete(alloc_, this); }

private:
    BlockDevice& dev_;
    guest::Allocator& alloc_;
    uint64_t size_;
    bool zero_init_;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr) return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "raw"))
        return Status::Unsupported;
    RawReader* r = guest::arena_new<RawReader>(*req.allocator, *req.image, *req.allocator);
    if (r == nullptr) return Status::NoMemory;
    *out = r;
    return Status::Ok;
}

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr) return Status::Invalid;
    // -n: the file is the disk, written in place up to its own length (the host made sure the
    // sources fit); zero ranges are punched or written as zeros, since an existing file has no
    // zero initialisation.
    // qemu's raw disk is the file rounded up to whole sectors: a write to the last, partial sector
    // extends the file (the host's device allows that much).
    const uint64_t size = req.image->size();
    if (size > UINT64_MAX - SECTOR) return Status::TooLarge;
    RawWriter* w = guest::arena_new<RawWriter>(*req.allocator, *req.image, *req.allocator,
                                               (size + SECTOR - 1) / SECTOR * SECTOR, false);
    if (w == nullptr) return Status::NoMemory;
    *out = w;
    return Status::Ok;
}

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr) return Status::Invalid;
    guest::Prealloc mode = guest::Prealloc::Off;
    if (!guest::create_option_prealloc(req, &mode) || mode == guest::Prealloc::Metadata)
        return guest::create_fail(target, Status::Invalid, "Invalid parameter 'preallocation'");
    const uint64_t length = (req.size + SECTOR - 1) / SECTOR * SECTOR;
    if (req.size > UINT64_MAX - SECTOR) return Status::TooLarge;
    if (const Status st = target.set_length(target.image(), length, mode); st != Status::Ok) return st;
    if (length > 0 && mode != guest::Prealloc::Full) { // allocate_first_block (file-posix.c)
        static constexpr uint8_t ZEROS[FIRST_BLOCK] = {};
        if (const Status st = target.image().write(0, ZEROS, length < FIRST_BLOCK ? SECTOR : FIRST_BLOCK);
            st != Status::Ok)
            return st;
    }
    target.resolved_unit_size(0);
    // Preallocated files read as zeros too (fallocate and written zeros), as qemu's file protocol says.
    RawWriter* w = guest::arena_new<RawWriter>(*req.allocator, target.image(), *req.allocator, length, true);
    if (w == nullptr) return Status::NoMemory;
    *out = w;
    return Status::Ok;
}

} // namespace instar::raw
