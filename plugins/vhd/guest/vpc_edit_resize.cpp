// vpc: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/edit.md).
#include "vpc_edit.h"

namespace instar::vpc {

guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host) {
    (void)req;
    return guest::edit_refuse(host, "not implemented yet");
}

} // namespace instar::vpc
