// The VMDK reader (read_api.h): every image `info` accepts, read as qemu's block/vmdk.c reads it.
#pragma once

#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::vmdk {

// Opens the image of req (req.files: the extent files info reported, in descriptor order).
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

// ---- Internals shared by vmdk_read_open.cpp and vmdk_read.cpp (and the unit tests) ----

// Grain tables kept in memory at once (qemu's L2_CACHE_SIZE): each is at most 32 KiB (seSparse).
inline constexpr uint32_t VMDK_READ_GT_CACHE = 16;
// Grain-directory entries read at once, and how many such pieces are cached: the directory can be
// 128 MiB (32 Mi entries), so it is never loaded whole.
inline constexpr uint32_t VMDK_READ_GD_CHUNK = 512;
inline constexpr uint32_t VMDK_READ_GD_CACHE = 4;
// Largest grain of a compressed extent instar inflates: qemu and VMware write 64 KiB grains; the
// reader holds one grain and twice that of compressed input, so this bounds that memory.
inline constexpr uint64_t VMDK_READ_MAX_COMPRESSED_GRAIN = 2u << 20;
// A FLAT extent's start in its file (descriptor sectors): no file is larger; guards byte arithmetic.
inline constexpr uint64_t VMDK_READ_MAX_FLAT_OFFSET_SECTORS = (64ull << 40) / 512;
// Grain-directory entries one status() call walks before answering with the run found so far.
inline constexpr uint64_t VMDK_READ_MAX_GD_STEPS = 1u << 16;
// Grain tables one status() call loads before answering with the run found so far.
inline constexpr uint32_t VMDK_READ_MAX_GT_LOADS = 64;

// One extent as the reader uses it (qemu's VmdkExtent, reduced to what reading needs).
struct ReadExtent {
    guest::BlockDevice* dev;
    uint32_t device;       // Extent::device: 0 the image, 1 + i req.files[i]
    uint64_t start;        // first virtual byte
    uint64_t bytes;        // virtual bytes
    bool flat;
    bool compressed;
    bool marker;           // VMDK4_FLAG_MARKER: each compressed grain starts with {lba, size}
    bool zero_grain;       // VMDK4_FLAG_ZERO_GRAIN: GTE 1 means a zeroed grain
    uint64_t flat_offset;  // flat: byte offset of the extent's first byte in its file
    uint64_t gd_offset;    // sparse: byte offset of the grain directory
    uint32_t l1_size;      // sparse: grain-directory entries (qemu's 32-bit l1_size)
    uint32_t gtes;         // sparse: entries per grain table
    uint64_t grain_bytes;  // sparse: bytes per grain
    bool sesparse;         // seSparse: 8-byte entries, tables and grains addressed by index
    uint64_t se_gt_offset; // seSparse: sector of the grain tables area
    uint64_t se_grains_offset; // seSparse: sector of the grains area
};

struct ReadLayout {
    ReadExtent* extents; // from the allocator, `capacity` entries of which `count` are used
    uint32_t count;
    uint32_t capacity;
    uint64_t virtual_size;
    uint64_t max_compressed_grain; // 0 when no extent is compressed
    uint64_t max_gt_bytes;         // largest grain table (KDMV: 2 KiB; COWD 16 KiB; seSparse 32 KiB)
    uint32_t cid;                  // the descriptor's CID and parentCID, as qemu's vmdk_read_cid reads them
    uint32_t parent_cid;
};

// ImageReader::content_id's kind for a vmdk CID: only a vmdk image answers it, so a vmdk child over
// any other format fails the parentCID check, as qemu's vmdk_is_cid_valid says.
inline constexpr uint32_t VMDK_CID_KIND = 0x44494356u; // "VCID"

// qemu's vmdk_is_cid_valid: reads through a child's unallocated grains to its backing image need the
// backing image to be a vmdk whose CID is the child's parentCID.
inline bool vmdk_backing_valid(uint32_t parent_cid, const guest::ImageReader& backing) {
    uint32_t cid = 0;
    return backing.content_id(VMDK_CID_KIND, &cid) && cid == parent_cid;
}

// The open sequence (qemu's vmdk_open): fills `layout` (extents allocated from req.allocator,
// released with free_layout). Reports qemu's reason through req.reasons on failure.
guest::Status open_layout(const guest::OpenRequest& req, ReadLayout* layout);
void free_layout(guest::Allocator& alloc, ReadLayout* layout);

// Sends a reason to `sink` (may be nullptr): `text`, then an optional decimal number and a tail.
void say(guest::ReasonSink* sink, const char* text, const char* tail = nullptr, uint64_t number = 0,
         bool with_number = false);

} // namespace instar::vmdk
