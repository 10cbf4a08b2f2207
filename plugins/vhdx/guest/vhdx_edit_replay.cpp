// vhdx: qemu's read-write open replays the log (vhdx_parse_log -> vhdx_log_flush) before anything
// reads or writes the image (EditCommand::ReplayLog; convert -n, docs/formats/vhdx.md).
#include "vhdx_edit.h"

#include <instar/guest/edit_device.h>

#include "vhdx_bytes.h"
#include "vhdx_header.h"
#include "vhdx_log.h"
#include "vhdx_log_replay.h"

namespace instar::vhdx {

using guest::Status;

guest::Status edit_replay(const guest::EditRequest& req, guest::EditHost& host) {
    if (req.image == nullptr || req.allocator == nullptr || req.random == nullptr || !req.writable)
        return Status::Invalid;
    guest::SizedDevice dev(*req.image, req.image_length);
    // vhdx_open's steps before the log: the file identifier and a current header. A failure there,
    // or in the search, is left to the read-only open that follows (it words qemu's message).
    uint8_t sig[8];
    if (read_at(dev, VHDX_FILE_IDENTIFIER_OFFSET, sig, sizeof sig) != Status::Ok ||
        !same_bytes(sig, VHDX_FILE_SIGNATURE, 8))
        return Status::Ok;
    VhdxHeader h;
    if (vhdx_read_current_header(dev, *req.allocator, &h) != Status::Ok)
        return Status::Ok;
    VhdxLogSequence seq;
    if (vhdx_log_search(dev, *req.allocator, h, &seq) != Status::Ok || !seq.valid)
        return Status::Ok;
    const Status st = vhdx_log_replay(dev, host, *req.allocator, seq, req.random);
    if (st == Status::Corrupt)
        // qemu: -EINVAL fails bdrv_open, whose message qemu-img's own "Could not open" wraps.
        return guest::edit_refuse(host, "Could not open '{image}': Invalid argument", st);
    if (st == Status::TooLarge)
        return guest::edit_refuse(host,
                                  "The VHDX log to replay zeroes more than instar's limit VHDX_LOG_REPLAY_ZERO_MAX "
                                  "(268435456 bytes)",
                                  st);
    if (st != Status::Ok)
        return st;
    static constexpr uint8_t NONE = 0;
    return host.data(guest::EDIT_DATA_REPLAYED, &NONE, 0);
}

static_assert(VHDX_LOG_REPLAY_ZERO_MAX == 268435456, "the message above prints the limit");

} // namespace instar::vhdx
