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

} // namespace instar::guest
