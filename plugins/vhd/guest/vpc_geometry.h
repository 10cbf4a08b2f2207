// VHD disk geometry (cylinders, heads, sectors per track) and qemu's size rules: the CHS algorithm
// of the VHD specification and how qemu rounds a requested size to a geometry.
#pragma once

#include <stdint.h>

namespace instar::vpc {

inline constexpr uint64_t VHD_CHS_MAX_C = 65535;
inline constexpr uint64_t VHD_CHS_MAX_H = 16;
inline constexpr uint64_t VHD_CHS_MAX_S = 255;
// CHS maxed out: the disk size is the footer's current_size instead of the geometry.
inline constexpr uint64_t VHD_MAX_GEOMETRY = VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S;
// qemu's maximum disk size: 2040 GiB in sectors.
inline constexpr uint64_t VHD_MAX_SECTORS = 0xff000000;

struct VpcGeometry {
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors_per_track;
    uint64_t sectors() const { return static_cast<uint64_t>(cylinders) * heads * sectors_per_track; }
};

// The specification's geometry for `total_sectors` (qemu's calculate_geometry, with its 255-head
// extension past 127 GiB); it may cover fewer sectors than asked for.
VpcGeometry vpc_geometry_for(uint64_t total_sectors);

// qemu's calculate_rounded_image_size for a size in bytes (a multiple of 512): the geometry and the
// disk's sector count, rounded up to the next geometry unless `force_size` (then the geometry is
// maxed out and the sectors are the size's). False when the disk would exceed VHD_MAX_SECTORS.
bool vpc_rounded_size(uint64_t size, bool force_size, VpcGeometry* geometry, uint64_t* total_sectors);

} // namespace instar::vpc
