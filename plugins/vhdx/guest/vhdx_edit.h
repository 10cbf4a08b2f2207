// vhdx's in-place changes (ModuleOps::edit, instar/guest/edit_api.h, docs/edit.md): one entry
// point that hands each command to its own file.
#pragma once

#include <instar/guest/edit_api.h>

namespace instar::vhdx {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host);

// `resize`: growing or shrinking the virtual disk.
guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host);
// commit's emptying of the top image (qemu's bdrv_make_empty).
guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host);
// qemu's read-write open: the log replayed (vhdx_log_replay.h) before convert -n writes.
guest::Status edit_replay(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::vhdx
