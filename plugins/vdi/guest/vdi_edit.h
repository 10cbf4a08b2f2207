// vdi's ModuleOps::edit: refusals in qemu's words (qemu's vdi driver has no truncate).
#pragma once

#include <instar/guest/edit_api.h>

namespace instar::vdi {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::vdi
