// raw: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/resize.md).
// The virtual disk is the file: its length becomes the new size, as qemu's file-posix
// (raw_regular_truncate; instar/guest/edit_resize_file.h).
#include "raw_edit.h"

#include <instar/guest/edit_resize_file.h>

namespace instar::raw {

guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host) {
    guest::ResizeArgs a{};
    if (const guest::Status st = guest::resize_file_args(req, host, &a); st != guest::Status::Ok)
        return st;
    return guest::resize_file_length(host, *req.image, req.image_length, a.new_size, a.prealloc);
}

} // namespace instar::raw
