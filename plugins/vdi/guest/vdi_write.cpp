// The VDI writer (vdi_write.h).
#include "vdi_write.h"

#include "vdi_create.h"
#include "vdi_header.h"
#include "vdi_read.h"

#include <instar/guest/arena_new.h>

namespace instar::vdi {
namespace {

using guest::BlockDevice;
using guest::Status;

// Zeros written per device write around partial blocks and for write_zeroes: 64 KiB of arena.
constexpr size_t ZERO_CHUNK = 65536;

class VdiWriter final : public guest::ImageWriter {
public:
    VdiWriter(BlockDevice& dev, guest::Allocator& alloc, const VdiImage& img, uint8_t* zeros, bool zero_init,
              guest::ReasonSink* reasons)
        : dev_(dev), alloc_(alloc), img_(img), zeros_(zeros), zero_init_(zero_init), reasons_(reasons) {}

    uint64_t cluster_size() const override { return VDI_BLOCK_SIZE; }
    bool zero_init() const override { return zero_init_; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        return store(offset, static_cast<const uint8_t*>(buf), len);
    }

    // qemu's vdi has no write_zeroes: the block layer writes a buffer of zeros, which allocates.
    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > img_.disk_size || len > img_.disk_size - offset)
            return Status::Invalid;
        while (len > 0) {
            const size_t n = static_cast<size_t>(len < ZERO_CHUNK ? len : ZERO_CHUNK);
            if (const Status st = store(offset, nullptr, n); st != Status::Ok)
                return st;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_compressed(uint64_t, const void*, size_t) override { return Status::Unsupported; }

    Status finish() override {
        if (failed_)
            return Status::IoError;
        if (!allocated_any_)
            return Status::Ok;
        // qemu rewrites its in-memory header: as read, with the new count (and a rounded size).
        store_le32(img_.raw + off::blocks_allocated, img_.blocks_allocated);
        store_le64(img_.raw + off::disk_size, img_.disk_size);
        return dev_.write(0, img_.raw, VDI_HEADER_SIZE);
    }

    void close() override {
        alloc_.deallocate(zeros_, ZERO_CHUNK);
        guest::arena_delete(alloc_, this);
    }

private:
    Status fail(Status st, const char* why) {
        failed_ = true;
        guest::say_reason(reasons_, why);
        return st;
    }

    // Writes `len` bytes of `src` (zeros when nullptr) at virtual `offset`, block by block.
    Status store(uint64_t offset, const uint8_t* src, size_t len) {
        if (failed_)
            return Status::IoError;
        if (offset > img_.disk_size || len > img_.disk_size - offset)
            return Status::Invalid;
        while (len > 0) {
            const uint64_t block = offset / VDI_BLOCK_SIZE;
            const uint64_t in = offset % VDI_BLOCK_SIZE;
            const size_t n = static_cast<size_t>(VDI_BLOCK_SIZE - in < len ? VDI_BLOCK_SIZE - in : len);
            uint32_t e;
            if (const Status st = entry(block, &e); st != Status::Ok)
                return fail(st, nullptr);
            if (!vdi_is_allocated(e)) {
                if (const Status st = allocate(block, in, src, n); st != Status::Ok)
                    return st;
            } else {
                const uint64_t at = uint64_t{img_.offset_data} + uint64_t{e} * VDI_BLOCK_SIZE;
                if (at > dev_.size())
                    return fail(Status::Corrupt, "a block map entry of the VDI points past the end of the file");
                if (const Status st = put(at + in, src, n); st != Status::Ok)
                    return fail(st, nullptr);
            }
            offset += n;
            len -= n;
            if (src != nullptr)
                src += n;
        }
        return Status::Ok;
    }

    // qemu: the new block is number blocks_allocated; the whole block is written, zeros around the data.
    Status allocate(uint64_t block, uint64_t in, const uint8_t* src, size_t n) {
        if (img_.blocks_allocated >= VDI_DISCARDED)
            return fail(Status::Corrupt, "the VDI's blocks_allocated leaves no block number to allocate");
        const uint32_t e = img_.blocks_allocated;
        const uint64_t at = uint64_t{img_.offset_data} + uint64_t{e} * VDI_BLOCK_SIZE;
        if (at > dev_.size())
            return fail(Status::Corrupt, "the VDI's next block would start past the end of the file");
        Status st = put(at, nullptr, static_cast<size_t>(in));
        if (st == Status::Ok)
            st = put(at + in, src, n);
        if (st == Status::Ok)
            st = put(at + in + n, nullptr, static_cast<size_t>(VDI_BLOCK_SIZE - in - n));
        if (st != Status::Ok)
            return fail(st, nullptr);
        uint8_t raw[4];
        store_le32(raw, e);
        // The map entry after the data, so a map never points at a block not yet written.
        if (st = dev_.write(uint64_t{img_.offset_bmap} + block * 4, raw, 4); st != Status::Ok)
            return fail(st, nullptr);
        if (page_valid_ && block / PAGE == page_)
            page_entries_[block % PAGE] = e;
        ++img_.blocks_allocated;
        allocated_any_ = true;
        return Status::Ok;
    }

    Status put(uint64_t at, const uint8_t* src, size_t n) {
        if (src != nullptr)
            return n == 0 ? Status::Ok : dev_.write(at, src, n);
        while (n > 0) {
            const size_t k = n < ZERO_CHUNK ? n : ZERO_CHUNK;
            if (const Status st = dev_.write(at, zeros_, k); st != Status::Ok)
                return st;
            at += k;
            n -= k;
        }
        return Status::Ok;
    }

    // The map entry of `block`, through a one-page cache (convert writes in order).
    Status entry(uint64_t block, uint32_t* out) {
        if (block >= img_.blocks_in_image)
            return Status::Invalid;
        const uint64_t page = block / PAGE;
        if (!page_valid_ || page_ != page) {
            page_valid_ = false;
            const uint64_t first = page * PAGE;
            const uint64_t left = img_.blocks_in_image - first;
            if (const Status st = vdi_read_entries(dev_, img_, first, left < PAGE ? left : PAGE, page_entries_);
                st != Status::Ok)
                return st;
            page_ = page;
            page_valid_ = true;
        }
        *out = page_entries_[block % PAGE];
        return Status::Ok;
    }

    static constexpr uint32_t PAGE = VDI_BMAP_PAGE_ENTRIES;
    BlockDevice& dev_;
    guest::Allocator& alloc_;
    VdiImage img_;
    uint8_t* zeros_;
    bool zero_init_;
    guest::ReasonSink* reasons_;
    bool failed_ = false;
    bool allocated_any_ = false;
    bool page_valid_ = false;
    uint64_t page_ = 0;
    uint32_t page_entries_[PAGE];
};

Status make_writer(BlockDevice& dev, guest::Allocator& alloc, const VdiImage& img, bool zero_init,
                   guest::ReasonSink* reasons, guest::ImageWriter** out) {
    auto* zeros = static_cast<uint8_t*>(alloc.allocate(ZERO_CHUNK, 8));
    if (zeros == nullptr)
        return Status::NoMemory;
    __builtin_memset(zeros, 0, ZERO_CHUNK);
    VdiWriter* w = guest::arena_new<VdiWriter>(alloc, dev, alloc, img, zeros, zero_init, reasons);
    if (w == nullptr) {
        alloc.deallocate(zeros, ZERO_CHUNK);
        return Status::NoMemory;
    }
    *out = w;
    return Status::Ok;
}

} // namespace

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    VdiImage img;
    if (const Status st = create_image(req, target, &img); st != Status::Ok)
        return st;
    // A new file reads as zeros (qemu: vdi_has_zero_init, and the file's for a static image).
    return make_writer(target.image(), *req.allocator, img, true, nullptr, out);
}

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    VdiImage img;
    const char* why = nullptr;
    if (const Status st = vdi_load(*req.image, &img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    return make_writer(*req.image, *req.allocator, img, false, req.reasons, out);
}

} // namespace instar::vdi
