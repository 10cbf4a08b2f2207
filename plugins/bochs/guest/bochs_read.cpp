// The bochs reader (bochs_read.h).
#include "bochs_read.h"

#include "bochs_format.h"

#include <instar/guest/arena_new.h>

namespace instar::bochs {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

// Reads [pos, pos + len) of the file with zeros past its end, as qemu's block layer does; a range
// beyond qemu's BDRV_MAX_LENGTH is its -EIO.
Status read_zero_past_eof(BlockDevice& dev, uint64_t pos, uint8_t* dst, uint64_t len) {
    if (pos > BOCHS_MAX_FILE_OFFSET || len > BOCHS_MAX_FILE_OFFSET - pos)
        return Status::IoError;
    const uint64_t fsize = dev.size();
    const uint64_t in = pos < fsize ? (fsize - pos < len ? fsize - pos : len) : 0;
    if (in > 0)
        if (const Status st = dev.read(pos, dst, static_cast<size_t>(in)); st != Status::Ok)
            return st;
    if (in < len)
        __builtin_memset(dst + in, 0, static_cast<size_t>(len - in));
    return Status::Ok;
}

class BochsReader final : public guest::ImageReader {
public:
    BochsReader(BlockDevice& dev, guest::Allocator& alloc, const BochsImage& img, uint32_t* catalog)
        : dev_(dev), alloc_(alloc), img_(img), catalog_(catalog) {}

    uint64_t virtual_size() const override { return img_.virtual_size(); }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= virtual_size() || length == 0 || length > virtual_size() - offset)
            return Status::Invalid;
        *out = Extent{};
        out->length = length;
        out->allocation = Allocation::Data;
        return Status::Ok;
    }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > virtual_size() || len > virtual_size() - offset)
            return Status::Invalid;
        uint8_t* dst = static_cast<uint8_t*>(buf);
        while (len > 0) {
            // One extent at a time; inside it, one sector at a time as qemu (runs of stored
            // sectors with consecutive file offsets are read together).
            const uint64_t extent_index = offset / img_.extent_size;
            const uint64_t in_extent = offset % img_.extent_size;
            const uint64_t n = img_.extent_size - in_extent < len ? img_.extent_size - in_extent : len;
            if (const Status st = read_extent(extent_index, in_extent, dst, n); st != Status::Ok)
                return st;
            dst += n;
            offset += n;
            len -= static_cast<size_t>(n);
        }
        return Status::Ok;
    }

    void close() override {
        if (catalog_ != nullptr)
            alloc_.deallocate(catalog_, uint64_t{img_.catalog_size} * 4);
        guest::arena_delete(alloc_, this);
    }

private:
    // [in_extent, in_extent + n) of extent `index` (n <= extent size - in_extent).
    Status read_extent(uint64_t index, uint64_t in_extent, uint8_t* dst, uint64_t n) {
        const uint32_t slot = catalog_[index];
        if (slot == BOCHS_UNALLOCATED) {
            __builtin_memset(dst, 0, static_cast<size_t>(n));
            return Status::Ok;
        }
        // qemu: data_offset + 512 * (uint64)slot * (uint32)(extent_blocks + bitmap_blocks), wrapping.
        const uint32_t stride = img_.extent_blocks + img_.bitmap_blocks;
        const uint64_t bitmap_offset = uint64_t{img_.data_offset} + 512 * uint64_t{slot} * stride;
        while (n > 0) {
            const uint64_t sector = in_extent / 512;
            const uint64_t into = in_extent % 512;
            bool stored;
            if (const Status st = bit(bitmap_offset, sector, &stored); st != Status::Ok)
                return st;
            // The run of sectors with the same bit.
            uint64_t run = 512 - into;
            for (uint64_t s = sector + 1; run < n; ++s) {
                bool next;
                if (const Status st = bit(bitmap_offset, s, &next); st != Status::Ok)
                    return st;
                if (next != stored)
                    break;
                run += 512;
            }
            if (run > n)
                run = n;
            if (stored) {
                const uint64_t at = bitmap_offset + 512 * (uint64_t{img_.bitmap_blocks} + sector) + into;
                if (const Status st = read_zero_past_eof(dev_, at, dst, run); st != Status::Ok)
                    return st;
            } else {
                __builtin_memset(dst, 0, static_cast<size_t>(run));
            }
            dst += run;
            in_extent += run;
            n -= run;
        }
        return Status::Ok;
    }

    // The bitmap bit of `sector` in the extent whose bitmap starts at bitmap_offset (qemu reads the
    // byte at bitmap_offset + sector / 8; the 512-byte aligned window around it is cached).
    Status bit(uint64_t bitmap_offset, uint64_t sector, bool* out) {
        const uint64_t at = bitmap_offset + sector / 8;
        // qemu's one-byte read fails past BDRV_MAX_LENGTH; below it the whole window is readable,
        // since BOCHS_MAX_FILE_OFFSET is a multiple of the window.
        if (at >= BOCHS_MAX_FILE_OFFSET)
            return Status::IoError;
        const uint64_t window = at & ~uint64_t{BITMAP_WINDOW - 1};
        if (!have_window_ || window != window_at_) {
            if (const Status st = read_zero_past_eof(dev_, window, window_bytes_, BITMAP_WINDOW); st != Status::Ok)
                return st;
            window_at_ = window;
            have_window_ = true;
        }
        *out = ((window_bytes_[at - window] >> (sector % 8)) & 1) != 0;
        return Status::Ok;
    }

    static constexpr uint64_t BITMAP_WINDOW = 512; // one sector of bitmap: 4096 sectors' bits

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    BochsImage img_;
    uint32_t* catalog_;
    uint64_t window_at_ = 0;
    uint8_t window_bytes_[BITMAP_WINDOW];
    bool have_window_ = false;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "bochs"))
        return Status::Unsupported;
    BochsImage img;
    BochsMessage msg;
    const char* why = nullptr;
    if (const Status st = bochs_load(*req.image, &img, &why, &msg); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    // The whole catalog (at most BOCHS_MAX_CATALOG entries, 4 MiB), as qemu holds it.
    uint32_t* catalog = nullptr;
    const uint64_t bytes = uint64_t{img.catalog_size} * 4;
    if (bytes > 0) {
        catalog = static_cast<uint32_t*>(req.allocator->allocate(static_cast<size_t>(bytes), alignof(uint32_t)));
        if (catalog == nullptr) {
            guest::say_reason(req.reasons, "Could not allocate memory for catalog");
            return Status::NoMemory;
        }
        uint8_t* raw = reinterpret_cast<uint8_t*>(catalog);
        if (const Status st = read_zero_past_eof(*req.image, img.header, raw, bytes); st != Status::Ok) {
            req.allocator->deallocate(catalog, static_cast<size_t>(bytes));
            return st;
        }
        for (uint32_t i = 0; i < img.catalog_size; ++i) {
            const uint8_t* p = raw + 4 * uint64_t{i};
            catalog[i] = uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
        }
    }
    BochsReader* r = guest::arena_new<BochsReader>(*req.allocator, *req.image, *req.allocator, img, catalog);
    if (r == nullptr) {
        if (catalog != nullptr)
            req.allocator->deallocate(catalog, static_cast<size_t>(bytes));
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::bochs
