// luks's ModuleOps::edit: each command in its own file.
#include "luks_edit.h"

namespace instar::luks {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    switch (req.command) {
    case guest::EditCommand::Resize:
        return edit_resize(req, host);
    case guest::EditCommand::Amend:
        return edit_amend(req, host);
    default:
        return guest::edit_refuse(host, "This image format does not support this operation");
    }
}

} // namespace instar::luks
