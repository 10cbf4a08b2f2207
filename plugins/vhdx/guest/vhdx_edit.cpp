// vhdx's ModuleOps::edit: each command in its own file.
#include "vhdx_edit.h"

namespace instar::vhdx {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    switch (req.command) {
    case guest::EditCommand::Resize:
        return edit_resize(req, host);
    case guest::EditCommand::MakeEmpty:
        return edit_empty(req, host);
    case guest::EditCommand::ReplayLog:
        return edit_replay(req, host);
    default:
        return guest::edit_refuse(host, "this operation is not supported for this image format");
    }
}

} // namespace instar::vhdx
