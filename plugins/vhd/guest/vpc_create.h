// The VHD (qemu: vpc) format's emitter: `create` for fixed, dynamic and differencing disks.
#pragma once

#include <instar/guest/create_api.h>

#include <stdint.h>

namespace instar::vpc {

// Writes a new VHD as qemu-img create -f vpc does (options subformat and force_size), or, with a
// backing file, a differencing VHD (an instar extension: qemu-img cannot make one).
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

// What create laid down, for the writer that continues from it (vpc_write.h).
struct VpcCreated {
    uint32_t disk_type;         // VHD_FIXED, VHD_DYNAMIC or VHD_DIFFERENCING
    uint64_t size;              // the virtual size (current_size) in bytes
    uint64_t footer_offset;     // where the trailing footer lies (the file's end minus 512)
    uint64_t bat_offset;        // dynamic and differencing only
    uint32_t max_table_entries; // likewise
    uint32_t block_size;        // likewise
    uint8_t footer[512];        // the footer's bytes, as written at footer_offset (and at 0 if dynamic)
};

// create(), also describing the image it made in *out (filled only on Ok).
guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, VpcCreated* out);

} // namespace instar::vpc
