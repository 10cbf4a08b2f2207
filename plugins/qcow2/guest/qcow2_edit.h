// qcow2's in-place changes (ModuleOps::edit, instar/guest/edit_api.h, docs/edit.md): one entry
// point that hands each command to its own file.
#pragma once

#include <instar/guest/edit_api.h>

namespace instar::qcow2 {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host);

// `resize`: growing or shrinking the virtual disk.
guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host);
// `snapshot`: listing, creating, applying and deleting internal snapshots.
guest::Status edit_snapshot(const guest::EditRequest& req, guest::EditHost& host);
// `amend`: changing format options in place.
guest::Status edit_amend(const guest::EditRequest& req, guest::EditHost& host);
// `bitmap`: persistent dirty bitmaps.
guest::Status edit_bitmap(const guest::EditRequest& req, guest::EditHost& host);
// the backing-file switch of `rebase` (and of `commit`).
guest::Status edit_backing(const guest::EditRequest& req, guest::EditHost& host);
// commit's emptying of the top image (qemu's bdrv_make_empty).
guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host);
// edit_empty for an image with internal snapshots (the active layer's references dropped) or an
// external data file (its L2 tables zeroed, its data clusters discarded), as qemu's discard loop
// leaves them (qcow2_edit_empty_discard.cpp).
guest::Status empty_by_discard(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::qcow2
