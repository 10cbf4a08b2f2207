// luks: `resize` (EditCommand::Resize, docs/resize.md). qemu's block_crypto_co_truncate: the
// payload offset is added to the new size and the file is truncated there by file-posix, with the
// preallocation mode passed through (instar/guest/edit_resize_file.h). Nothing is encrypted: a grown
// area holds whatever its zeros decrypt to, as in qemu. The key was unlocked by the host before the
// edit (docs/architecture.md, "Secrets"), as qemu opens the image for I/O; this only reads the header
// for its payload offset.
#include "luks_edit.h"

#include "luks_format.h"

#include <instar/guest/edit_resize_file.h>
#include <instar/guest/format_util.h>

namespace instar::luks {

guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host) {
    guest::ResizeArgs a{};
    if (const guest::Status st = guest::resize_file_args(req, host, &a); st != guest::Status::Ok)
        return st;
    // The header as qemu reads it: the file's bytes, zeros past its end (a writable device's size()
    // is the host's limit, not the file's length).
    uint8_t raw[sizeof(LuksHeaderDisk)] = {};
    const size_t in = req.image_length < sizeof raw ? static_cast<size_t>(req.image_length) : sizeof raw;
    if (in != 0)
        if (const guest::Status st = req.image->read(0, raw, in); st != guest::Status::Ok)
            return guest::edit_refuse(host, "I/O error reading the LUKS header", st);
    LuksHeader h;
    LuksWhy why;
    if (const guest::Status st = luks_header_parse(raw, sizeof raw, &h, false, &why); st != guest::Status::Ok)
        return guest::edit_refuse(host, why.text, st);
    return resize_payload(req, host, a, h.payload_offset);
}

guest::Status resize_payload(const guest::EditRequest& req, guest::EditHost& host, const guest::ResizeArgs& a,
                             uint64_t payload_offset) {
    // LUKS1's payload_offset is a 32-bit sector count (at most 2 TiB), LUKS2's segment offset lies
    // inside the file: no overflow with new_size <= INT64_MAX.
    const uint64_t length = payload_offset + a.new_size;
    // bdrv_check_request runs twice: on the luks node's size, then on the file's length; each
    // refuses a length past qemu's BDRV_MAX_LENGTH with its message.
    const uint64_t refused = a.new_size > guest::QEMU_BDRV_MAX_LENGTH ? a.new_size : length;
    if (refused > guest::QEMU_BDRV_MAX_LENGTH) {
        char text[guest::CREATE_MAX_REASON] = "offset(";
        guest::append_decimal(text, sizeof text, refused);
        guest::append_text(text, sizeof text, ") exceeds maximum(");
        guest::append_decimal(text, sizeof text, guest::QEMU_BDRV_MAX_LENGTH);
        guest::append_text(text, sizeof text, ")");
        return guest::edit_refuse(host, text, guest::Status::TooLarge);
    }
    return guest::resize_file_length(host, *req.image, req.image_length, length, a.prealloc);
}

} // namespace instar::luks
