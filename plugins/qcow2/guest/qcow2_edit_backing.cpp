// qcow2: the backing-file switch of `rebase` (and of `commit`) (EditCommand::SetBacking, docs/edit.md).
#include "qcow2_edit.h"

namespace instar::qcow2 {

guest::Status edit_backing(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::qcow2
