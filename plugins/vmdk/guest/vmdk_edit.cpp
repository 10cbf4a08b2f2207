// vmdk's ModuleOps::edit: each command in its own file.
#include "vmdk_edit.h"

namespace instar::vmdk {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    switch (req.command) {
    case guest::EditCommand::Resize:
        return edit_resize(req, host);
    case guest::EditCommand::SetBacking:
        return edit_backing(req, host);
    case guest::EditCommand::MakeEmpty:
        return edit_empty(req, host);
    default:
        return guest::edit_refuse(host, "this operation is not supported for this image format");
    }
}

} // namespace instar::vmdk
