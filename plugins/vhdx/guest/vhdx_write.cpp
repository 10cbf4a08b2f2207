// The VHDX writer (vhdx_write.h): qemu's vhdx_co_writev, vhdx_allocate_block, vhdx_log_write_and_flush
// and vhdx_update_headers, reproduced so the file qemu leaves behind is the file made here.
#include "vhdx_write.h"

#include <instar/guest/arena_new.h>

#include "vhdx_bat.h"
#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"
#include "vhdx_create.h"
#include "vhdx_create_write.h"
#include "vhdx_header.h"
#include "vhdx_log.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint64_t MiB = 1u << 20;
// The writer's first GUID label (vhdx_derived_guid); each GUID qemu would draw takes the next one.
constexpr uint64_t FIRST_GUID_LABEL = 16;
// Zeros written at a time for write_zeroes (qemu's vhdx has no zero write: the block layer writes
// a buffer of zeros instead).
constexpr size_t ZERO_CHUNK = 64 * 1024;
// A BAT update journals one 4 KiB sector: one descriptor sector (the 64-byte entry header and a
// 32-byte data descriptor) and one data sector.
constexpr uint32_t LOG_ENTRY_SIZE = 2 * VHDX_LOG_SECTOR_SIZE;
constexpr char LOG_DESC_SIGNATURE[] = "desc";
constexpr char LOG_DATA_SIGNATURE[] = "data";

void store_le(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

struct HeaderSlot {
    uint64_t sequence_number;
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
    uint8_t log_guid[16];
};

class VhdxWriter final : public guest::ImageWriter {
public:
    VhdxWriter(guest::CreateTarget& target, guest::Allocator& alloc, const VhdxCreated& c, const uint8_t* random)
        : target_(target), dev_(target.image()), alloc_(alloc), c_(c), file_length_(c.layout.file_length) {
        __builtin_memcpy(random_, random, sizeof random_);
        for (int i = 0; i < 2; ++i) {
            slots_[i] = HeaderSlot{};
            slots_[i].sequence_number = static_cast<uint64_t>(c.ids.sequence_number) + static_cast<uint64_t>(i);
            __builtin_memcpy(slots_[i].file_write_guid, c.ids.file_write_guid, 16);
            __builtin_memcpy(slots_[i].data_write_guid, c.ids.data_write_guid, 16);
        }
        // qemu picks the header with the higher sequence number: create gives header 2 the next one.
        current_ = 1;
        next_guid(session_guid_);
    }

    // vhdx_open for writing: both headers get the session's file write GUID.
    Status open() { return update_headers(false, nullptr); }

    // vhdx_get_info: the block size, for fixed and dynamic disks alike.
    uint64_t cluster_size() const override { return c_.params.block_size; }
    // vhdx_has_zero_init: true unless the first BAT entry is FULLY_PRESENT (a fixed disk made with
    // block_state_zero=off), and then the file's answer, which is true for the new file.
    bool zero_init() const override { return true; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > c_.params.size || len > c_.params.size - offset)
            return Status::Invalid;
        if (len == 0)
            return Status::Ok;
        if (first_visible_write_) { // vhdx_user_visible_write: new data write GUIDs
            first_visible_write_ = false;
            if (const Status st = update_headers(true, nullptr); st != Status::Ok)
                return st;
        }
        const uint8_t* p = static_cast<const uint8_t*>(buf);
        const uint64_t block_size = c_.params.block_size;
        while (len > 0) {
            const uint64_t block = offset / block_size, in_block = offset % block_size;
            const size_t n = block_size - in_block < len ? static_cast<size_t>(block_size - in_block) : len;
            const uint64_t index = block + block / c_.layout.chunk_ratio;
            uint64_t entry;
            if (const Status st = bat_entry(index, &entry); st != Status::Ok)
                return st;
            const uint64_t state = entry & VHDX_BAT_STATE_BIT_MASK;
            if (state == PAYLOAD_BLOCK_FULLY_PRESENT) {
                const uint64_t at = entry & VHDX_BAT_FILE_OFF_MASK;
                if (at < VHDX_HEADER_SECTION_END)
                    return Status::Corrupt; // qemu: -EFAULT for a block in the header section
                if (const Status st = dev_.write(at + in_block, p, n); st != Status::Ok)
                    return st;
            } else if (state == PAYLOAD_BLOCK_NOT_PRESENT || state == PAYLOAD_BLOCK_ZERO) {
                if (const Status st = allocate(index, in_block, p, n); st != Status::Ok)
                    return st;
            } else {
                return Status::Corrupt; // create writes no other state
            }
            offset += n;
            p += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > c_.params.size || len > c_.params.size - offset)
            return Status::Invalid;
        guest::ScopedBuffer zeros(alloc_, ZERO_CHUNK);
        if (!zeros.p)
            return Status::NoMemory;
        __builtin_memset(zeros.p, 0, ZERO_CHUNK);
        while (len > 0) {
            const size_t n = len < ZERO_CHUNK ? static_cast<size_t>(len) : ZERO_CHUNK;
            if (const Status st = write(offset, zeros.p, n); st != Status::Ok)
                return st;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_compressed(uint64_t, const void*, size_t) override { return Status::Unsupported; }
    Status finish() override { return Status::Ok; } // every update is written as it is made
    void close() override { guest::arena_delete(alloc_, this); }

private:
    void next_guid(uint8_t* out) { vhdx_derived_guid(random_, guid_label_++, out); }

    // vhdx_update_header: the non-current header gets the next sequence number, the session's file
    // write GUID, optionally a new data write GUID and a log GUID, and becomes current.
    Status update_header(bool new_data_guid, const uint8_t* log_guid) {
        const int idx = 1 - current_;
        HeaderSlot& h = slots_[idx];
        h.sequence_number = slots_[current_].sequence_number + 1;
        __builtin_memcpy(h.file_write_guid, session_guid_, 16);
        if (new_data_guid)
            next_guid(h.data_write_guid);
        if (log_guid != nullptr)
            __builtin_memcpy(h.log_guid, log_guid, 16);
        vhdx_build_header(scratch_, h.sequence_number, h.file_write_guid, h.data_write_guid, h.log_guid, c_.layout);
        const Status st = dev_.write(idx == 0 ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET, scratch_, VHDX_HEADER_SIZE);
        if (st == Status::Ok)
            current_ = idx;
        return st;
    }

    // vhdx_update_headers: twice, so both headers carry the new state.
    Status update_headers(bool new_data_guid, const uint8_t* log_guid) {
        const Status st = update_header(new_data_guid, log_guid);
        return st != Status::Ok ? st : update_header(new_data_guid, log_guid);
    }

    // Loads the 4 KiB BAT sector holding entry `index` and returns the entry.
    Status bat_entry(uint64_t index, uint64_t* out) {
        if (index >= c_.layout.bat_entries)
            return Status::Invalid;
        const uint64_t sector = index * 8 / VHDX_LOG_SECTOR_SIZE;
        if (!bat_cached_ || bat_sector_ != sector) {
            const Status st = dev_.read(c_.layout.bat_offset + sector * VHDX_LOG_SECTOR_SIZE, bat_, sizeof bat_);
            if (st != Status::Ok)
                return st;
            bat_cached_ = true;
            bat_sector_ = sector;
        }
        *out = load_le64(bat_ + index * 8 % VHDX_LOG_SECTOR_SIZE);
        return Status::Ok;
    }

    // vhdx_allocate_block, the data write, and the BAT update through the log.
    Status allocate(uint64_t index, uint64_t in_block, const uint8_t* data, size_t n) {
        uint64_t at, end;
        if (!add_u64(file_length_, MiB - 1, &at) || !add_u64(at & ~(MiB - 1), c_.params.block_size, &end))
            return Status::TooLarge;
        at &= ~(MiB - 1);
        if (const Status st = target_.set_length(dev_, end, guest::Prealloc::Off); st != Status::Ok)
            return st;
        file_length_ = end;
        if (const Status st = dev_.write(at + in_block, data, n); st != Status::Ok)
            return st;
        // The sector as it will be once the entry is set (bat_ holds it: bat_entry loaded it).
        store_le(bat_ + index * 8 % VHDX_LOG_SECTOR_SIZE, at | PAYLOAD_BLOCK_FULLY_PRESENT, 8);
        return log_bat_sector(c_.layout.bat_offset + bat_sector_ * VHDX_LOG_SECTOR_SIZE);
    }

    // vhdx_log_write_and_flush for one whole 4 KiB sector whose new contents are in bat_.
    Status log_bat_sector(uint64_t file_offset) {
        uint8_t log_guid[16];
        next_guid(log_guid);
        if (const Status st = update_headers(false, log_guid); st != Status::Ok)
            return st;
        if (log_sequence_ == 0)
            log_sequence_ = 1; // 0 is not a valid sequence number
        const uint64_t seq = log_sequence_;

        uint8_t* e = entry_;
        __builtin_memset(e, 0, LOG_ENTRY_SIZE);
        __builtin_memcpy(e, VHDX_LOG_SIGNATURE, 4);
        store_le(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, entry_length), LOG_ENTRY_SIZE, 4);
        store_le(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, tail), log_tail_, 4);
        store_le(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, sequence_number), seq, 8);
        store_le(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, descriptor_count), 1, 4);
        __builtin_memcpy(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, log_guid), log_guid, 16);
        store_le(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, flushed_file_offset), file_length_, 8);
        store_le(e + __builtin_offsetof(VhdxLogEntryHeaderDisk, last_file_offset), file_length_, 8);
        // The data descriptor: the sector's first 8 and last 4 bytes, its place and the sequence.
        uint8_t* d = e + sizeof(VhdxLogEntryHeaderDisk);
        __builtin_memcpy(d, LOG_DESC_SIGNATURE, 4);
        __builtin_memcpy(d + __builtin_offsetof(VhdxLogDescriptorDisk, trailing_bytes_or_reserved),
                         bat_ + VHDX_LOG_SECTOR_SIZE - 4, 4);
        __builtin_memcpy(d + __builtin_offsetof(VhdxLogDescriptorDisk, leading_bytes_or_zero_length), bat_, 8);
        store_le(d + __builtin_offsetof(VhdxLogDescriptorDisk, file_offset), file_offset, 8);
        store_le(d + __builtin_offsetof(VhdxLogDescriptorDisk, sequence_number), seq, 8);
        // The data sector: signature, high sequence half, the middle 4084 bytes, low half.
        uint8_t* s = e + VHDX_LOG_SECTOR_SIZE;
        __builtin_memcpy(s, LOG_DATA_SIGNATURE, 4);
        store_le(s + 4, seq >> 32, 4);
        __builtin_memcpy(s + 8, bat_ + 8, VHDX_LOG_SECTOR_SIZE - 12);
        store_le(s + VHDX_LOG_SECTOR_SIZE - 4, seq & 0xFFFFFFFFu, 4);
        const size_t crc_at = __builtin_offsetof(VhdxLogEntryHeaderDisk, checksum);
        store_le(e + crc_at, crc32c_skipping(e, LOG_ENTRY_SIZE, crc_at), 4);

        // vhdx_log_write_sectors: sector by sector from the write position, wrapping at the end.
        for (uint32_t k = 0; k < LOG_ENTRY_SIZE / VHDX_LOG_SECTOR_SIZE; ++k) {
            const Status st = dev_.write(c_.layout.log_offset + log_write_, e + k * VHDX_LOG_SECTOR_SIZE,
                                         VHDX_LOG_SECTOR_SIZE);
            if (st != Status::Ok)
                return st;
            log_write_ += VHDX_LOG_SECTOR_SIZE;
            if (log_write_ >= c_.layout.log_length)
                log_write_ = 0;
        }
        log_sequence_ = seq + 1;
        log_tail_ = log_write_;
        // vhdx_log_flush: the sector in place, then vhdx_log_reset clears the headers' log GUID. The
        // entry stays in the log region and the next one follows it.
        if (const Status st = dev_.write(file_offset, bat_, VHDX_LOG_SECTOR_SIZE); st != Status::Ok)
            return st;
        static constexpr uint8_t zero_guid[16] = {};
        return update_headers(false, zero_guid);
    }

    guest::CreateTarget& target_;
    guest::BlockDevice& dev_;
    guest::Allocator& alloc_;
    VhdxCreated c_;
    uint64_t file_length_;
    uint8_t random_[guest::CREATE_RANDOM_BYTES];
    uint64_t guid_label_ = FIRST_GUID_LABEL;
    uint8_t session_guid_[16];
    HeaderSlot slots_[2];
    int current_;
    bool first_visible_write_ = true;
    uint32_t log_write_ = 0;
    uint32_t log_tail_ = 0;
    uint64_t log_sequence_ = 0;
    bool bat_cached_ = false;
    uint64_t bat_sector_ = 0;
    uint8_t bat_[VHDX_LOG_SECTOR_SIZE];
    uint8_t scratch_[VHDX_HEADER_SIZE];
    uint8_t entry_[LOG_ENTRY_SIZE];
};

} // namespace

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr || req.random == nullptr)
        return Status::Invalid;
    if (req.backing_file != nullptr)
        return guest::create_fail(target, Status::Unsupported, "Backing file not supported for file format 'vhdx'");
    VhdxCreated created;
    if (const Status st = create_image(req, target, &created); st != Status::Ok)
        return st;
    VhdxWriter* w = guest::arena_new<VhdxWriter>(*req.allocator, target, *req.allocator, created, req.random);
    if (w == nullptr)
        return Status::NoMemory;
    if (const Status st = w->open(); st != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

} // namespace instar::vhdx
