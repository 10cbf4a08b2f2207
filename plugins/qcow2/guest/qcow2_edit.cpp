// qcow2's ModuleOps::edit: each command in its own file.
#include "qcow2_edit.h"

namespace instar::qcow2 {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    switch (req.command) {
    case guest::EditCommand::Resize:
        return edit_resize(req, host);
    case guest::EditCommand::Snapshot:
        return edit_snapshot(req, host);
    case guest::EditCommand::Amend:
        return edit_amend(req, host);
    case guest::EditCommand::Bitmap:
        return edit_bitmap(req, host);
    case guest::EditCommand::SetBacking:
        return edit_backing(req, host);
    case guest::EditCommand::MakeEmpty:
        return edit_empty(req, host);
    default:
        return guest::edit_refuse(host, "this operation is not supported for this image format");
    }
}

} // namespace instar::qcow2
