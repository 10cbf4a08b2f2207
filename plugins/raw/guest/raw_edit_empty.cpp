// raw: commit's emptying of the top image (qemu's bdrv_make_empty) (EditCommand::MakeEmpty, docs/edit.md).
#include "raw_edit.h"

namespace instar::raw {

guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    // qemu's raw driver has no bdrv_make_empty: bdrv_make_empty's ENOTSUP, which qemu-img commit ignores.
    return guest::edit_refuse(host, "raw does not support emptying nodes");
}

} // namespace instar::raw
