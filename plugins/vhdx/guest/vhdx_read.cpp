// The VHDX reader (vhdx_read.h).
#include "vhdx_read.h"

#include "vhdx_bat.h"
#include "vhdx_bytes.h"
#include "vhdx_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/page_cache.h>

namespace instar::vhdx {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

constexpr uint64_t SECTOR = 512; // vhdx_metadata_read accepts only 512-byte logical sectors
constexpr uint64_t PAYLOAD_BLOCK_UNDEFINED = 1;
constexpr uint64_t PAYLOAD_BLOCK_UNMAPPED = 3;
constexpr uint64_t PAYLOAD_BLOCK_UNMAPPED_V095 = 5; // qemu: an older draft's UNMAPPED value
constexpr uint64_t PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;
constexpr uint64_t SB_BLOCK_PRESENT = 6;
constexpr uint64_t SECTOR_BITMAP_BLOCK_SIZE = 1u << 20; // MS-VHDX 2.4: sector bitmap blocks are 1 MiB

// Where a run of the virtual disk comes from.
enum class Kind { File, Zero, Parent };
struct Piece {
    uint64_t length;
    Kind kind;
    uint64_t file_offset; // Kind::File
};

using BatCache = guest::TablePageCache<uint64_t, VHDX_BAT_PAGE_ENTRIES, VHDX_BAT_CACHE_PAGES>;

class VhdxReader final : public guest::ImageReader {
public:
    VhdxReader(BlockDevice& dev, guest::Allocator& alloc, const VhdxImage& img, const BatCache& bat)
        : dev_(dev), alloc_(alloc), img_(img), bat_(bat), block_(img.meta.block_size),
          chunk_ratio_(vhdx_chunk_ratio(img.meta.block_size)),
          differencing_((img.meta.data_bits & VHDX_PARAMS_HAS_PARENT) != 0) {}

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

    // Reads may be made ahead (read_api.h): data goes straight from the file into buf (an image
    // whose log needs replay is refused at open, so nothing is laid over it), zeros are written
    // beside it, the BAT and bitmap caches keep only what was read whole, and no reason is given (a
    // latched Corrupt says as much later as it did first).
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
        if (!differencing_) { // qemu's vhdx has no block status: the block layer says "data" throughout
            out->allocation = Allocation::Data;
            out->length = length;
            return Status::Ok;
        }
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

    // What a payload block's state says for non-present data: zeros in a disk without a parent
    // (qemu), the parent's in a differencing disk, or Corrupt for states qemu fails on.
    Status absent_kind(uint64_t state, Kind* kind) {
        switch (state) {
        case PAYLOAD_BLOCK_ZERO: *kind = Kind::Zero; return Status::Ok;
        case PAYLOAD_BLOCK_NOT_PRESENT:
        case PAYLOAD_BLOCK_UNDEFINED:
        case PAYLOAD_BLOCK_UNMAPPED:
        case PAYLOAD_BLOCK_UNMAPPED_V095: *kind = differencing_ ? Kind::Parent : Kind::Zero; return Status::Ok;
        default: return Status::Corrupt; // 4 (reserved); 7 outside differencing disks (qemu: -EIO)
        }
    }

    // The first run of [offset, offset + length) with one source; present data stays in one block.
    Status lookup(uint64_t offset, uint64_t length, Piece* p) {
        uint64_t block = offset / block_;
        const uint64_t in = offset % block_;
        uint64_t n = block_ - in < length ? block_ - in : length;
        uint64_t e;
        if (const Status st = payload_entry(block, &e); st != Status::Ok)
            return st;
        const uint64_t state = e & VHDX_BAT_STATE_BIT_MASK;
        if (state == PAYLOAD_BLOCK_FULLY_PRESENT || (differencing_ && state == PAYLOAD_BLOCK_PARTIALLY_PRESENT)) {
            uint64_t at, end;
            if (!add_u64(e & VHDX_BAT_FILE_OFF_MASK, in, &at) || !add_u64(at, n, &end) || end > dev_.size())
                return Status::Corrupt; // a payload block past the end of the file
            if (state == PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
                bool present;
                if (const Status st = bitmap_run(block, in, &n, &present); st != Status::Ok)
                    return st;
                if (!present) {
                    *p = {n, Kind::Parent, 0};
                    return Status::Ok;
                }
            }
            *p = {n, Kind::File, at};
            return Status::Ok;
        }
        Kind kind;
        if (const Status st = absent_kind(state, &kind); st != Status::Ok)
            return st;
        // Runs of blocks that read the same way merge.
        while (n < length) {
            if (const Status st = payload_entry(++block, &e); st != Status::Ok)
                return st;
            Kind next;
            const uint64_t s = e & VHDX_BAT_STATE_BIT_MASK;
            if (s == PAYLOAD_BLOCK_FULLY_PRESENT || s == PAYLOAD_BLOCK_PARTIALLY_PRESENT ||
                absent_kind(s, &next) != Status::Ok || next != kind)
                break;
            n = length - n < block_ ? length : n + block_;
        }
        *p = {n, kind, 0};
        return Status::Ok;
    }

    // The run of sectors from `in` (inside payload block `block`, at most *n bytes) whose bitmap
    // bits agree; *n is shortened to it.
    Status bitmap_run(uint64_t block, uint64_t in, uint64_t* n, bool* present) {
        const uint64_t chunk = block / chunk_ratio_;
        uint64_t e;
        if (const Status st = entry(chunk * (chunk_ratio_ + 1) + chunk_ratio_, &e); st != Status::Ok)
            return st;
        if ((e & VHDX_BAT_STATE_BIT_MASK) != SB_BLOCK_PRESENT)
            return Status::Corrupt; // a partially present block needs its sector bitmap
        const uint64_t bitmap_at = e & VHDX_BAT_FILE_OFF_MASK;
        const uint64_t sectors_per_block = block_ / SECTOR;
        const uint64_t base = (block % chunk_ratio_) * sectors_per_block; // first bit of this block
        const uint64_t first = in / SECTOR;
        const uint64_t last = (in + *n - 1) / SECTOR; // inclusive
        if (const Status st = bit(bitmap_at, base + first, present); st != Status::Ok)
            return st;
        uint64_t s = first + 1;
        while (s <= last) {
            const uint64_t abs = base + s;
            // Whole bytes at once where they agree.
            if (abs % 8 == 0 && s + 8 <= last + 1) {
                uint8_t byte;
                if (const Status st = bitmap_byte(bitmap_at, abs / 8, &byte); st != Status::Ok)
                    return st;
                if (byte == (*present ? 0xFF : 0x00)) {
                    s += 8;
                    continue;
                }
            }
            bool b;
            if (const Status st = bit(bitmap_at, abs, &b); st != Status::Ok)
                return st;
            if (b != *present)
                break;
            ++s;
        }
        const uint64_t run_end = s * SECTOR - in;
        if (run_end < *n)
            *n = run_end;
        return Status::Ok;
    }

    Status bit(uint64_t bitmap_at, uint64_t index, bool* out) {
        uint8_t byte;
        if (const Status st = bitmap_byte(bitmap_at, index / 8, &byte); st != Status::Ok)
            return st;
        *out = (byte >> (index % 8)) & 1; // MS-VHDX: bit 0 of byte 0 is the first sector
        return Status::Ok;
    }

    Status bitmap_byte(uint64_t bitmap_at, uint64_t byte, uint8_t* out) {
        if (byte >= SECTOR_BITMAP_BLOCK_SIZE)
            return Status::Corrupt;
        uint64_t at;
        if (!add_u64(bitmap_at, byte / VHDX_BITMAP_CACHE_BYTES * VHDX_BITMAP_CACHE_BYTES, &at))
            return Status::Corrupt;
        if (!bitmap_valid_ || bitmap_at_ != at) {
            uint64_t end;
            if (!add_u64(at, VHDX_BITMAP_CACHE_BYTES, &end) || end > dev_.size())
                return Status::Corrupt; // a sector bitmap block past the end of the file
            bitmap_valid_ = false;
            if (const Status st = dev_.read(at, bitmap_, VHDX_BITMAP_CACHE_BYTES); st != Status::Ok)
                return st;
            bitmap_valid_ = true;
            bitmap_at_ = at;
        }
        *out = bitmap_[byte % VHDX_BITMAP_CACHE_BYTES];
        return Status::Ok;
    }

    // The BAT entry of payload block `block` (sector bitmap entries interleave after each chunk).
    Status payload_entry(uint64_t block, uint64_t* out) { return entry(block + block / chunk_ratio_, out); }

    Status entry(uint64_t index, uint64_t* out) {
        // vhdx_bat_check sized the region for every block of the disk: an index past it is corrupt.
        const uint64_t region_entries = img_.regions.bat.length / 8;
        return bat_.get(index, region_entries, out, [&](uint64_t first, uint64_t count, uint64_t* e) {
            uint8_t raw[VHDX_BAT_PAGE_ENTRIES * 8];
            uint64_t at, end;
            if (!add_u64(img_.regions.bat.file_offset, first * 8, &at) || !add_u64(at, count * 8, &end))
                return Status::Corrupt;
            // The region may extend past the file beyond the entries vhdx_bat_check read: those read
            // as zeros (NOT_PRESENT), as qemu's block layer reads past the end of a file.
            const uint64_t file = dev_.size();
            const uint64_t avail = at >= file ? 0 : (end <= file ? count * 8 : file - at);
            __builtin_memset(raw, 0, sizeof raw);
            if (avail > 0) {
                if (const Status st = dev_.read(at, raw, avail); st != Status::Ok)
                    return st;
            }
            for (uint64_t i = 0; i < count; ++i)
                e[i] = load_le64(raw + 8 * i);
            return Status::Ok;
        });
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    VhdxImage img_;
    BatCache bat_;
    uint64_t block_;
    uint64_t chunk_ratio_;
    bool differencing_;
    bool corrupt_ = false;
    bool bitmap_valid_ = false;
    uint64_t bitmap_at_ = 0;
    uint8_t bitmap_[VHDX_BITMAP_CACHE_BYTES];
};


} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "vhdx"))
        return Status::Unsupported;
    VhdxImage img;
    const char* why = nullptr;
    if (const Status st = vhdx_load(*req.image, *req.allocator, &img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    BatCache bat;
    if (!bat.init(*req.allocator))
        return Status::NoMemory;
    VhdxReader* r = guest::arena_new<VhdxReader>(*req.allocator, *req.image, *req.allocator, img, bat);
    if (r == nullptr) {
        bat.release(*req.allocator);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::vhdx
