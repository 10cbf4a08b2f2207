// The VHDX log search: qemu's vhdx_log_search (block/vhdx-log.c) finds the active sequence of entries.
#include "vhdx_log.h"

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint32_t SECTOR = VHDX_LOG_SECTOR_SIZE;
constexpr uint32_t DESCRIPTORS_PER_SECTOR = SECTOR / sizeof(VhdxLogDescriptorDisk);

uint32_t next_index(uint32_t idx, uint32_t length) { // vhdx_log_inc_idx
    idx += SECTOR;
    return idx >= length ? 0 : idx;
}

struct Search {
    guest::BlockDevice& dev;
    const VhdxHeader& h;
    uint8_t* sector; // one SECTOR buffer
    uint64_t budget;
    Status charge() {
        if (budget < SECTOR)
            return Status::TooLarge;
        budget -= SECTOR;
        return Status::Ok;
    }
    // The sector at the read index, the index unchanged (vhdx_log_peek_hdr).
    Status peek(const VhdxLogCursor& cur) {
        const Status st = charge();
        return st != Status::Ok ? st : read_at(dev, cur.offset + cur.read, sector, SECTOR);
    }
    Status next(VhdxLogCursor& cur, bool* got) {
        const Status st = charge();
        return st != Status::Ok ? st : vhdx_log_next_sector(dev, cur, sector, got);
    }
};

// qemu's vhdx_validate_log_entry: an entry whose header is invalid (or, after the first, whose
// sequence number does not follow `seq`) moves the read index one sector on; any other entry moves
// it past the sectors read, valid or not (checksum). A descriptor that fails its checks fails the
// search (vhdx_log_read_desc's -EINVAL).
Status validate(Search& s, VhdxLogCursor& cur, uint64_t seq, bool* valid, VhdxLogEntry* out) {
    *valid = false;
    Status st = s.peek(cur);
    if (st != Status::Ok)
        return st;
    VhdxLogEntry e;
    if (!vhdx_log_entry_parse(s.sector, cur.length, s.h.log_guid, &e) || (seq > 0 && e.sequence_number != seq + 1)) {
        cur.read = next_index(cur.read, cur.length);
        return Status::Ok;
    }
    const uint32_t desc_sectors = vhdx_log_desc_sectors(e.descriptor_count);
    const uint32_t total_sectors = e.entry_length / SECTOR;
    uint32_t crc = 0xFFFFFFFFu;
    uint64_t index = 0;
    for (uint32_t i = 0; i < desc_sectors; ++i) {
        bool got = false;
        if ((st = s.next(cur, &got)) != Status::Ok)
            return st;
        if (!got)
            return Status::Corrupt;
        if (!vhdx_log_sector_descriptors_valid(s.sector, i, e, &index))
            return Status::Corrupt;
        if (i == 0) // the stored checksum counts as zero
            __builtin_memset(s.sector + offsetof(VhdxLogEntryHeaderDisk, checksum), 0, 4);
        crc = crc32c_update(crc, s.sector, SECTOR);
    }
    for (uint32_t i = desc_sectors; i < total_sectors; ++i) {
        bool got = false;
        if ((st = s.next(cur, &got)) != Status::Ok)
            return st;
        if (!got)
            return Status::Ok;
        crc = crc32c_update(crc, s.sector, SECTOR);
    }
    *valid = (crc ^ 0xFFFFFFFFu) == e.checksum;
    if (*valid)
        *out = e;
    return Status::Ok;
}

} // namespace

Status vhdx_log_next_sector(guest::BlockDevice& dev, VhdxLogCursor& cur, uint8_t* sector, bool* got) {
    *got = false;
    if (cur.read == cur.write)
        return Status::Ok;
    const Status st = read_at(dev, cur.offset + cur.read, sector, SECTOR);
    if (st != Status::Ok)
        return st;
    cur.read = next_index(cur.read, cur.length);
    *got = true;
    return Status::Ok;
}

bool vhdx_log_entry_parse(const uint8_t* sector, uint32_t log_length, const uint8_t* log_guid, VhdxLogEntry* out) {
    VhdxLogEntryHeaderDisk e;
    __builtin_memcpy(&e, sector, sizeof e);
    out->checksum = load_le32(e.checksum);
    out->entry_length = load_le32(e.entry_length);
    out->sequence_number = load_le64(e.sequence_number);
    out->descriptor_count = load_le32(e.descriptor_count);
    out->flushed_file_offset = load_le64(e.flushed_file_offset);
    out->last_file_offset = load_le64(e.last_file_offset);
    if (!same_bytes(e.signature, VHDX_LOG_SIGNATURE, 4) || out->entry_length > log_length ||
        out->entry_length % SECTOR != 0 || out->sequence_number == 0)
        return false;
    for (int i = 0; i < 16; ++i)
        if (e.log_guid[i] != log_guid[i])
            return false;
    return static_cast<uint64_t>(out->descriptor_count) * sizeof(VhdxLogDescriptorDisk) <= out->entry_length;
}

bool vhdx_log_descriptor_valid(const uint8_t* p, uint64_t sequence) {
    VhdxLogDescriptorDisk d;
    __builtin_memcpy(&d, p, sizeof d);
    if (load_le64(d.sequence_number) != sequence || load_le64(d.file_offset) % SECTOR != 0)
        return false;
    if (same_bytes(d.signature, "zero", 4))
        return load_le64(d.leading_bytes_or_zero_length) % SECTOR == 0;
    return same_bytes(d.signature, "desc", 4);
}

bool vhdx_log_sector_descriptors_valid(const uint8_t* sector, uint32_t i, const VhdxLogEntry& e, uint64_t* index) {
    for (uint32_t slot = i == 0 ? 2 : 0; slot < DESCRIPTORS_PER_SECTOR && *index < e.descriptor_count; ++slot, ++*index)
        if (!vhdx_log_descriptor_valid(sector + slot * sizeof(VhdxLogDescriptorDisk), e.sequence_number))
            return false;
    return true;
}

Status vhdx_log_search(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h, VhdxLogSequence* out) {
    *out = VhdxLogSequence{};
    if (h.log_offset < VHDX_LOG_MIN_SIZE || h.log_offset % VHDX_LOG_MIN_SIZE != 0)
        return Status::Corrupt;
    if (h.log_version != 0)
        return Status::Corrupt;
    if (guid_is_zero(h.log_guid) || h.log_length == 0)
        return Status::Ok;
    if (h.log_length % VHDX_LOG_MIN_SIZE != 0)
        return Status::Corrupt;
    uint64_t end;
    if (!add_u64(h.log_offset, h.log_length, &end) || end > dev.size())
        return Status::Corrupt;
    Buffer sector(alloc, SECTOR);
    if (!sector.p)
        return Status::NoMemory;
    Search s{dev, h, sector.p, VHDX_LOG_SCAN_BUDGET};
    // The whole log is searched as if full (write index at its end, which reading never reaches).
    VhdxLogCursor cur{h.log_offset, h.log_length, 0, h.log_length};
    for (;;) {
        const uint64_t seq = 0; // qemu never sets it before the chain's second entry
        const uint32_t tail = cur.read;
        VhdxLogSequence current{};
        bool valid = false;
        VhdxLogEntry e;
        if (const Status st = validate(s, cur, seq, &valid, &e); st != Status::Ok)
            return st;
        if (valid) {
            current = VhdxLogSequence{true, 1, e.sequence_number, {h.log_offset, h.log_length, tail, cur.read}};
            uint64_t chain_seq = seq;
            for (;;) {
                if (const Status st = validate(s, cur, chain_seq, &valid, &e); st != Status::Ok)
                    return st;
                if (!valid)
                    break;
                current.cursor.write = cur.read;
                ++current.count;
                chain_seq = e.sequence_number;
            }
        }
        if (current.valid && (!out->valid || current.sequence > out->sequence))
            *out = current;
        if (cur.read < tail)
            return Status::Ok;
    }
}

Status vhdx_log_check(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h) {
    VhdxLogSequence seq;
    const Status st = vhdx_log_search(dev, alloc, h, &seq);
    if (st != Status::Ok)
        return st;
    return seq.valid ? Status::Unsupported : Status::Ok;
}

} // namespace instar::vhdx
