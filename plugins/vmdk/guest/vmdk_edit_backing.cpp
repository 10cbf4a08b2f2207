// vmdk: the backing-file switch of `rebase` (and of `commit`) (EditCommand::SetBacking, docs/rebase.md).
// qemu's vmdk driver has no bdrv_change_backing_file: qemu-img 7.2 and 10.0 both answer -ENOTSUP
// ("Could not change the backing file to 'NAME': Operation not supported"), whether -u is given or
// not, and the image is left as it is. instar answers the same.
#include "vmdk_edit.h"

#include <instar/guest/edit_backing.h>

namespace instar::vmdk {

guest::Status edit_backing(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, guest::SET_BACKING_UNSUPPORTED);
}

} // namespace instar::vmdk
