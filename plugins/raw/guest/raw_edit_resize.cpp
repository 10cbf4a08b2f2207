// raw: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/resize.md).
// The virtual disk is the file: its length becomes the new size. As qemu's file-posix
// (raw_regular_truncate): off truncates, falloc reserves and full writes zeros over the appended
// region only, metadata is refused.
#include "raw_edit.h"

#include <instar/guest/edit_resize.h>

namespace instar::raw {

guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host) {
    guest::ResizeArgs a{};
    if (req.args_len != sizeof a)
        return guest::edit_refuse(host, "resize: malformed arguments", guest::Status::Invalid);
    __builtin_memcpy(&a, req.args, sizeof a);
    if (!req.writable)
        return guest::edit_refuse(host, "resize: the image was not opened for writing", guest::Status::Invalid);
    if (a.new_size == 0 || a.new_size > INT64_MAX)
        return guest::edit_refuse(host, "New image size must be positive", guest::Status::Invalid);
    const auto mode = static_cast<guest::Prealloc>(a.prealloc);
    switch (mode) {
    case guest::Prealloc::Off:
    case guest::Prealloc::Falloc:
    case guest::Prealloc::Full:
        break;
    case guest::Prealloc::Metadata:
        return guest::edit_refuse(host, "Unsupported preallocation mode: metadata");
    default:
        return guest::edit_refuse(host, "resize: unknown preallocation mode", guest::Status::Invalid);
    }
    // qemu truncates to the exact size; preallocation applies to the grown part only (the host
    // fills [old length, new length) as `mode` asks).
    if (a.new_size == req.image_length)
        return guest::Status::Ok;
    const guest::Status st = host.set_length(*req.image, a.new_size, mode);
    if (st != guest::Status::Ok)
        return guest::edit_refuse(host, "Could not resize file: the host refused the new length", st);
    return guest::Status::Ok;
}

} // namespace instar::raw
