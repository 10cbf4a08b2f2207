// qcow2: `snapshot`: listing, creating, applying and deleting internal snapshots (EditCommand::Snapshot, docs/edit.md).
#include "qcow2_edit.h"

namespace instar::qcow2 {

guest::Status edit_snapshot(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::qcow2
