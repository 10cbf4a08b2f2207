// vdi's ModuleOps::edit (vdi_edit.h).
#include "vdi_edit.h"

namespace instar::vdi {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    if (req.command == guest::EditCommand::Resize) // qemu: block/vdi.c has no bdrv_co_truncate
        return guest::edit_refuse(host, "Image format driver does not support resize");
    return guest::edit_refuse(host, "This image format does not support this operation");
}

} // namespace instar::vdi
