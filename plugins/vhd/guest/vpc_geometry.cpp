// VHD geometry: the specification's CHS algorithm and qemu's rounding of sizes to it.
#include "vpc_geometry.h"

namespace instar::vpc {

VpcGeometry vpc_geometry_for(uint64_t total_sectors) {
    if (total_sectors > VHD_MAX_GEOMETRY)
        total_sectors = VHD_MAX_GEOMETRY;
    VpcGeometry g{};
    uint32_t cyls_times_heads;
    if (total_sectors >= 65535ull * 16 * 63) {
        g.sectors_per_track = 255;
        g.heads = 16;
        cyls_times_heads = static_cast<uint32_t>(total_sectors / g.sectors_per_track);
    } else {
        g.sectors_per_track = 17;
        cyls_times_heads = static_cast<uint32_t>(total_sectors / g.sectors_per_track);
        // qemu keeps the head count in a uint8_t: a count above 255 wraps before the checks below,
        // which then always move on to 31 sectors, as they do for any count above 16.
        g.heads = static_cast<uint8_t>((cyls_times_heads + 1023) / 1024);
        if (g.heads < 4)
            g.heads = 4;
        if (cyls_times_heads >= g.heads * 1024u || g.heads > 16) {
            g.sectors_per_track = 31;
            g.heads = 16;
            cyls_times_heads = static_cast<uint32_t>(total_sectors / g.sectors_per_track);
        }
        if (cyls_times_heads >= g.heads * 1024u) {
            g.sectors_per_track = 63;
            g.heads = 16;
            cyls_times_heads = static_cast<uint32_t>(total_sectors / g.sectors_per_track);
        }
    }
    g.cylinders = static_cast<uint16_t>(cyls_times_heads / g.heads);
    return g;
}

bool vpc_rounded_size(uint64_t size, bool force_size, VpcGeometry* geometry, uint64_t* total_sectors) {
    VpcGeometry g{};
    if (force_size) {
        g = {static_cast<uint16_t>(VHD_CHS_MAX_C), static_cast<uint8_t>(VHD_CHS_MAX_H),
             static_cast<uint8_t>(VHD_CHS_MAX_S)};
    } else {
        // Ask for one more sector until the geometry covers the size. Geometries are at most
        // 16 * 255 sectors apart, so this ends within 4080 steps.
        const uint64_t want = size / 512 < VHD_MAX_GEOMETRY ? size / 512 : VHD_MAX_GEOMETRY;
        for (uint64_t i = 0; want > g.sectors(); ++i)
            g = vpc_geometry_for(want + i);
    }
    uint64_t sectors = g.sectors();
    if (sectors == VHD_MAX_GEOMETRY) {
        sectors = size / 512;
        if (sectors > VHD_MAX_SECTORS)
            return false;
    }
    *geometry = g;
    *total_sectors = sectors;
    return true;
}

} // namespace instar::vpc
