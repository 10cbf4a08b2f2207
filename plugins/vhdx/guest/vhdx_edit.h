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

} // namespace instar::vhdx
