// qemu's vhdx_update_headers (vhdx_header_update.h), shared by convert -n's writer and the log replay.
#include "vhdx_header_update.h"

#include <instar/guest/format_util.h>

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"
#include "vhdx_header.h"

namespace instar::vhdx {

using guest::Status;

namespace {

void store_le(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

} // namespace

Status vhdx_update_headers(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeaderChange& change) {
    guest::ScopedBuffer buf(alloc, VHDX_HEADER_SIZE);
    if (!buf.p)
        return Status::NoMemory;
    uint8_t* h = static_cast<uint8_t*>(buf.p);
    for (int round = 0; round < 2; ++round) {
        const uint64_t slots[2] = {VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET};
        VhdxHeader parsed[2];
        bool valid[2];
        for (int i = 0; i < 2; ++i) {
            if (const Status st = read_at(dev, slots[i], h, VHDX_HEADER_SIZE); st != Status::Ok)
                return st;
            valid[i] = vhdx_header_parse(h, VHDX_HEADER_SIZE, &parsed[i]);
        }
        const int current = !valid[1] || (valid[0] && parsed[0].sequence_number >= parsed[1].sequence_number) ? 0 : 1;
        if (!valid[current] || parsed[current].sequence_number == ~uint64_t{0})
            return Status::Corrupt;
        if (const Status st = read_at(dev, slots[current], h, VHDX_HEADER_SIZE); st != Status::Ok)
            return st;
        store_le(h + __builtin_offsetof(VhdxHeaderDisk, sequence_number), parsed[current].sequence_number + 1, 8);
        if (change.file_write_guid != nullptr)
            __builtin_memcpy(h + __builtin_offsetof(VhdxHeaderDisk, file_write_guid), change.file_write_guid, 16);
        if (change.data_write_guid != nullptr)
            __builtin_memcpy(h + __builtin_offsetof(VhdxHeaderDisk, data_write_guid), change.data_write_guid, 16);
        if (change.log_guid != nullptr)
            __builtin_memcpy(h + __builtin_offsetof(VhdxHeaderDisk, log_guid), change.log_guid, 16);
        const size_t crc_at = __builtin_offsetof(VhdxHeaderDisk, checksum);
        store_le(h + crc_at, crc32c_skipping(h, VHDX_HEADER_SIZE, crc_at), 4);
        if (const Status st = dev.write(slots[1 - current], h, VHDX_HEADER_SIZE); st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

} // namespace instar::vhdx
