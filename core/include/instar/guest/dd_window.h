// img_dd's byte window over its input, computed the same way by the host (its ordinary path) and by
// the guest (a dd planned before the input was open: INSTAR_CONVERT_PLAN_FROM_INFO with
// INSTAR_CONVERT_WINDOW). Freestanding: no library calls.
#pragma once

#include <stdint.h>

namespace instar::guest {

struct DdWindow {
    uint64_t offset = 0;    // where the copy starts in the input's disk
    uint64_t length = 0;    // how many bytes it copies (the output's size)
    bool past_end = false;  // skip= lies past the input's end (qemu warns and writes an empty output)
};

// `input_size`: the input's length in whole sectors (blk_getlength); `block_size` bs= (1..INT64_MAX,
// checked by the caller); count= and skip= in blocks, each only when `has_*`. img_dd: size =
// min(size, count * bs); the window is [skip * bs, size), empty when skip * bs is past size.
inline DdWindow dd_window(uint64_t input_size, uint64_t block_size, bool has_count, uint64_t count, bool has_skip,
                          uint64_t skip) {
    constexpr uint64_t INT64_LIMIT = 0x7fffffffffffffffull;
    uint64_t size = input_size;
    if (has_count && count <= INT64_LIMIT / block_size && count * block_size < size)
        size = count * block_size;
    DdWindow w;
    if (has_skip && (skip > INT64_LIMIT / block_size || size < skip * block_size)) {
        w.offset = size;
        w.length = 0;
        w.past_end = true;
    } else {
        w.offset = has_skip ? skip * block_size : 0;
        w.length = size - w.offset;
    }
    return w;
}

} // namespace instar::guest
