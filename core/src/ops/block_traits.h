// What map, compare and measure send the guest about each layer's format, derived from the
// plugin's FormatDescriptor::qemu_traits (how qemu's block driver answers block status). No
// format name decides behaviour here: a plugin says its style in its descriptor.
#pragma once

#include <instar/guest_abi.h>
#include <instar/plugin.h>

#include <cstdint>

namespace instar {

// map's per-image INSTAR_MAP_STYLE_* (the guest's map_walk).
constexpr std::uint32_t map_style_of(std::uint32_t traits) {
    std::uint32_t s = 0;
    if (traits & QEMU_RECURSE_HOLES)
        s |= INSTAR_MAP_STYLE_HOLE_IS_DATA;
    if (traits & QEMU_UNALLOCATED_ZERO)
        s |= INSTAR_MAP_STYLE_UNALLOCATED_ZERO;
    if (traits & QEMU_NO_BLOCK_STATUS)
        s |= INSTAR_MAP_STYLE_NO_STATUS;
    if (!(traits & QEMU_SUPPORTS_BACKING))
        s |= INSTAR_MAP_STYLE_NO_BACKING;
    if (traits & QEMU_SPLIT_EOF)
        s |= INSTAR_MAP_STYLE_SPLIT_EOF;
    return s;
}

// compare's per-image INSTAR_COMPARE_IMAGE_* (the guest's compare_engine).
constexpr std::uint32_t compare_flags_of(std::uint32_t traits) {
    std::uint32_t f = 0;
    if (traits & QEMU_SUPPORTS_BACKING)
        f |= INSTAR_COMPARE_IMAGE_BACKING;
    if (traits & QEMU_NO_BLOCK_STATUS)
        f |= INSTAR_COMPARE_IMAGE_NO_STATUS;
    if (traits & QEMU_RECURSE_HOLES)
        f |= INSTAR_COMPARE_IMAGE_HOLE_DATA;
    return f;
}

// instar_image_facts.flags for map's, measure's and compare's plans. The check is qcow2's own
// (an image with an external data file is skipped by the guest: its data is not in the image file).
constexpr std::uint32_t image_facts_flags_of(std::uint32_t traits) {
    return (traits & QEMU_DETECT_METADATA_PREALLOC) ? INSTAR_IMAGE_DETECT_PREALLOC : 0u;
}

} // namespace instar
