// The DMG reader (dmg_read.h).
#include "dmg_read.h"

#include "dmg_format.h"

#include <instar/guest/arena_new.h>

namespace instar::dmg {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

class DmgReader final : public guest::ImageReader {
public:
    DmgReader(BlockDevice& dev, guest::Allocator& alloc, const guest::Codecs* codecs, const DmgImage& img,
              uint8_t* compressed, size_t compressed_cap, uint8_t* chunk, size_t chunk_cap)
        : dev_(dev), alloc_(alloc), codecs_(codecs), img_(img), compressed_(compressed),
          compressed_cap_(compressed_cap), chunk_(chunk), chunk_cap_(chunk_cap), current_(img.n_chunks) {}

    uint64_t virtual_size() const override { return img_.total_sectors * 512; }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= virtual_size() || length == 0 || length > virtual_size() - offset)
            return Status::Invalid;
        // qemu's dmg has no bdrv_co_block_status: the block layer calls everything data.
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
            const uint64_t sector = offset / 512;
            const size_t within = static_cast<size_t>(offset % 512);
            const size_t n = 512 - within < len ? 512 - within : len;
            if (!load(sector))
                return Status::IoError;
            const DmgChunk& c = img_.chunks[current_];
            if (c.type == UDZE || c.type == UDIG) {
                __builtin_memset(dst, 0, n);
            } else {
                // The sector's place in the decoded chunk. A raw chunk whose sector count exceeds its
                // stored length reads past qemu's buffer there (undefined); instar reads zeros.
                const uint64_t at = (sector - c.sector) * 512 + within;
                if (at < chunk_cap_ && n <= chunk_cap_ - at)
                    __builtin_memcpy(dst, chunk_ + at, n);
                else
                    __builtin_memset(dst, 0, n);
            }
            dst += n;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    void close() override {
        if (compressed_ != nullptr)
            alloc_.deallocate(compressed_, compressed_cap_);
        if (chunk_ != nullptr)
            alloc_.deallocate(chunk_, chunk_cap_);
        dmg_free(alloc_, img_);
        guest::arena_delete(alloc_, this);
    }

private:
    bool in_chunk(uint32_t k, uint64_t sector) const {
        if (k >= img_.n_chunks)
            return false;
        const DmgChunk& c = img_.chunks[k];
        return c.sector <= sector && c.sector + c.count > sector;
    }

    // qemu's search_chunk, its binary search over a table it never sorts (so an unsorted table
    // finds what qemu finds), except that it never reads past the table's end.
    uint32_t search(uint64_t sector) const {
        const uint32_t n = img_.n_chunks;
        uint32_t lo = 0, hi = n;
        while (lo <= hi) {
            const uint32_t mid = lo + (hi - lo) / 2;
            if (mid >= n)
                return n;
            const DmgChunk& c = img_.chunks[mid];
            if (c.sector > sector) {
                if (mid == 0)
                    return n;
                hi = mid - 1;
            } else if (c.sector + c.count > sector) {
                return mid;
            } else {
                lo = mid + 1;
            }
        }
        return n;
    }

    // dmg_read_chunk: makes the chunk holding `sector` current.
    bool load(uint64_t sector) {
        if (in_chunk(current_, sector))
            return true;
        const uint32_t k = search(sector);
        if (k >= img_.n_chunks)
            return false;
        current_ = img_.n_chunks;
        const DmgChunk& c = img_.chunks[k];
        if (c.type == UDZO) {
            if (dmg_pread(dev_, c.offset, compressed_, c.length) != Status::Ok)
                return false;
            size_t out_len = 0;
            const size_t want = static_cast<size_t>(c.count) * 512;
            const Status st = codecs_->inflate(compressed_, c.length, chunk_, want, &out_len, 15);
            if (st != Status::Ok || out_len != want)
                return false;
        } else if (c.type == UDRW) {
            if (dmg_pread(dev_, c.offset, chunk_, c.length) != Status::Ok)
                return false;
        }
        current_ = k;
        return true;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    const guest::Codecs* codecs_;
    DmgImage img_;
    uint8_t* compressed_;
    size_t compressed_cap_;
    uint8_t* chunk_;
    size_t chunk_cap_;
    uint32_t current_;
};

void say(guest::ReasonSink* sink, const char* text) { guest::say_reason(sink, text); }

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    guest::Allocator& alloc = *req.allocator;
    DmgImage img;
    DmgWhy why;
    if (const Status st = dmg_load(*req.image, alloc, true, &img, &why); st != Status::Ok) {
        say(req.reasons, why.text);
        return st;
    }
    if (guest::refuse_snapshot_load(req, "dmg")) { // after the open, as qemu's convert -l
        dmg_free(alloc, img);
        return Status::Unsupported;
    }
    if (img.has_zlib && (req.codecs == nullptr || req.codecs->inflate == nullptr)) {
        dmg_free(alloc, img);
        say(req.reasons, "No inflate for zlib chunks");
        return Status::Unsupported;
    }
    // qemu's two chunk buffers, sized by the largest chunk (each at most 64 MiB by the limits).
    const size_t compressed_cap = size_t{img.max_compressed_size} + 1;
    const size_t chunk_cap = size_t{img.max_sectors_per_chunk} * 512;
    auto* compressed = static_cast<uint8_t*>(alloc.allocate(compressed_cap, 16));
    auto* chunk = compressed == nullptr ? nullptr : static_cast<uint8_t*>(alloc.allocate(chunk_cap, 16));
    if (chunk != nullptr)
        __builtin_memset(chunk, 0, chunk_cap);
    DmgReader* r = chunk == nullptr ? nullptr
                                    : guest::arena_new<DmgReader>(alloc, *req.image, alloc, req.codecs, img,
                                                                  compressed, compressed_cap, chunk, chunk_cap);
    if (r == nullptr) {
        if (chunk != nullptr)
            alloc.deallocate(chunk, chunk_cap);
        if (compressed != nullptr)
            alloc.deallocate(compressed, compressed_cap);
        dmg_free(alloc, img);
        say(req.reasons, "Could not open '{image}': Cannot allocate memory");
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::dmg
