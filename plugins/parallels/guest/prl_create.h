// The Parallels emitter: `create` as qemu's parallels_co_create (identical in 7.2 and 10.0).
#pragma once

#include <instar/guest/create_api.h>

#include "prl_header.h"

namespace instar::parallels {

// Writes a new image as qemu-img create -f parallels does (option cluster_size, default 1 MiB;
// size and cluster size silently rounded up to 512): a "WithouFreSpacExt" header, an all-zero BAT
// padded to a whole number of clusters (data_off), the space behind the header reserved (qemu's
// write_zeroes past the end of the file).
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

// create(), also describing the image it made in *out (filled only on Ok).
guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, PrlImage* out);

} // namespace instar::parallels
