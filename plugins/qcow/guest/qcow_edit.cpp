// qcow's ModuleOps::edit (qcow_edit.h).
#include "qcow_edit.h"

#include "qcow_format.h"

#include <instar/guest/edit_backing.h>

namespace instar::qcow {

using guest::Status;

namespace {

// Zeros written per request while clearing the L1 table (a stack buffer of the guest's 64 KiB stack).
constexpr size_t MAKE_EMPTY_CHUNK = 4096;

// qemu's qcow_make_empty: the whole L1 table zeroed (bdrv_pwrite_sync), then the file truncated to
// the table's end, which drops every L2 table and data cluster. Zeroing first keeps a crash between
// the two steps an empty image with leaked clusters, never a half-emptied one.
Status make_empty(const guest::EditRequest& req, guest::EditHost& host) {
    auto* img = static_cast<QcowImage*>(req.allocator->allocate(sizeof(QcowImage), alignof(QcowImage)));
    if (img == nullptr)
        return Status::NoMemory;
    const char* why = nullptr;
    if (const Status st = qcow_load(*req.image, img, &why); st != Status::Ok)
        return guest::edit_refuse(host, why != nullptr ? why : "the qcow header could not be read", st);
    // qcow_load bounds l1_size by QCOW_MAX_L1_ENTRIES and the table's end by QCOW_MAX_FILE_OFFSET.
    const uint64_t l1_offset = img->header.l1_table_offset;
    const uint64_t l1_bytes = img->l1_size * 8;
    uint64_t l1_end = 0;
    if (__builtin_add_overflow(l1_offset, l1_bytes, &l1_end) || l1_end > QCOW_MAX_FILE_OFFSET)
        return guest::edit_refuse(host, "Image too large", Status::Corrupt);
    static const uint8_t zeros[MAKE_EMPTY_CHUNK] = {};
    // The part of the table inside the file; set_length adds zeros for any part past its end.
    const uint64_t written_end = l1_end < req.image_length ? l1_end : req.image_length;
    for (uint64_t at = l1_offset; at < written_end;) {
        const uint64_t left = written_end - at;
        const size_t n = left < MAKE_EMPTY_CHUNK ? static_cast<size_t>(left) : MAKE_EMPTY_CHUNK;
        if (const Status st = req.image->write(at, zeros, n); st != Status::Ok)
            return guest::edit_refuse(host, "Could not write the L1 table", st);
        at += n;
    }
    if (const Status st = host.flush(*req.image); st != Status::Ok)
        return guest::edit_refuse(host, "Could not flush the L1 table", st);
    if (const Status st = host.set_length(*req.image, l1_end, guest::Prealloc::Off); st != Status::Ok)
        return guest::edit_refuse(host, "Could not truncate the image", st);
    return host.flush(*req.image);
}

} // namespace

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host) {
    if (req.command == guest::EditCommand::Resize) // no bdrv_co_truncate
        return guest::edit_refuse(host, "Image format driver does not support resize");
    if (req.command == guest::EditCommand::SetBacking) // no bdrv_change_backing_file: -ENOTSUP
        return guest::edit_refuse(host, guest::SET_BACKING_UNSUPPORTED);
    if (req.command == guest::EditCommand::MakeEmpty && req.writable && req.args_len == 0)
        return make_empty(req, host);
    return guest::edit_refuse(host, "This image format does not support this operation");
}

} // namespace instar::qcow
