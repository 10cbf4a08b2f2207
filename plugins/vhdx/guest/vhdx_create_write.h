// Writers of a new VHDX image's structures: file identifier, headers, region tables, metadata, BAT.
#pragma once

#include <stdint.h>

#include <instar/guest/create_api.h>

#include "vhdx_create_ids.h"
#include "vhdx_create_layout.h"

namespace instar::vhdx {

// Bytes of BAT built and written at a time: the BAT of a 64 TiB disk with 1 MiB blocks is 513 MiB,
// two guest RAMs' worth; 1 MiB (the BAT region's own unit) keeps a create within a few MiB.
inline constexpr uint32_t VHDX_CREATE_BAT_CHUNK = 1u << 20;

// "vhdxfile" and the creator "QEMU vX.Y.Z" (UTF-16LE, no terminator) of the profile's qemu.
guest::Status vhdx_write_file_identifier(guest::BlockDevice& dev, uint32_t qemu_version);

// Builds one 4 KiB header (signature, the fields given, version 1, the layout's log, checksum).
// log_guid may be nullptr for an empty log (all zeros).
void vhdx_build_header(uint8_t* out, uint64_t sequence_number, const uint8_t* file_write_guid,
                       const uint8_t* data_write_guid, const uint8_t* log_guid, const VhdxLayout& l);

// Header 1 with ids.sequence_number, header 2 with the next number; log GUID zero (empty log).
guest::Status vhdx_write_headers(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxLayout& l,
                                 const VhdxCreateIds& ids);

// The region table (BAT, metadata), at 192 KiB and its copy at 256 KiB.
guest::Status vhdx_write_region_tables(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxLayout& l);

// The metadata table and its five items, plus the parent locator when `locator` is not null.
guest::Status vhdx_write_metadata(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxCreateParams& p,
                                  const VhdxLayout& l, const VhdxCreateIds& ids, const uint8_t* locator,
                                  uint32_t locator_len);

// The whole BAT region (entries and the zeros after them), VHDX_CREATE_BAT_CHUNK bytes at a time.
guest::Status vhdx_write_bat(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxCreateParams& p,
                             const VhdxLayout& l);

} // namespace instar::vhdx
