// qed's in-place edits (qed_edit.h). Each change is one header write (the 64-byte header, or the
// header and the backing name after it in one write, as qemu), so a kill leaves the old or the new
// header; the automatic repair before it orders its own writes as check -r does.
#include "qed_edit.h"

#include "qed_check.h"
#include "qed_format.h"

#include <instar/guest/edit_backing.h>
#include <instar/guest/edit_resize.h>
#include <instar/guest/format_util.h>

namespace instar::qed {

using guest::EditHost;
using guest::EditRequest;
using guest::Status;

namespace {

// ctx: the EditHost. Flushes the underlying image device.
struct Sized;
Status host_flush(void* ctx, guest::BlockDevice& dev);

// The image with its length when the host opened it (an edit's device reports only its limit):
// qemu's file_size, which decides which cluster offsets are valid and where a check stops.
struct Sized final : guest::BlockDevice {
    guest::BlockDevice& dev;
    uint64_t length;
    Sized(guest::BlockDevice& d, uint64_t n) : dev(d), length(n) {}
    uint64_t size() const override { return length; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > length || len > length - offset)
            return Status::IoError;
        return dev.read(offset, buf, len);
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > length || len > length - offset)
            return Status::IoError;
        return dev.write(offset, buf, len);
    }
};

Status host_flush(void* ctx, guest::BlockDevice& dev) {
    return static_cast<EditHost*>(ctx)->flush(static_cast<Sized&>(dev).dev);
}

const char* prealloc_name(uint32_t p) {
    switch (p) {
    case 1: return "metadata";
    case 2: return "falloc";
    case 3: return "full";
    default: return "off";
    }
}

// bdrv_qed_do_open for a read-write open: autoclear bits, then the check when the image was not
// closed cleanly ("Image corrupted" when it cannot complete).
Status open_rw(const EditRequest& req, Sized& dev, EditHost& host, QedImage& s, QedFlush flush) {
    const char* why = nullptr;
    if (const Status st = qed_load(dev, &s, &why); st != Status::Ok)
        return guest::edit_refuse(host, why ? why : "Could not open the image", st);
    if (s.header.autoclear_features != 0) {
        s.header.autoclear_features = 0;
        Status st = qed_write_header(dev, s.header);
        if (st == Status::Ok)
            st = flush.call(dev);
        if (st != Status::Ok)
            return guest::edit_refuse(host, "Failed to update header", st);
    }
    if ((s.header.features & QED_F_NEED_CHECK) != 0) {
        guest::CheckResult r;
        if (qed_check_image(dev, *req.allocator, s, true, flush, &r, nullptr) != 0)
            return guest::edit_refuse(host, "Image corrupted", Status::Corrupt);
    }
    return Status::Ok;
}

Status resize(const EditRequest& req, Sized& dev, EditHost& host, QedImage& s, QedFlush flush) {
    if (req.args == nullptr || req.args_len != sizeof(guest::ResizeArgs))
        return guest::edit_refuse(host, "invalid resize arguments", Status::Invalid);
    guest::ResizeArgs a;
    __builtin_memcpy(&a, req.args, sizeof a);
    // bdrv_co_truncate asks for the grown area to read as zeros when the backing image reaches
    // into it (BDRV_REQ_ZERO_WRITE), a flag qed's truncate does not support.
    if ((a.flags & guest::RESIZE_HAS_BACKING) != 0 && a.backing_size > s.header.image_size &&
        a.new_size > s.header.image_size)
        return guest::edit_refuse(host, "Block driver does not support requested flags", Status::Unsupported);
    if ((a.flags & guest::RESIZE_PREALLOC_GIVEN) != 0 && a.prealloc != 0) {
        char text[64] = "Unsupported preallocation mode '";
        size_t n = 0;
        while (text[n] != 0)
            ++n;
        for (const char* p = prealloc_name(a.prealloc); *p != 0; ++p)
            text[n++] = *p;
        text[n++] = '\'';
        text[n] = 0;
        return guest::edit_refuse(host, text, Status::Unsupported);
    }
    if (!qed_image_size_valid(a.new_size, s.header.cluster_size, s.header.table_size))
        return guest::edit_refuse(host, "Invalid image size specified", Status::Invalid);
    if (a.new_size < s.header.image_size)
        return guest::edit_refuse(host, "Shrinking images is currently not supported", Status::Unsupported);
    s.header.image_size = a.new_size;
    Status st = qed_write_header(dev, s.header);
    if (st == Status::Ok)
        st = flush.call(dev);
    if (st != Status::Ok)
        return guest::edit_refuse(host, "Failed to update the image size", st);
    return Status::Ok;
}

// bdrv_qed_change_backing_file: the header with the new feature bits and the name right after it,
// written in one write (bdrv_pwrite_sync), then a flush.
Status set_backing(const EditRequest& req, Sized& dev, EditHost& host, QedImage& s, QedFlush flush) {
    guest::SetBackingArgs a;
    if (req.args == nullptr || req.args_len < sizeof a)
        return guest::edit_refuse(host, "truncated set-backing arguments", Status::Invalid);
    __builtin_memcpy(&a, req.args, sizeof a);
    if (req.args_len - sizeof a != uint64_t{a.name_len} + a.format_len)
        return guest::edit_refuse(host, "truncated set-backing arguments", Status::Invalid);
    const char* name = reinterpret_cast<const char*>(req.args + sizeof a);
    const char* fmt = name + a.name_len;
    const bool detach = (a.flags & guest::SET_BACKING_DETACH) != 0;
    for (uint64_t i = 0; i < uint64_t{a.name_len} + a.format_len; ++i)
        if (name[i] == 0)
            return guest::edit_refuse(host, guest::SET_BACKING_INVALID, Status::Invalid);
    if (!detach && s.header.compat_features != 0)
        return guest::edit_refuse(host, guest::SET_BACKING_UNSUPPORTED, Status::Unsupported);
    QedHeader h = s.header;
    h.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    const uint32_t len = detach ? 0 : a.name_len;
    if (!detach) {
        h.features |= QED_F_BACKING_FILE;
        if (a.format_len == 3 && fmt[0] == 'r' && fmt[1] == 'a' && fmt[2] == 'w')
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    h.backing_filename_offset = QED_HEADER_SIZE;
    h.backing_filename_size = len;
    if (QED_HEADER_SIZE + uint64_t{len} > uint64_t{h.header_size} * h.cluster_size)
        return guest::edit_refuse(host, guest::SET_BACKING_NO_SPACE, Status::TooLarge);
    guest::ScopedBuffer buf(*req.allocator, QED_HEADER_SIZE + len);
    if (!buf.p)
        return guest::edit_refuse(host, "out of memory for the header", Status::NoMemory);
    qed_header_encode(h, buf.p);
    __builtin_memcpy(buf.p + QED_HEADER_SIZE, name, len);
    // Inside the header clusters, which lie before the L1 table, inside the file.
    Status st = dev.write(0, buf.p, QED_HEADER_SIZE + len);
    if (st == Status::Ok)
        st = flush.call(dev);
    if (st != Status::Ok)
        return guest::edit_refuse(host, "could not write the qed header", st);
    s.header = h;
    return Status::Ok;
}

} // namespace

Status edit(const EditRequest& req, EditHost& host) {
    // SetBacking is offered with CAP_REBASE, so that rebase's safe mode copies the data first.
    if (req.command != guest::EditCommand::Resize && req.command != guest::EditCommand::SetBacking)
        return guest::edit_refuse(host, "this operation is not supported for this image format");
    if (req.image == nullptr || req.allocator == nullptr || !req.writable)
        return guest::edit_refuse(host, "the image was not opened for writing", Status::Invalid);
    QedImage* img = static_cast<QedImage*>(req.allocator->allocate(sizeof(QedImage), alignof(QedImage)));
    if (img == nullptr)
        return guest::edit_refuse(host, "out of memory", Status::NoMemory);
    struct Free {
        guest::Allocator& a;
        QedImage* p;
        ~Free() { a.deallocate(p, sizeof(QedImage)); }
    } free_img{*req.allocator, img};
    const QedFlush flush{host_flush, &host};
    Sized dev(*req.image, req.image_length);
    Status st = open_rw(req, dev, host, *img, flush);
    if (st != Status::Ok)
        return st;
    st = req.command == guest::EditCommand::Resize ? resize(req, dev, host, *img, flush)
                                                   : set_backing(req, dev, host, *img, flush);
    // bdrv_qed_close: the flag goes whether or not the command succeeded.
    const Status closed = qed_close_rw(dev, *img, flush);
    if (st == Status::Ok && closed != Status::Ok)
        return guest::edit_refuse(host, "could not write the qed header", closed);
    return st;
}

} // namespace instar::qed
