// qemu-img compare's walk (qemu-img.c img_compare), freestanding: both images' block status above
// no base (qemu's flag word, modelled from each layer's Extent), the same chunks qemu takes, reads
// only where at least one side is not known to be zero, and the first mismatch at qemu's 512-byte
// granularity. Runs in the guest (INSTAR_OP_COMPARE) and hosted in tests/formats.
#pragma once

#include <instar/guest/read_api.h>

#include "read_ahead.h"

#include <stddef.h>
#include <stdint.h>

namespace instar::convert {

// qemu's BDRV_BLOCK_* bits as bdrv_block_status_above returns them.
inline constexpr uint32_t QBS_DATA = 0x01;
inline constexpr uint32_t QBS_ZERO = 0x02;
inline constexpr uint32_t QBS_OFFSET_VALID = 0x04;
inline constexpr uint32_t QBS_ALLOCATED = 0x10;
inline constexpr uint32_t QBS_EOF = 0x20;

// Per-layer facts qemu's block layer knows about the format (instar_compare_image flags).
inline constexpr uint32_t LAYER_SUPPORTS_BACKING = 1u; // drv->supports_backing
inline constexpr uint32_t LAYER_NO_STATUS = 2u;        // no bdrv_co_block_status: all data
inline constexpr uint32_t LAYER_HOLE_DATA = 4u;        // Zero with an offset is DATA|ZERO (RECURSE formats)
inline constexpr uint32_t LAYER_RECURSE = 8u;          // Data with an offset asks the layer's file (RECURSE)

// One image with its backing chain, top first.
struct CompareSide {
    guest::ImageReader* const* chain = nullptr;
    const uint32_t* layer_flags = nullptr; // depth entries
    // Each layer's own file (for LAYER_RECURSE: the file's holes); entries may be nullptr.
    guest::BlockDevice* const* layer_files = nullptr;
    uint32_t depth = 0;
};

enum class CompareOutcome : uint32_t {
    Identical = 0,
    Mismatch = 1,       // offset: the first differing (or, past the smaller size, non-zero) sector
    SizeStrict = 2,     // -s and the sizes differ
    StatusStrict = 3,   // -s and the status words differ at offset
    StatusFailed = 5,   // side's block status failed
    ReadFailed = 6,     // reading side at offset failed
};

struct CompareResult {
    CompareOutcome outcome = CompareOutcome::Identical;
    uint32_t side = 0;
    uint64_t offset = 0;
    bool size_mismatch = false; // the "Warning: Image size mismatch!" line was reached
    guest::Status read_status = guest::Status::Ok; // ReadFailed: what the read returned
};

struct CompareParams {
    bool strict = false;
    // Progress in bytes of the larger image, once per chunk as qemu-img prints it; may be null.
    void (*progress)(void* ctx, uint64_t chunk, uint64_t total) = nullptr;
    void* progress_ctx = nullptr;
    // Read-ahead (docs/compare.md): while it compares a chunk both images have data for, the walk
    // reads the next such chunk of both into second buffers, when the runs it already knows say what
    // that chunk is and both images' reads allow it. Empty hooks: every read made when its chunk comes.
    ReadAheadHooks ahead;
};

// qemu's bdrv_block_status_above(bs, NULL, offset, bytes): the flag word and the run. The side's
// size is its top's virtual size rounded up to 512 (blk_getlength).
// *top_data (may be nullptr): the top image's own reader said Data for the whole run.
guest::Status qemu_block_status(const CompareSide& side, uint64_t offset, uint64_t bytes, uint32_t* flags,
                                uint64_t* pnum, bool* top_data = nullptr);

// The image's length as qemu-img sees it (whole sectors).
uint64_t side_length(const CompareSide& side);

// Compares; a non-Ok Status only for engine failures (memory, bad arguments). Image failures are
// outcomes (StatusFailed, ReadFailed), as qemu-img reports them.
guest::Status run_compare(const CompareSide& a, const CompareSide& b, const CompareParams& p,
                          guest::Allocator& alloc, CompareResult* result);

// The first 512-byte sector where the buffers differ (compare_buffers), or len when none does.
size_t first_diff_sector(const uint8_t* a, const uint8_t* b, size_t len);
// The first 512-byte sector holding a non-zero byte (find_nonzero), or len when all are zero.
size_t first_nonzero_sector(const uint8_t* a, size_t len);

} // namespace instar::convert
