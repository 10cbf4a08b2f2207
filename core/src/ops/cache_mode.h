// qemu's cache modes (-t, -T) as the ops apply them to the files they write and read.
#pragma once

#include <string_view>

namespace instar {

// qemu's bdrv_parse_cache_mode: none/off and directsync set BDRV_O_NOCACHE (O_DIRECT); unsafe sets
// BDRV_O_NO_FLUSH (every flush is ignored, the one at close included); every other mode flushes at
// the latest when the image is closed. docs/convert.md, "Cache modes".
inline bool cache_is_direct(std::string_view mode) { return mode == "none" || mode == "off" || mode == "directsync"; }
inline bool cache_flushes(std::string_view mode) { return mode != "unsafe"; }

} // namespace instar
