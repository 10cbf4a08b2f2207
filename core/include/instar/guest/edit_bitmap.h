// EditCommand::Bitmap's argument bytes (docs/bitmap.md): qemu-img bitmap's actions in command-line
// order, applied one after another to the bitmap BITMAP of the image; the first that fails stops the
// run (what the earlier ones did stays, as qemu-img stores them when it closes the image).
//
// Layout: BitmapArgs, then `action_count` BitmapAction records (0 only with BITMAP_COPY_ALL or BITMAP_STORE_ONLY) each followed by its `src_len`
// source-name bytes (--merge only), then `name_len` bytes of BITMAP, then `node_len` bytes of the
// node name qemu would print in messages ("#block1NN" or --image-opts' node-name). No terminators.
// The host built these bytes (trusted); the guest still checks every length against args_len.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

enum class BitmapActionKind : uint32_t {
    Add = 1,
    Remove = 2,
    Clear = 3,
    Enable = 4,
    Disable = 5,
    Merge = 6, // from bitmap `src` of the image, or of EditRequest::extra[0] (BITMAP_SOURCE_FILE)
};

inline constexpr uint32_t BITMAP_SOURCE_FILE = 1;  // -b given: --merge reads EditRequest::extra[0]
inline constexpr uint32_t BITMAP_SOURCE_EMPTY = 2; // -b names an image of a format without bitmaps (no extra)
// convert --bitmaps (no actions, no BITMAP): every persistent bitmap of extra[0] (with
// BITMAP_SOURCE_FILE) is added to the image with its granularity and enabled state, then merged
// from the source, as qemu-img's convert_copy_bitmaps; in-use ones are skipped (the host refused
// them already unless --skip-broken-bitmaps). Errors: "Failed to create/populate bitmap NAME: ...".
inline constexpr uint32_t BITMAP_COPY_ALL = 4;
// No actions: qemu-img opened the image and failed before any (the -b source could not be
// opened); closing stores its bitmaps anew, which this reproduces.
inline constexpr uint32_t BITMAP_STORE_ONLY = 8;

// At most this many actions: far more than any command line holds, and it bounds the guest's loop.
inline constexpr uint32_t BITMAP_MAX_ACTIONS = 4096;

struct BitmapArgs {
    uint32_t action_count;
    uint32_t flags;        // BITMAP_SOURCE_*
    uint64_t granularity;  // -g as cvtnum read it (<= INT64_MAX); 0: not given (the default)
    uint32_t name_len;     // BITMAP's bytes (may be 0: qemu's "Bitmap name cannot be empty")
    uint32_t node_len;
};
static_assert(sizeof(BitmapArgs) == 24, "bitmap args layout");

struct BitmapAction {
    uint32_t kind;    // BitmapActionKind
    uint32_t src_len; // --merge's SOURCE bytes that follow
};
static_assert(sizeof(BitmapAction) == 8, "bitmap action layout");

} // namespace instar::guest
