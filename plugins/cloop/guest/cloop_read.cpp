// The cloop reader (cloop_read.h).
#include "cloop_read.h"

#include "cloop_format.h"

#include <instar/guest/arena_new.h>

namespace instar::cloop {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

// zlib's inflateInit: a zlib header and a 32 KiB window.
constexpr int ZLIB_WINDOW_BITS = 15;

class CloopReader final : public guest::ImageReader {
public:
    CloopReader(BlockDevice& dev, guest::Allocator& alloc, const guest::Codecs& codecs, const CloopImage& img,
                uint8_t* compressed, uint8_t* block)
        : dev_(dev), alloc_(alloc), codecs_(codecs), img_(img), compressed_(compressed), block_(block),
          current_(img.n_blocks) {}

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
            const uint64_t b = offset / img_.block_size;
            const uint64_t into = offset % img_.block_size;
            const uint64_t n = img_.block_size - into < len ? img_.block_size - into : len;
            if (const Status st = load_block(static_cast<uint32_t>(b)); st != Status::Ok)
                return st;
            __builtin_memcpy(dst, block_ + into, static_cast<size_t>(n));
            dst += n;
            offset += n;
            len -= static_cast<size_t>(n);
        }
        return Status::Ok;
    }

    void close() override {
        alloc_.deallocate(compressed_, static_cast<size_t>(img_.max_compressed + 1));
        alloc_.deallocate(block_, img_.block_size);
        guest::arena_delete(alloc_, this);
    }

private:
    Status offset_at(uint64_t index, uint64_t* out) {
        const uint64_t first = index - index % CLOOP_OFFSET_PAGE;
        if (!have_page_ || first != page_first_) {
            const uint64_t entries = uint64_t{img_.n_blocks} + 1;
            const uint64_t count = entries - first < CLOOP_OFFSET_PAGE ? entries - first : CLOOP_OFFSET_PAGE;
            uint8_t raw[CLOOP_OFFSET_PAGE * 8];
            if (const Status st = read_zero_past_eof(dev_, CLOOP_OFFSETS_AT + 8 * first, raw, 8 * count);
                st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < count; ++i)
                page_[i] = load_be64(raw + 8 * i);
            page_first_ = first;
            have_page_ = true;
        }
        *out = page_[index - first];
        return Status::Ok;
    }

    // qemu's cloop_read_block: any failure is -EIO.
    Status load_block(uint32_t b) {
        if (b == current_)
            return Status::Ok;
        uint64_t start, end;
        if (offset_at(b, &start) != Status::Ok || offset_at(uint64_t{b} + 1, &end) != Status::Ok)
            return Status::IoError;
        // Monotonic and bounded by max_compressed: checked when the image was opened.
        const uint64_t bytes = end - start;
        if (bytes > img_.max_compressed)
            return Status::IoError;
        current_ = img_.n_blocks;
        if (read_zero_past_eof(dev_, start, compressed_, bytes) != Status::Ok)
            return Status::IoError;
        size_t out_len = 0;
        const Status st = codecs_.inflate(compressed_, static_cast<size_t>(bytes), block_, img_.block_size, &out_len,
                                          ZLIB_WINDOW_BITS);
        if (st != Status::Ok || out_len != img_.block_size)
            return Status::IoError;
        current_ = b;
        return Status::Ok;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    const guest::Codecs& codecs_;
    CloopImage img_;
    uint8_t* compressed_; // max_compressed + 1 bytes, as qemu's
    uint8_t* block_;      // block_size bytes: block current_ inflated
    uint32_t current_;    // n_blocks: none
    uint64_t page_[CLOOP_OFFSET_PAGE];
    uint64_t page_first_ = 0;
    bool have_page_ = false;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "cloop"))
        return Status::Unsupported;
    CloopImage img;
    CloopMessage msg;
    const char* why = nullptr;
    if (const Status st = cloop_load(*req.image, &img, &why, &msg); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    if (req.codecs == nullptr || req.codecs->inflate == nullptr) {
        guest::say_reason(req.reasons, "No inflate for cloop blocks");
        return Status::Unsupported;
    }
    guest::Allocator& a = *req.allocator;
    const size_t compressed_bytes = static_cast<size_t>(img.max_compressed + 1);
    uint8_t* compressed = static_cast<uint8_t*>(a.allocate(compressed_bytes, 16));
    // qemu allocates these two on the host (up to 128 MiB + 1 and 64 MiB, its limits); instar holds
    // them in the sandbox, which at the default --max-guest-memory has room for both. A lower cap
    // is named (divergence cloop-guest-memory).
    if (compressed == nullptr) {
        guest::say_reason(req.reasons, cloop_message(&msg, "Could not allocate compressed_block of ", compressed_bytes,
                                                     " bytes in the sandbox (see --max-guest-memory)"));
        return Status::NoMemory;
    }
    uint8_t* block = static_cast<uint8_t*>(a.allocate(img.block_size, 16));
    if (block == nullptr) {
        a.deallocate(compressed, compressed_bytes);
        guest::say_reason(req.reasons, cloop_message(&msg, "Could not allocate uncompressed_block of ", img.block_size,
                                                     " bytes in the sandbox (see --max-guest-memory)"));
        return Status::NoMemory;
    }
    CloopReader* r = guest::arena_new<CloopReader>(a, *req.image, a, *req.codecs, img, compressed, block);
    if (r == nullptr) {
        a.deallocate(block, img.block_size);
        a.deallocate(compressed, compressed_bytes);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::cloop
