// A backing chain read as one disk, composed as qemu's bdrv_block_status_above and backing reads
// do: where an image says Unallocated the next image down answers; past a backing image's virtual
// size, and below the last image, the disk reads as zeros.
#pragma once

#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::convert {

// What the chain says about a range (qemu-img convert's three block classes).
enum class ChainClass : uint32_t {
    Data = 0,    // BDRV_BLOCK_DATA: read and copy
    Zero = 1,    // BDRV_BLOCK_ZERO
    Backing = 2, // neither: left to the target's backing file (only when asked to stop at the top)
};

class ChainReader {
public:
    ChainReader() = default;
    ChainReader(guest::ImageReader* const* chain, uint32_t depth) : chain_(chain), depth_(depth) {}

    uint64_t virtual_size() const { return depth_ == 0 ? 0 : chain_[0]->virtual_size(); }

    // The first run of [offset, offset + length) with one class (length clipped to the top image).
    // top_only: qemu's base = the top's backing (convert -B): Unallocated in the top is Backing,
    // unless the top's backing is shorter than offset (then Zero, as qemu says).
    guest::Status status(uint64_t offset, uint64_t length, bool top_only, ChainClass* cls, uint64_t* run) const;

    // The composed bytes of [offset, offset + len); bytes past the top's virtual size read as zeros.
    guest::Status read(uint64_t offset, void* buf, size_t len) const;

    // Which layer (0 the top) refused a read through to its backing image (ImageReader::
    // backing_valid), or NO_LAYER when none has.
    static constexpr uint32_t NO_LAYER = 0xFFFFFFFFu;
    uint32_t refused_layer() const { return refused_; }

    // A lone image whose reads may be made ahead of time (ImageReader::reads_ahead_safe).
    bool reads_ahead_safe() const { return depth_ == 1 && chain_[0]->reads_ahead_safe(); }

    // A lone image's ImageReader::status_boundary (where qemu's driver ends a block-status answer
    // starting at `offset`); UINT64_MAX for a chain (and for readers without one).
    uint64_t lone_status_boundary(uint64_t offset) const {
        return depth_ == 1 ? chain_[0]->status_boundary(offset) : UINT64_MAX;
    }

    // The top image's content identifier (ImageReader::content_id).
    bool top_content_id(uint32_t kind, uint32_t* out) const { return depth_ != 0 && chain_[0]->content_id(kind, out); }

private:
    guest::Status read_layer(uint32_t layer, uint64_t offset, uint8_t* buf, uint64_t len) const;

    guest::ImageReader* const* chain_ = nullptr;
    uint32_t depth_ = 0;
    mutable uint32_t refused_ = NO_LAYER;
};

// A chain as one ImageReader (Data or Zero, never Unallocated): what a writer reads for the target's
// backing file (ImageWriter::set_backing).
class ChainImageReader final : public guest::ImageReader {
public:
    ChainImageReader(guest::ImageReader* const* chain, uint32_t depth) : chain_(chain, depth) {}
    uint64_t virtual_size() const override { return chain_.virtual_size(); }
    guest::Status status(uint64_t offset, uint64_t length, guest::Extent* out) override;
    guest::Status read(uint64_t offset, void* buf, size_t len) override { return chain_.read(offset, buf, len); }
    void close() override {}
    // The chain's identity is its top image's (a vmdk writer compares its parentCID with it).
    bool content_id(uint32_t kind, uint32_t* out) const override { return chain_.top_content_id(kind, out); }

private:
    ChainReader chain_;
};

} // namespace instar::convert
