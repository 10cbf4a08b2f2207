// raw: commit's emptying of the top image (qemu's bdrv_make_empty) (EditCommand::MakeEmpty, docs/edit.md).
#include "raw_edit.h"

namespace instar::raw {

guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::raw
