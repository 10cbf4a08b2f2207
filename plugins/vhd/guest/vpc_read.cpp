// The VHD reader (vpc_read.h).
#include "vpc_read.h"

#include "vpc_bytes.h"
#include "vpc_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/page_cache.h>

namespace instar::vpc {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

constexpr uint64_t SECTOR = 512;

// Where a run of the virtual disk comes from.
enum class Kind { File, Zero, Parent };
struct Piece {
    uint64_t length;
    Kind kind;
    uint64_t file_offset; // Kind::File
};

using BatCache = guest::TablePageCache<uint32_t, VPC_BAT_PAGE_ENTRIES, VPC_BAT_CACHE_PAGES>;

class VpcReader final : public guest::ImageReader {
public:
    VpcReader(BlockDevice& dev, guest::Allocator& alloc, const VpcImage& img, const BatCache& bat)
        : dev_(dev), alloc_(alloc), img_(img), bat_(bat) {}

    uint64_t virtual_size() const override { return img_.virtual_size; }

    // "Corrupt" is terminal: after a structure failed validation every later call fails too.
    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (corrupt_)
            return Status::Corrupt;
        return latch(status_at(offset, length, out));
    }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (corrupt_)
            return Status::Corrupt;
        return latch(read_range(offset, buf, len));
    }

    // Reads may be made ahead (read_api.h): data goes straight from the file into buf, zeros are
    // written beside it, the BAT and bitmap caches keep only what was read whole, and no reason is
    // given (a latched Corrupt says as much later as it did first).
    bool reads_ahead_safe() const override { return true; }

    void close() override {
        bat_.release(alloc_);
        guest::arena_delete(alloc_, this);
    }

private:
    Status latch(Status st) {
        if (st == Status::Corrupt)
            corrupt_ = true;
        return st;
    }

    Status status_at(uint64_t offset, uint64_t length, Extent* out) {
        if (offset >= img_.virtual_size || length == 0 || length > img_.virtual_size - offset)
            return Status::Invalid;
        *out = Extent{};
        if (!img_.dynamic)
            return fixed_status(offset, length, out);
        Piece p;
        if (const Status st = lookup(offset, length, &p); st != Status::Ok)
            return st;
        out->length = p.length;
        switch (p.kind) {
        case Kind::File:
            out->allocation = Allocation::Data;
            out->flags = guest::EXTENT_OFFSET_VALID;
            out->offset = p.file_offset;
            break;
        case Kind::Zero: out->allocation = Allocation::Zero; break;
        case Kind::Parent: out->allocation = Allocation::Unallocated; break;
        }
        return Status::Ok;
    }

    Status read_range(uint64_t offset, void* buf, size_t len) {
        if (offset > img_.virtual_size || len > img_.virtual_size - offset)
            return Status::Invalid;
        uint8_t* dst = static_cast<uint8_t*>(buf);
        while (len > 0) {
            Piece p;
            if (const Status st = lookup(offset, len, &p); st != Status::Ok)
                return st;
            const size_t n = static_cast<size_t>(p.length);
            if (p.kind == Kind::File) {
                if (const Status st = dev_.read(p.file_offset, dst, n); st != Status::Ok)
                    return st;
            } else {
                __builtin_memset(dst, 0, n);
            }
            dst += n;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    // A fixed disk passes through to the file (qemu: BDRV_BLOCK_RAW), so the file's holes are Zero.
    Status fixed_status(uint64_t offset, uint64_t length, Extent* out) {
        const uint64_t file = dev_.size();
        if (offset >= file) { // qemu's block layer reads zeros past the end of the file (with offsets)
            out->allocation = Allocation::Zero;
            out->flags = guest::EXTENT_OFFSET_VALID;
            out->offset = offset;
            out->length = length;
            return Status::Ok;
        }
        bool data = true;
        uint64_t run = 0;
        if (const Status st = dev_.allocation(offset, &data, &run); st != Status::Ok)
            return st;
        if (run == 0)
            return Status::IoError;
        if (run > file - offset)
            run = file - offset;
        out->allocation = data ? Allocation::Data : Allocation::Zero;
        out->flags = guest::EXTENT_OFFSET_VALID;
        out->offset = offset;
        out->length = run < length ? run : length;
        return Status::Ok;
    }

    // The first run of [offset, offset + length) with one source, inside one block when allocated.
    Status lookup(uint64_t offset, uint64_t length, Piece* p) {
        if (!img_.dynamic) {
            const uint64_t file = dev_.size();
            if (offset >= file) {
                *p = {length, Kind::Zero, 0};
            } else {
                *p = {file - offset < length ? file - offset : length, Kind::File, offset};
            }
            return Status::Ok;
        }
        const uint64_t bs = img_.header.block_size;
        const bool differencing = img_.footer.disk_type == VHD_DIFFERENCING;
        uint64_t block = offset / bs;
        const uint64_t in = offset % bs;
        uint32_t e;
        if (const Status st = entry(block, &e); st != Status::Ok)
            return st;
        uint64_t n = bs - in < length ? bs - in : length;
        if (e == VPC_BAT_UNUSED) {
            // Unallocated blocks merge (qemu's block status walks on until an allocated one).
            while (n < length) {
                if (const Status st = entry(++block, &e); st != Status::Ok)
                    return st;
                if (e != VPC_BAT_UNUSED)
                    break;
                n = length - n < bs ? length : n + bs;
            }
            *p = {n, differencing ? Kind::Parent : Kind::Zero, 0};
            return Status::Ok;
        }
        const uint64_t bitmap_at = SECTOR * e;
        const uint64_t data_at = bitmap_at + img_.bitmap_size + in;
        uint64_t end;
        if (!add_u64(data_at, n, &end) || end > dev_.size())
            return corrupt("A block of the VHD lies past the end of the file");
        if (differencing && img_.bitmap_size > 0) {
            // Sectors whose bit is clear (bit 7 of byte 0 is the block's first sector) come from the parent.
            const uint64_t first = in / SECTOR;
            const uint64_t last = (in + n - 1) / SECTOR; // inclusive
            bool present;
            if (const Status st = bit(bitmap_at, first, &present); st != Status::Ok)
                return st;
            uint64_t s = first + 1;
            for (; s <= last; ++s) {
                bool b;
                if (const Status st = bit(bitmap_at, s, &b); st != Status::Ok)
                    return st;
                if (b != present)
                    break;
            }
            const uint64_t run_end = s * SECTOR - in;
            if (run_end < n)
                n = run_end;
            if (!present) {
                *p = {n, Kind::Parent, 0};
                return Status::Ok;
            }
        }
        *p = {n, Kind::File, data_at};
        return Status::Ok;
    }

    // The BAT entry of `block` (VPC_BAT_UNUSED past the table, as qemu's get_image_offset).
    Status entry(uint64_t block, uint32_t* out) {
        if (block >= img_.header.max_table_entries) {
            *out = VPC_BAT_UNUSED;
            return Status::Ok;
        }
        return bat_.get(block, img_.header.max_table_entries, out, [&](uint64_t first, uint64_t count, uint32_t* e) {
            uint8_t raw[VPC_BAT_PAGE_ENTRIES * 4];
            uint64_t at, end;
            if (!add_u64(img_.header.table_offset, first * 4, &at) || !add_u64(at, count * 4, &end) ||
                end > dev_.size())
                return corrupt("The block allocation table lies past the end of the file");
            if (const Status st = dev_.read(at, raw, count * 4); st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < count; ++i)
                e[i] = load_be32(raw + 4 * i);
            return Status::Ok;
        });
    }

    // Bit `sector` of the sector bitmap at `bitmap_at` (one 512-byte bitmap sector cached).
    Status bit(uint64_t bitmap_at, uint64_t sector, bool* out) {
        const uint64_t byte = sector / 8;
        const uint64_t at = bitmap_at + byte / VPC_BITMAP_CACHE_BYTES * VPC_BITMAP_CACHE_BYTES;
        if (!bitmap_valid_ || bitmap_at_ != at) {
            uint64_t end;
            if (!add_u64(at, VPC_BITMAP_CACHE_BYTES, &end) || end > dev_.size())
                return corrupt("A sector bitmap of the VHD lies past the end of the file");
            bitmap_valid_ = false;
            if (const Status st = dev_.read(at, bitmap_, VPC_BITMAP_CACHE_BYTES); st != Status::Ok)
                return st;
            bitmap_valid_ = true;
            bitmap_at_ = at;
        }
        *out = (bitmap_[byte % VPC_BITMAP_CACHE_BYTES] & (0x80u >> (sector % 8))) != 0;
        return Status::Ok;
    }

    Status corrupt(const char* text) {
        (void)text;
        return Status::Corrupt;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    VpcImage img_;
    BatCache bat_;
    bool corrupt_ = false;
    bool bitmap_valid_ = false;
    uint64_t bitmap_at_ = 0;
    uint8_t bitmap_[VPC_BITMAP_CACHE_BYTES];
};


} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "vpc"))
        return Status::Unsupported;
    VpcImage img;
    const char* why = nullptr;
    if (const Status st = vpc_load(*req.image, *req.allocator, &img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    BatCache bat;
    if (!bat.init(*req.allocator))
        return Status::NoMemory;
    VpcReader* r = guest::arena_new<VpcReader>(*req.allocator, *req.image, *req.allocator, img, bat);
    if (r == nullptr) {
        bat.release(*req.allocator);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::vpc
