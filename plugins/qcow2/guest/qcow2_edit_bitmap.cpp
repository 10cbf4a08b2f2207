// qcow2: `bitmap`: persistent dirty bitmaps (EditCommand::Bitmap, docs/edit.md).
#include "qcow2_edit.h"

namespace instar::qcow2 {

guest::Status edit_bitmap(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::qcow2
