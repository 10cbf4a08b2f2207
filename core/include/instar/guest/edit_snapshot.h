// EditCommand::Snapshot's argument bytes and data records (docs/snapshot.md). The host sends the
// action and the strings qemu-img would pass to the block driver: for -c the name (already cut to
// qemu's 255 bytes), for -a the user's ID-or-name, for -d the ID and name of the snapshot the host
// found by name in the list (qemu-img's bdrv_snapshot_find), which the format looks up again as a
// pair. The format answers with one SnapshotResult record (its errno, as qemu's driver returns it)
// and, on a refusal with a message of qemu's error_setg, that message as the reason.
#pragma once

#include <stdint.h>

namespace instar::guest {

inline constexpr uint32_t SNAPSHOT_ACTION_CREATE = 1; // -c NAME
inline constexpr uint32_t SNAPSHOT_ACTION_APPLY = 2;  // -a ID-OR-NAME
inline constexpr uint32_t SNAPSHOT_ACTION_DELETE = 3; // -d: ID and NAME found by the host

// SnapshotArgs::flags: EditRequest::extra[0] holds the backing chain's bytes a resize record asked
// for (-a growing an overlay from inside a cluster it does not map: edit_resize.h,
// RESIZE_DATA_NEED_BACKING; the truncate reads them as resize does).
inline constexpr uint32_t SNAPSHOT_BACKING_BYTES = 2;
inline constexpr uint32_t SNAPSHOT_HAS_BACKING = 1; // SnapshotArgs::flags: backing_size is the backing image's

// Followed by id_len bytes (delete: the ID), then name_len bytes (the name, or -a's ID-or-name).
// Module ABI 11: flags (was reserved, 0) and backing_size: -a of a snapshot larger than an
// overlay's disk grows the disk as qemu's bdrv_co_truncate does, zeroing where the backing image
// reaches into the new area (BDRV_REQ_ZERO_WRITE).
struct SnapshotArgs {
    uint32_t action;   // SNAPSHOT_ACTION_*
    uint32_t id_len;
    uint32_t name_len;
    uint32_t flags;        // SNAPSHOT_HAS_BACKING
    uint64_t backing_size; // the backing image's virtual size, with SNAPSHOT_HAS_BACKING
};
static_assert(sizeof(SnapshotArgs) == 24, "snapshot args layout");

// Data record kinds (INSTAR_REC_EDIT, snapshot's range 20-23).
inline constexpr uint32_t SNAPSHOT_REC_RESULT = 20; // SnapshotResult

// Which of qemu's message shapes a failure takes (the host words it per qemu version).
inline constexpr uint32_t SNAPSHOT_FAIL_ERRNO = 1;   // only the errno (create's "%d (%s)", apply's "Failed to load snapshot")
inline constexpr uint32_t SNAPSHOT_FAIL_MESSAGE = 2; // the reason is the whole errp message (error_setg)
inline constexpr uint32_t SNAPSHOT_FAIL_MESSAGE_ERRNO = 3; // the reason, then ": " and strerror (error_setg_errno)
// -a without SNAPSHOT_HAS_BACKING (the host's one-start path, run before it knew the chain) on an
// overlay whose disk must grow: nothing written; the host runs it again with the backing size.
inline constexpr uint32_t SNAPSHOT_FAIL_NEED_BACKING_SIZE = 4;

struct SnapshotResult {
    int32_t error;  // 0, or qemu's -errno
    uint32_t shape; // SNAPSHOT_FAIL_* when error != 0
};
static_assert(sizeof(SnapshotResult) == 8, "snapshot result layout");

} // namespace instar::guest
