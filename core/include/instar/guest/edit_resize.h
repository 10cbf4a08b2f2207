// EditCommand::Resize's argument bytes (docs/resize.md): the host parsed `[+|-]SIZE` against the
// virtual size info reported and sends the absolute new size; the format checks it again against
// the image it reads (the header is untrusted, the host's view came from the same untrusted bytes).
#pragma once

#include <instar/guest/create_api.h>

#include <stdint.h>

namespace instar::guest {

inline constexpr uint32_t RESIZE_SHRINK = 1;          // --shrink given
inline constexpr uint32_t RESIZE_PREALLOC_GIVEN = 2;  // --preallocation given (else `prealloc` is Off)
inline constexpr uint32_t RESIZE_HAS_BACKING = 4;     // the image has a backing image; backing_size is its size
// INSTAR_EDIT_INFO_FIRST runs: new_size is the user's SIZE, relative when RESIZE_GROW_BY or
// RESIZE_SHRINK_BY is set, and old_size is 0; the runtime takes the current size from the info it
// just gathered, applies resize_new_size and, when resize_check passes, hands the format the absolute
// sizes with these bits cleared (the host's own checks print the messages when it does not).
inline constexpr uint32_t RESIZE_FROM_INFO = 8;
inline constexpr uint32_t RESIZE_GROW_BY = 16;    // +SIZE
inline constexpr uint32_t RESIZE_SHRINK_BY = 32;  // -SIZE
// EditRequest::extra[i] holds the backing chain's bytes from the offset the i-th RESIZE_DATA_NEED_BACKING
// record asked for (as the overlay reads them where it maps nothing: zeros past the backing image's
// end, the device shorter then), sent by the host on the run it makes again.
inline constexpr uint32_t RESIZE_BACKING_BYTES = 64;
// The image is written right after the resize (commit grows a smaller base, then copies into it):
// a format whose existing-image writer would refuse the image refuses the resize first, so a
// failed commit leaves the base as it was. Formats whose writer takes every image they resize
// ignore it.
inline constexpr uint32_t RESIZE_THEN_WRITTEN = 128;

// Resize's data record (the first command data kind, INSTAR_EDIT_COMMAND_DATA, spelled here as
// edit_api.h spells its own): a uint32 index into EditRequest::files of a file the image no longer
// names after a shrink (a vmdk extent past the new end). Sent after the switch; the host removes
// the file once the command succeeded, if its own rules let it (docs/resize.md, "Dropped files").
inline constexpr uint32_t RESIZE_DATA_DROPPED_FILE = 16;
// Resize's second data kind: the format needs the backing chain's bytes of a range to carry out the
// resize as qemu does (a qcow2 overlay zeroed from an old size inside a cluster it does not map:
// qemu's write path copies the cluster's head from the backing file). Payload: ResizeNeedBacking.
// Sent before nothing was written and a refusal; the host reads the range through the backing chain
// in a sandbox of its own and runs the resize again with RESIZE_BACKING_BYTES.
inline constexpr uint32_t RESIZE_DATA_NEED_BACKING = 17;
struct ResizeNeedBacking {
    uint64_t offset; // guest offset in the backing chain
    uint64_t length; // at most RESIZE_MAX_BACKING_BYTES
};
static_assert(sizeof(ResizeNeedBacking) == 16, "resize need-backing record layout");
// The most a format asks for: one cluster of qcow2's largest (2 MiB).
inline constexpr uint64_t RESIZE_MAX_BACKING_BYTES = 2u << 20;
// Records a run may send: qcow2's copy-on-write of the old last cluster and of the new last one (a
// metadata preallocation that ends inside a cluster over a longer backing file).
inline constexpr uint32_t RESIZE_MAX_BACKING_RANGES = 2;

struct ResizeArgs {
    uint64_t new_size;  // bytes, as qemu-img computed it (before any format rounding)
    uint64_t old_size;  // the virtual size the host saw (qemu's "current size" in messages)
    uint32_t prealloc;  // Prealloc
    uint32_t flags;     // RESIZE_*
    // The backing image's virtual size (as info reports it), when RESIZE_HAS_BACKING: qemu zeroes
    // the grown area of an overlay whose backing image reaches into it (bdrv_co_truncate).
    uint64_t backing_size;
};
static_assert(sizeof(ResizeArgs) == 32, "resize args layout");

// qemu-img resize's arithmetic: int64 current size, the uint64 SIZE added or subtracted, the total
// taken as int64.
inline int64_t resize_new_size(int64_t current, uint64_t value, bool grow_by, bool shrink_by) {
    if (grow_by)
        return static_cast<int64_t>(static_cast<uint64_t>(current) + value);
    if (shrink_by)
        return static_cast<int64_t>(static_cast<uint64_t>(current) - value);
    return static_cast<int64_t>(value);
}

// qemu-img resize's checks before it opens the image for the change, in its order.
enum class ResizeCheck : uint32_t { Ok, NotPositive, PreallocNotGrowing, NeedShrink };
inline ResizeCheck resize_check(int64_t current, int64_t total, bool prealloc, bool shrink) {
    if (total <= 0)
        return ResizeCheck::NotPositive;
    if (total <= current && prealloc)
        return ResizeCheck::PreallocNotGrowing;
    if (total < current && !shrink)
        return ResizeCheck::NeedShrink;
    return ResizeCheck::Ok;
}

} // namespace instar::guest
