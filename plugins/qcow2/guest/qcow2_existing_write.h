// convert -n into an existing qcow2 image (write_api.h's OpenWriterFn). Everything read from the
// image is untrusted: the header is parsed as the reader parses it, every table offset is checked
// against the file before use, and in-place writes never touch the header, L1 or refcount table.
//
// What it does, per cluster of a request, as qemu's qcow2 driver does for a target it did not
// create (no zero initialisation):
//   - data into an allocated cluster (COPIED) is written in place; into a zero-flagged allocated
//     cluster, written with the rest of the cluster zeroed; into an unallocated or zero cluster, a
//     new cluster is appended to the file (refcount, then data, then the L2 entry), with its L2
//     table or refcount block appended first when missing;
//   - -c: a cluster that shrinks is stored compressed where nothing is allocated (qemu's EIO
//     otherwise), in a host cluster of its own;
//   - zeros leave unallocated and zero clusters alone; a whole allocated cluster gets the zero flag
//     (v3; with may_unmap, as qemu, a plain zero cluster and the host cluster freed and discarded)
//     or zeros written (v2, partial ranges);
//   - a compressed cluster is never written in place (round 30): data into it goes to a new
//     cluster holding its inflated bytes with the new ones over them, whole zeros make it a plain
//     zero cluster (v3), and then each host cluster its compressed bytes touch loses a reference.
// With a backing file, the caller must hand the writer that file's chain (set_backing, as commit
// does into a base that has one): partial writes into unallocated clusters copy the rest from it and
// zeros over it become zero clusters (rebase's safe mode hands over the old chain the same way);
// without it, the first write is refused (convert -n).
// Internal snapshots: clusters and L2 tables they share are copied on write. Persistent bitmaps:
// their metadata is kept off like the snapshots', and every request sets its bits in the enabled
// ones before its data is written (qcow2_bitmap_dirty.h).
// Extended L2 entries: subclusters allocated, completed and zeroed as qemu's driver does
// (calculate_l2_meta, link_l2, the subcluster zeroing paths; qcow2_subcluster.h).
// Refused with a reason (Unsupported): dirty or corrupt images, internal
// snapshots together with an external data file, and compressed clusters in an encrypted image or
// one with a data file (qemu's writers never make those). A refcount table too small for the new clusters is grown (a
// larger copy appended, the header pointed at it, the old one freed), up to qemu's 8 MiB.
#pragma once

#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>

namespace instar::qcow2 {

guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::qcow2
