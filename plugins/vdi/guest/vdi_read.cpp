// The VDI reader (vdi_read.h).
#include "vdi_read.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/page_cache.h>

namespace instar::vdi {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

using BmapCache = guest::TablePageCache<uint32_t, VDI_BMAP_PAGE_ENTRIES, VDI_BMAP_CACHE_PAGES>;

class VdiReader final : public guest::ImageReader {
public:
    VdiReader(BlockDevice& dev, guest::Allocator& alloc, const VdiImage& img, const BmapCache& bmap)
        : dev_(dev), alloc_(alloc), img_(img), bmap_(bmap) {}

    uint64_t virtual_size() const override { return img_.disk_size; }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= img_.disk_size || length == 0 || length > img_.disk_size - offset)
            return Status::Invalid;
        *out = Extent{};
        uint64_t block = offset / VDI_BLOCK_SIZE;
        const uint64_t in = offset % VDI_BLOCK_SIZE;
        uint32_t e;
        if (const Status st = entry(block, &e); st != Status::Ok)
            return st;
        uint64_t n = VDI_BLOCK_SIZE - in < length ? VDI_BLOCK_SIZE - in : length;
        if (!vdi_is_allocated(e)) {
            // Unallocated blocks merge into one run (qemu-img map merges them too).
            while (n < length) {
                if (const Status st = entry(++block, &e); st != Status::Ok)
                    return st;
                if (vdi_is_allocated(e))
                    break;
                n = length - n < VDI_BLOCK_SIZE ? length : n + VDI_BLOCK_SIZE;
            }
            out->length = n;
            out->allocation = Allocation::Zero;
            return Status::Ok;
        }
        out->length = n;
        out->allocation = Allocation::Data;
        out->flags = guest::EXTENT_OFFSET_VALID;
        out->offset = data_offset(e, in);
        if (img_.image_type == VDI_TYPE_STATIC)
            return file_status(out);
        return Status::Ok;
    }

    // vdi_co_block_status answers one block at a time (it is map that merges them).
    uint64_t status_boundary(uint64_t offset) const override {
        return (offset / VDI_BLOCK_SIZE + 1) * VDI_BLOCK_SIZE;
    }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > img_.disk_size || len > img_.disk_size - offset)
            return Status::Invalid;
        uint8_t* dst = static_cast<uint8_t*>(buf);
        while (len > 0) {
            const uint64_t in = offset % VDI_BLOCK_SIZE;
            const size_t n = static_cast<size_t>(VDI_BLOCK_SIZE - in < len ? VDI_BLOCK_SIZE - in : len);
            uint32_t e;
            if (const Status st = entry(offset / VDI_BLOCK_SIZE, &e); st != Status::Ok)
                return st;
            if (!vdi_is_allocated(e)) {
                __builtin_memset(dst, 0, n);
            } else if (const Status st = read_file(data_offset(e, in), dst, n); st != Status::Ok) {
                return st;
            }
            dst += n;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    void close() override {
        bmap_.release(alloc_);
        guest::arena_delete(alloc_, this);
    }

private:
    // No overflow: entry < 2^32 and in < 2^20, so the sum stays below 2^53.
    uint64_t data_offset(uint32_t e, uint64_t in) const {
        return uint64_t{img_.offset_data} + uint64_t{e} * VDI_BLOCK_SIZE + in;
    }

    // A static image's blocks (qemu: BDRV_BLOCK_RECURSE): where the file has a hole, or ends, the run
    // reads as zeros by the file's allocation, reported as Zero with its offset.
    Status file_status(Extent* out) {
        const uint64_t file = dev_.size();
        if (out->offset >= file) {
            out->allocation = Allocation::Zero;
            return Status::Ok;
        }
        bool data = true;
        uint64_t run = 0;
        if (const Status st = dev_.allocation(out->offset, &data, &run); st != Status::Ok)
            return st;
        if (run == 0)
            return Status::IoError;
        if (run < out->length)
            out->length = run;
        if (!data)
            out->allocation = Allocation::Zero;
        return Status::Ok;
    }

    // The file's bytes at [at, at + n), zeros past its end (qemu's block layer).
    Status read_file(uint64_t at, uint8_t* dst, size_t n) {
        const uint64_t file = dev_.size();
        size_t have = 0;
        if (at < file)
            have = static_cast<size_t>(file - at < n ? file - at : n);
        if (have > 0)
            if (const Status st = dev_.read(at, dst, have); st != Status::Ok)
                return st;
        __builtin_memset(dst + have, 0, n - have);
        return Status::Ok;
    }

    Status entry(uint64_t block, uint32_t* out) {
        return bmap_.get(block, img_.blocks_in_image, out, [&](uint64_t first, uint64_t count, uint32_t* e) {
            return vdi_read_entries(dev_, img_, first, count, e);
        });
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    VdiImage img_;
    BmapCache bmap_;
};

} // namespace

Status vdi_read_entries(BlockDevice& dev, const VdiImage& img, uint64_t first, uint64_t count, uint32_t* out) {
    uint8_t raw[VDI_BMAP_PAGE_ENTRIES * 4];
    if (count > VDI_BMAP_PAGE_ENTRIES)
        return Status::Invalid;
    const uint64_t at = uint64_t{img.offset_bmap} + first * 4; // < 2^32 + 2^31 * 4: no overflow
    const uint64_t len = count * 4;
    const uint64_t file = dev.size();
    uint64_t have = 0;
    if (at < file)
        have = file - at < len ? file - at : len;
    if (have > 0)
        if (const Status st = dev.read(at, raw, static_cast<size_t>(have)); st != Status::Ok)
            return st;
    __builtin_memset(raw + have, 0, static_cast<size_t>(len - have));
    for (uint64_t i = 0; i < count; ++i)
        out[i] = load_le32(raw + 4 * i);
    return Status::Ok;
}

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "vdi"))
        return Status::Unsupported;
    VdiImage img;
    const char* why = nullptr;
    if (const Status st = vdi_load(*req.image, &img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    BmapCache bmap;
    if (!bmap.init(*req.allocator))
        return Status::NoMemory;
    VdiReader* r = guest::arena_new<VdiReader>(*req.allocator, *req.image, *req.allocator, img, bmap);
    if (r == nullptr) {
        bmap.release(*req.allocator);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::vdi
