// The VHD (vpc) format's writer: the target side of convert (write_api.h).
#pragma once

#include <instar/guest/write_api.h>

namespace instar::vpc {

// Creates the image exactly as create() does, then stores data as qemu's block/vpc.c does: a fixed
// disk in place; a dynamic disk allocates a 2 MiB block (its 512-byte all-ones sector bitmap, then
// the data) where the footer was, moves the footer past it and sets the BAT entry, in write order.
// Differencing disks (an instar extension) are refused: qemu cannot write into one either.
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

// convert -n: writes into an existing fixed, dynamic (any block size) or differencing VHD as qemu's
// vpc_co_pwritev does, after qemu's open checks (vpc_load): new blocks go after the last allocated
// one, and a block written to gets an all-ones sector bitmap. A differencing disk is written as
// qemu writes it (as a dynamic disk), except that new blocks also go after its parent locators'
// data, which qemu would overwrite. zero_init is false: zeros are written as data, as qemu's vpc
// (which has no write_zeroes) does.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::vpc
