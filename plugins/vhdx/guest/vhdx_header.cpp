// Parsing and selection of the VHDX headers.
#include "vhdx_header.h"

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"

namespace instar::vhdx {

using guest::Status;

namespace {

bool same_raw(const VhdxHeader& a, const VhdxHeader& b) {
    for (size_t i = 0; i < sizeof a.raw; ++i)
        if (a.raw[i] != b.raw[i])
            return false;
    return true;
}

} // namespace

bool vhdx_header_parse(const uint8_t* bytes, uint64_t len, VhdxHeader* out) {
    if (len < VHDX_HEADER_SIZE)
        return false;
    VhdxHeaderDisk d;
    __builtin_memcpy(&d, bytes, sizeof d);
    if (crc32c_skipping(bytes, VHDX_HEADER_SIZE, offsetof(VhdxHeaderDisk, checksum)) != load_le32(d.checksum))
        return false;
    if (!same_bytes(d.signature, VHDX_HEADER_SIGNATURE, 4) || load_le16(d.version) != 1)
        return false;
    out->sequence_number = load_le64(d.sequence_number);
    __builtin_memcpy(out->log_guid, d.log_guid, 16);
    out->log_version = load_le16(d.log_version);
    out->version = load_le16(d.version);
    out->log_length = load_le32(d.log_length);
    out->log_offset = load_le64(d.log_offset);
    __builtin_memcpy(out->raw, bytes, sizeof out->raw);
    return true;
}

Status vhdx_read_current_header(guest::BlockDevice& dev, guest::Allocator& alloc, VhdxHeader* out) {
    Buffer buf(alloc, VHDX_HEADER_SIZE);
    if (!buf.p)
        return Status::NoMemory;
    VhdxHeader h[2];
    bool valid[2];
    const uint64_t offsets[2] = {VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET};
    for (int i = 0; i < 2; ++i) {
        const Status st = read_at(dev, offsets[i], buf.p, VHDX_HEADER_SIZE);
        if (st != Status::Ok)
            return st;
        valid[i] = vhdx_header_parse(buf.p, VHDX_HEADER_SIZE, &h[i]);
    }
    int current;
    if (valid[0] && !valid[1])
        current = 0;
    else if (!valid[0] && valid[1])
        current = 1;
    else if (!valid[0])
        return Status::Corrupt;
    else if (h[0].sequence_number != h[1].sequence_number)
        current = h[0].sequence_number > h[1].sequence_number ? 0 : 1;
    else if (same_raw(h[0], h[1]))
        current = 0; // Disk2VHD writes two identical headers
    else
        return Status::Corrupt;
    *out = h[current];
    return Status::Ok;
}

} // namespace instar::vhdx
