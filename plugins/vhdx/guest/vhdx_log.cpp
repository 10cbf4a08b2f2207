// The VHDX log search, as qemu's vhdx_log_search decides whether a log needs replay.
#include "vhdx_log.h"

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint32_t DESCRIPTORS_PER_SECTOR = VHDX_LOG_SECTOR_SIZE / sizeof(VhdxLogDescriptorDisk);

struct Log {
    guest::BlockDevice& dev;
    uint64_t offset;
    uint32_t length;
    uint8_t* sector; // one VHDX_LOG_SECTOR_SIZE buffer
    uint64_t budget;
    // Reads the log sector at byte index `idx` (wrapping around the circular log).
    Status read(uint64_t idx) { return read_at(dev, offset + idx % length, sector, VHDX_LOG_SECTOR_SIZE); }
};

bool descriptor_valid(const uint8_t* p, uint64_t sequence) {
    VhdxLogDescriptorDisk d;
    __builtin_memcpy(&d, p, sizeof d);
    if (load_le64(d.sequence_number) != sequence || load_le64(d.file_offset) % VHDX_LOG_SECTOR_SIZE != 0)
        return false;
    if (same_bytes(d.signature, "zero", 4))
        return load_le64(d.leading_bytes_or_zero_length) % VHDX_LOG_SECTOR_SIZE == 0;
    return same_bytes(d.signature, "desc", 4);
}

// Whether a valid entry starts at log byte index `start`.
Status entry_valid(Log& log, const VhdxHeader& h, uint64_t start, bool* valid) {
    *valid = false;
    Status st = log.read(start);
    if (st != Status::Ok)
        return st;
    VhdxLogEntryHeaderDisk e;
    __builtin_memcpy(&e, log.sector, sizeof e);
    const uint32_t entry_length = load_le32(e.entry_length);
    const uint64_t sequence = load_le64(e.sequence_number);
    const uint32_t count = load_le32(e.descriptor_count);
    if (!same_bytes(e.signature, VHDX_LOG_SIGNATURE, 4) || entry_length > log.length ||
        entry_length % VHDX_LOG_SECTOR_SIZE != 0 || sequence == 0)
        return Status::Ok;
    for (int i = 0; i < 16; ++i)
        if (e.log_guid[i] != h.log_guid[i])
            return Status::Ok;
    if (static_cast<uint64_t>(count) * sizeof(VhdxLogDescriptorDisk) > entry_length)
        return Status::Ok;
    const uint64_t desc_sectors = (static_cast<uint64_t>(count) + 2 + DESCRIPTORS_PER_SECTOR - 1) / DESCRIPTORS_PER_SECTOR;
    const uint64_t total_sectors = entry_length / VHDX_LOG_SECTOR_SIZE;
    const uint64_t sectors = total_sectors > desc_sectors ? total_sectors : desc_sectors;
    if (sectors * VHDX_LOG_SECTOR_SIZE > log.budget)
        return Status::TooLarge;
    log.budget -= sectors * VHDX_LOG_SECTOR_SIZE;
    const uint32_t stored_crc = load_le32(e.checksum);
    uint32_t crc = 0xFFFFFFFFu;
    uint64_t desc_index = 0;
    for (uint64_t s = 0; s < sectors; ++s) {
        if (s != 0 && (st = log.read(start + s * VHDX_LOG_SECTOR_SIZE)) != Status::Ok)
            return st;
        if (s < desc_sectors) {
            for (uint32_t slot = s == 0 ? 2 : 0; slot < DESCRIPTORS_PER_SECTOR && desc_index < count; ++slot, ++desc_index)
                if (!descriptor_valid(log.sector + slot * sizeof(VhdxLogDescriptorDisk), sequence))
                    return Status::Ok;
        }
        if (s == 0) // the stored checksum counts as zero
            __builtin_memset(log.sector + offsetof(VhdxLogEntryHeaderDisk, checksum), 0, 4);
        crc = crc32c_update(crc, log.sector, VHDX_LOG_SECTOR_SIZE);
    }
    *valid = (crc ^ 0xFFFFFFFFu) == stored_crc;
    return Status::Ok;
}

} // namespace

Status vhdx_log_check(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h) {
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
    Buffer sector(alloc, VHDX_LOG_SECTOR_SIZE);
    if (!sector.p)
        return Status::NoMemory;
    Log log{dev, h.log_offset, h.log_length, sector.p, VHDX_LOG_SCAN_BUDGET};
    for (uint64_t at = 0; at < h.log_length; at += VHDX_LOG_SECTOR_SIZE) {
        bool valid = false;
        const Status st = entry_valid(log, h, at, &valid);
        if (st != Status::Ok)
            return st;
        if (valid)
            return Status::Unsupported;
    }
    return Status::Ok;
}

} // namespace instar::vhdx
