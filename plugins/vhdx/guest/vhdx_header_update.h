// qemu's vhdx_update_headers: both headers rewritten with new sequence numbers and GUIDs.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vhdx {

// The GUIDs an update sets; nullptr keeps the current header's.
struct VhdxHeaderChange {
    const uint8_t* file_write_guid;
    const uint8_t* data_write_guid;
    const uint8_t* log_guid;
};

// Twice: the current header (vhdx_read_current_header's choice) with the next sequence number and
// `change` applied goes into the other slot. A kill between the two writes leaves the first as the
// current header. Corrupt when no header is valid or the sequence number cannot grow.
guest::Status vhdx_update_headers(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeaderChange& change);

} // namespace instar::vhdx
