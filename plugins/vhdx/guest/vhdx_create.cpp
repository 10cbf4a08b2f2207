// `create` for VHDX: qemu's vhdx_co_create sequence, and differencing disks on top of it.
#include "vhdx_create.h"

#include "vhdx_bytes.h"
#include "vhdx_create_ids.h"
#include "vhdx_create_layout.h"
#include "vhdx_create_params.h"
#include "vhdx_create_parent.h"
#include "vhdx_create_write.h"
#include "vhdx_parent_locator.h"

namespace instar::vhdx {

using guest::Status;

namespace {

// Reports a failed write in qemu's words where qemu has them.
Status write_failed(guest::CreateTarget& target, Status st, const char* what) {
    if (st == Status::NoMemory)
        return guest::create_fail(target, st, "Out of memory");
    return guest::create_fail(target, st, what);
}

} // namespace

Status create(const guest::CreateRequest& req, guest::CreateTarget& target) {
    VhdxCreated created;
    return create_image(req, target, &created);
}

Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, VhdxCreated* out) {
    if (req.allocator == nullptr || req.random == nullptr)
        return guest::create_fail(target, Status::Invalid, "Invalid create request");
    VhdxCreateParams p{};
    Status st = vhdx_create_params(req, target, &p);
    if (st != Status::Ok)
        return st;
    guest::Allocator& alloc = *req.allocator;

    // A differencing disk (instar extension): the parent link is settled before anything is written.
    uint8_t parent_guid[16];
    Buffer locator(alloc, p.differencing ? VHDX_PARENT_LOCATOR_MAX_SIZE : 1);
    uint32_t locator_len = 0;
    if (p.differencing) {
        if (p.fixed)
            return guest::create_fail(target, Status::Invalid,
                                      "A differencing VHDX cannot be fixed (subformat=fixed with a backing file)");
        if (req.backing_file[0] == 0)
            return guest::create_fail(target, Status::Invalid, "A differencing VHDX needs a parent file name");
        if ((st = vhdx_parent_data_write_guid(req, target, parent_guid)) != Status::Ok)
            return st;
        if (!locator.p)
            return guest::create_fail(target, Status::NoMemory, "Out of memory");
        if (vhdx_parent_locator_build(parent_guid, req.backing_file, locator.p, VHDX_PARENT_LOCATOR_MAX_SIZE,
                                      &locator_len) != Status::Ok)
            return guest::create_fail(target, Status::TooLarge,
                                      "Backing file name too long for a VHDX parent locator (64 KiB)");
    }

    VhdxLayout l{};
    vhdx_create_layout(p, &l);
    if (l.write_bat && l.bat_length >= VHDX_CREATE_MAX_BAT_WRITE)
        return guest::create_fail(target, Status::IoError, "Failed to write the BAT: Input/output error");
    VhdxCreateIds ids{};
    vhdx_create_ids(req.random, &ids);
    target.resolved_unit_size(p.block_size);

    guest::BlockDevice& dev = target.image();
    if ((st = vhdx_write_file_identifier(dev, req.qemu_version)) != Status::Ok)
        return write_failed(target, st, "Failed to write file signature");
    if ((st = vhdx_write_headers(dev, alloc, l, ids)) != Status::Ok)
        return write_failed(target, st, "Failed to write image headers");
    // qemu extends the file to the payload start before writing the BAT; the order leaves no
    // trace, so the length is set last (a hole, like qemu's PREALLOC_MODE_OFF truncate).
    if (l.write_bat && (st = vhdx_write_bat(dev, alloc, p, l)) != Status::Ok)
        return write_failed(target, st, "Failed to write the BAT");
    if ((st = vhdx_write_region_tables(dev, alloc, l)) != Status::Ok)
        return write_failed(target, st, "Failed to write first region table");
    if ((st = vhdx_write_metadata(dev, alloc, p, l, ids, p.differencing ? locator.p : nullptr, locator_len)) !=
        Status::Ok)
        return write_failed(target, st, "Failed to initialize metadata");
    st = target.set_length(dev, l.file_length, guest::Prealloc::Off);
    if (st == Status::TooLarge) // the host's file system refused the length (qemu: EFBIG)
        return guest::create_fail(target, st, "The image size is too large for file format 'vhdx'");
    if (st != Status::Ok)
        return write_failed(target, st, "Could not resize image");
    out->params = p;
    out->layout = l;
    out->ids = ids;
    return Status::Ok;
}

} // namespace instar::vhdx
