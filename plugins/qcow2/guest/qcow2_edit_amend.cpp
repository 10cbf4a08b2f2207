// qcow2: `amend`: changing format options in place (EditCommand::Amend, docs/edit.md).
#include "qcow2_edit.h"

namespace instar::qcow2 {

guest::Status edit_amend(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::qcow2
