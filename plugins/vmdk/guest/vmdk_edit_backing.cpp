// vmdk: the backing-file switch of `rebase` (and of `commit`) (EditCommand::SetBacking, docs/edit.md).
#include "vmdk_edit.h"

namespace instar::vmdk {

guest::Status edit_backing(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::vmdk
