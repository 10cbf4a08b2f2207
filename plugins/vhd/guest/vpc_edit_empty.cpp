// vpc: commit's emptying of the top image (qemu's bdrv_make_empty) (EditCommand::MakeEmpty, docs/edit.md).
#include "vpc_edit.h"

namespace instar::vpc {

guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    // qemu's vpc driver has no bdrv_make_empty: bdrv_make_empty's ENOTSUP, which qemu-img commit ignores.
    return guest::edit_refuse(host, "vpc does not support emptying nodes");
}

} // namespace instar::vpc
