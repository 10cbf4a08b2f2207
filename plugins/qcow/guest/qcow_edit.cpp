// qcow's ModuleOps::edit (qcow_edit.h).
#include "qcow_edit.h"

#include <instar/guest/edit_backing.h>

namespace instar::qcow {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    if (req.command == guest::EditCommand::Resize) // no bdrv_co_truncate
        return guest::edit_refuse(host, "Image format driver does not support resize");
    if (req.command == guest::EditCommand::SetBacking) // no bdrv_change_backing_file: -ENOTSUP
        return guest::edit_refuse(host, guest::SET_BACKING_UNSUPPORTED);
    return guest::edit_refuse(host, "This image format does not support this operation");
}

} // namespace instar::qcow
