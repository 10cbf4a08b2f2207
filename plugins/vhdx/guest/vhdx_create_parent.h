// A differencing VHDX's link to its parent: the parent's DataWriteGuid and the parent locator item.
#pragma once

#include <stdint.h>

#include <instar/guest/create_api.h>

namespace instar::vhdx {

// Checks that req.backing is a VHDX image and copies the DataWriteGuid of its current header (the
// parent_linkage a reader compares against). Reports why and fails otherwise.
guest::Status vhdx_parent_data_write_guid(const guest::CreateRequest& req, guest::CreateTarget& target,
                                          uint8_t guid[16]);

// Writes the parent locator item (MS-VHDX 2.6.2.6) into `buf`: type VHDX, keys parent_linkage
// ("{GUID}" of `parent_guid`) and relative_path (`path` verbatim, UTF-16LE). *len is its size.
// TooLarge when it does not fit `cap` (at most VHDX_PARENT_LOCATOR_MAX_SIZE) or a key's 16-bit length.
guest::Status vhdx_parent_locator_build(const uint8_t parent_guid[16], const char* path, uint8_t* buf, uint32_t cap,
                                        uint32_t* len);

} // namespace instar::vhdx
