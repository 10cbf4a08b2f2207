// qcow's ModuleOps::edit: commit's MakeEmpty (qemu's qcow_make_empty); refusals in qemu's words for
// the rest (block/qcow.c has neither bdrv_co_truncate nor bdrv_change_backing_file).
#pragma once

#include <instar/guest/edit_api.h>

namespace instar::qcow {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::qcow
