// qed's ModuleOps::edit: resize (bdrv_qed_co_truncate) and rebase's backing switch
// (bdrv_qed_change_backing_file), after what qemu's read-write open does (unknown autoclear
// bits cleared, the automatic check and repair of an image with QED_F_NEED_CHECK) and followed by
// what its close does (QED_F_NEED_CHECK cleared).
#pragma once

#include <instar/guest/edit_api.h>

namespace instar::qed {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::qed
