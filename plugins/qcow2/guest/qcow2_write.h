// qcow2's writer for convert (write_api.h): creates the image exactly as `create` does, then stores
// the data qemu-img convert sends as qemu's qcow2 driver does (block/qcow2.c, qcow2-cluster.c,
// qcow2-refcount.c): the same cluster, L2-table and refcount-block allocation, copy-on-write of
// partial (sub)clusters, zero flags and compressed-cluster packing. Documented in docs/convert.md.
#pragma once

#include <instar/guest/write_api.h>

namespace instar::qcow2 {

// req's strings (backing file and format) must stay valid until the writer is closed: the header
// is written by finish().
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

} // namespace instar::qcow2
