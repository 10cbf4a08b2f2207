// vmdk: commit's emptying of the top image (qemu's bdrv_make_empty) (EditCommand::MakeEmpty, docs/edit.md).
#include "vmdk_edit.h"

namespace instar::vmdk {

guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::vmdk
