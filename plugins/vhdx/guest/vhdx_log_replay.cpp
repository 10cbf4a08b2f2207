// qemu's vhdx_log_flush (block/vhdx-log.c): the active log sequence written into the image
// (vhdx_log_replay.h).
#include "vhdx_log_replay.h"

#include "vhdx_bytes.h"
#include "vhdx_create_ids.h"
#include "vhdx_header_update.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint32_t SECTOR = VHDX_LOG_SECTOR_SIZE;
constexpr uint32_t DESCRIPTORS_PER_SECTOR = SECTOR / sizeof(VhdxLogDescriptorDisk);
constexpr uint64_t MIB = 1u << 20;
// A data sector: "data", sequence_high, 4084 logged bytes, sequence_low. The 8 bytes the first two
// fields displace and the 4 the last one does are kept in the descriptor.
constexpr size_t DATA_SEQUENCE_HIGH = 4;
constexpr size_t DATA_SEQUENCE_LOW = SECTOR - 4;
constexpr size_t LEADING_BYTES = 8;
constexpr size_t TRAILING_BYTES = 4;

struct Replay {
    guest::SizedDevice& dev;
    guest::EditHost& host;
    const uint8_t* log_guid;
    uint8_t* desc;        // one SECTOR buffer: a descriptor sector
    uint8_t* data;        // one SECTOR buffer: a data sector, then the sector written
    uint64_t zero_budget; // VHDX_LOG_REPLAY_ZERO_MAX, counted down

    Status write_zeros(uint64_t at, uint64_t length) {
        if (length > zero_budget)
            return Status::TooLarge;
        zero_budget -= length;
        __builtin_memset(data, 0, SECTOR);
        for (uint64_t done = 0; done < length; done += SECTOR) {
            uint64_t where;
            if (!add_u64(at, done, &where))
                return Status::Corrupt;
            if (const Status st = dev.write(where, data, SECTOR); st != Status::Ok)
                return st;
        }
        return Status::Ok;
    }

    // One entry at cur.read (vhdx_log_flush's loop body), cur moved past the sectors it read.
    Status entry(VhdxLogCursor& cur) {
        if (cur.read == cur.write) // vhdx_log_peek_hdr: -EINVAL
            return Status::Corrupt;
        Status st = read_at(dev, cur.offset + cur.read, desc, SECTOR);
        if (st != Status::Ok)
            return st;
        VhdxLogEntry e;
        const uint64_t file_length = dev.size();
        if (!vhdx_log_entry_parse(desc, cur.length, log_guid, &e) || e.flushed_file_offset > file_length)
            return Status::Corrupt;
        // vhdx_log_read_desc: every descriptor sector present and every descriptor valid first.
        const VhdxLogCursor descs = cur;
        const uint32_t desc_sectors = vhdx_log_desc_sectors(e.descriptor_count);
        uint64_t index = 0;
        for (uint32_t i = 0; i < desc_sectors; ++i) {
            bool got = false;
            if ((st = vhdx_log_next_sector(dev, cur, desc, &got)) != Status::Ok)
                return st;
            if (!got)
                return Status::Corrupt;
            if (!vhdx_log_sector_descriptors_valid(desc, i, e, &index))
                return Status::Corrupt;
        }
        uint32_t loaded = ~0u;
        for (uint32_t i = 0; i < e.descriptor_count; ++i) {
            const uint32_t slot = i + 2, in_sector = slot / DESCRIPTORS_PER_SECTOR;
            if (in_sector != loaded) {
                const uint64_t at = (descs.read + static_cast<uint64_t>(in_sector) * SECTOR) % descs.length;
                if ((st = read_at(dev, descs.offset + at, desc, SECTOR)) != Status::Ok)
                    return st;
                loaded = in_sector;
            }
            VhdxLogDescriptorDisk d;
            __builtin_memcpy(&d, desc + slot % DESCRIPTORS_PER_SECTOR * sizeof d, sizeof d);
            const uint64_t file_offset = load_le64(d.file_offset);
            if (same_bytes(d.signature, "zero", 4)) {
                st = write_zeros(file_offset, load_le64(d.leading_bytes_or_zero_length));
            } else { // "desc": the next data sector of the log
                bool got = false;
                if ((st = vhdx_log_next_sector(dev, cur, data, &got)) != Status::Ok)
                    return st;
                if (!got)
                    return Status::Corrupt;
                const uint64_t seq = static_cast<uint64_t>(load_le32(data + DATA_SEQUENCE_HIGH)) << 32 |
                                     load_le32(data + DATA_SEQUENCE_LOW);
                if (seq != e.sequence_number)
                    return Status::Corrupt;
                __builtin_memcpy(data, d.leading_bytes_or_zero_length, LEADING_BYTES);
                __builtin_memcpy(data + SECTOR - TRAILING_BYTES, d.trailing_bytes_or_reserved, TRAILING_BYTES);
                st = dev.write(file_offset, data, SECTOR);
            }
            if (st != Status::Ok)
                return st;
        }
        // qemu grows the file only to an unaligned last_file_offset (rounded up to 1 MiB).
        if (file_length < e.last_file_offset && e.last_file_offset % MIB != 0) {
            const uint64_t length = (e.last_file_offset / MIB + 1) * MIB;
            if (length < e.last_file_offset)
                return Status::Corrupt;
            return dev.set_length(host, length, guest::Prealloc::Off);
        }
        return Status::Ok;
    }
};

} // namespace

Status vhdx_log_replay(guest::SizedDevice& dev, guest::EditHost& host, guest::Allocator& alloc,
                       const VhdxLogSequence& seq, const uint8_t* random) {
    if (!seq.valid)
        return Status::Ok;
    VhdxHeader h;
    if (const Status st = vhdx_read_current_header(dev, alloc, &h); st != Status::Ok)
        return st;
    Buffer desc(alloc, SECTOR), data(alloc, SECTOR);
    if (!desc.p || !data.p)
        return Status::NoMemory;
    // vhdx_user_visible_write: the session's file write GUID and a new data write GUID.
    uint8_t file_guid[16], data_guid[16];
    vhdx_derived_guid(random, VHDX_REPLAY_GUID_LABEL, file_guid);
    vhdx_derived_guid(random, VHDX_REPLAY_GUID_LABEL + 1, data_guid);
    if (const Status st = vhdx_update_headers(dev, alloc, VhdxHeaderChange{file_guid, data_guid, nullptr});
        st != Status::Ok)
        return st;
    Replay r{dev, host, h.log_guid, desc.p, data.p, VHDX_LOG_REPLAY_ZERO_MAX};
    VhdxLogCursor cur = seq.cursor;
    for (uint32_t n = 0; n < seq.count; ++n)
        if (const Status st = r.entry(cur); st != Status::Ok)
            return st;
    // The replayed sectors durable before the headers stop naming the log (vhdx_log_reset).
    if (const Status st = dev.flush(host); st != Status::Ok)
        return st;
    static constexpr uint8_t NO_LOG[16] = {};
    if (const Status st = vhdx_update_headers(dev, alloc, VhdxHeaderChange{file_guid, nullptr, NO_LOG});
        st != Status::Ok)
        return st;
    return dev.flush(host);
}

} // namespace instar::vhdx
