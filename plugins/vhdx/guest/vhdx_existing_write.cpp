// convert -n into an existing VHDX (vhdx_existing_write.h): qemu's vhdx_co_writev and
// vhdx_allocate_block, with the BAT entry written in place after the data instead of through the log.
#include "vhdx_existing_write.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

#include "vhdx_bat.h"
#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"
#include "vhdx_create_layout.h"
#include "vhdx_format.h"
#include "vhdx_header.h"
#include "vhdx_header_update.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;
constexpr uint64_t MiB = 1u << 20;
// BAT entries are cached one 4 KiB page at a time (memory does not grow with the disk).
constexpr uint64_t BAT_PAGE = 4096;
// Zeros written at a time for write_zeroes (qemu's vhdx has no zero write: the block layer writes a
// buffer of zeros instead).
constexpr size_t ZERO_CHUNK = 64 * 1024;
// qemu's other payload block states (block/vhdx.h); vhdx_bat.h names the ones the reader needs.
constexpr uint64_t PAYLOAD_BLOCK_UNDEFINED = 1;
constexpr uint64_t PAYLOAD_BLOCK_UNMAPPED = 3;
constexpr uint64_t PAYLOAD_BLOCK_UNMAPPED_V095 = 5;

void store_le(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void say(guest::ReasonSink* reasons, const char* text) {
    size_t n = 0;
    while (text[n] != 0)
        ++n;
    if (reasons != nullptr)
        reasons->reason(text, n);
}

class ExistingVhdxWriter final : public guest::ImageWriter {
public:
    ExistingVhdxWriter(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxImage& img, uint64_t bat_entries)
        : dev_(dev), alloc_(alloc), size_(img.virtual_size), block_(img.meta.block_size),
          ratio_(vhdx_chunk_ratio(img.meta.block_size)), bat_offset_(img.regions.bat.file_offset),
          bat_entries_(bat_entries) {}

    uint64_t cluster_size() const override { return block_; } // vhdx_get_info
    bool zero_init() const override { return false; }          // an existing image: qemu asks for zeros

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > size_ || len > size_ - offset)
            return Status::Invalid;
        if (len == 0)
            return Status::Ok;
        if (!renewed_) { // vhdx_user_visible_write: new GUIDs before the first change
            if (const Status st = renew_headers(); st != Status::Ok)
                return st;
            renewed_ = true;
        }
        const uint8_t* p = static_cast<const uint8_t*>(buf);
        while (len > 0) {
            const uint64_t block = offset / block_, in_block = offset % block_;
            const size_t n = block_ - in_block < len ? static_cast<size_t>(block_ - in_block) : len;
            const uint64_t index = block + block / ratio_;
            uint64_t entry = 0;
            if (const Status st = bat_entry(index, &entry); st != Status::Ok)
                return st;
            const uint64_t state = entry & VHDX_BAT_STATE_BIT_MASK;
            if (state == PAYLOAD_BLOCK_FULLY_PRESENT) {
                const uint64_t at = entry & VHDX_BAT_FILE_OFF_MASK;
                if (at < VHDX_HEADER_SECTION_END)
                    return Status::Corrupt; // qemu: -EFAULT for a block in the header section
                if (const Status st = dev_.write(at + in_block, p, n); st != Status::Ok)
                    return st;
            } else if (state == PAYLOAD_BLOCK_NOT_PRESENT || state == PAYLOAD_BLOCK_UNDEFINED ||
                       state == PAYLOAD_BLOCK_ZERO || state == PAYLOAD_BLOCK_UNMAPPED ||
                       state == PAYLOAD_BLOCK_UNMAPPED_V095) {
                if (const Status st = allocate(index, in_block, p, n); st != Status::Ok)
                    return st;
            } else {
                return Status::Corrupt; // qemu: -EIO (PARTIALLY_PRESENT and reserved states)
            }
            offset += n;
            p += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > size_ || len > size_ - offset)
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
    Status bat_entry(uint64_t index, uint64_t* out) {
        if (index >= bat_entries_)
            return Status::Invalid;
        const uint64_t page = index * 8 / BAT_PAGE;
        if (!cached_ || page_ != page) {
            const Status st = read_at(dev_, bat_offset_ + page * BAT_PAGE, bat_, sizeof bat_);
            if (st != Status::Ok)
                return st;
            cached_ = true;
            page_ = page;
        }
        *out = load_le64(bat_ + index * 8 % BAT_PAGE);
        return Status::Ok;
    }

    // vhdx_allocate_block: the block goes at the file's end rounded up to 1 MiB and the file grows
    // by the block (its last sector written, the rest a hole reading as zeros, as qemu's truncate
    // leaves it). The data is written first and the BAT entry last, in place: a crash before the
    // entry leaves the image as it was plus unused space at its end.
    Status allocate(uint64_t index, uint64_t in_block, const uint8_t* data, size_t n) {
        uint64_t at = 0, end = 0;
        if (!add_u64(dev_.size(), MiB - 1, &at) || !add_u64(at & ~(MiB - 1), block_, &end))
            return Status::TooLarge;
        at &= ~(MiB - 1);
        if (const Status st = dev_.write(at + in_block, data, n); st != Status::Ok)
            return st;
        if (in_block + n < block_) {
            static constexpr uint8_t zeros[SECTOR] = {};
            if (const Status st = dev_.write(end - SECTOR, zeros, SECTOR); st != Status::Ok)
                return st;
        }
        uint8_t* e = bat_ + index * 8 % BAT_PAGE;
        store_le(e, at | PAYLOAD_BLOCK_FULLY_PRESENT, 8);
        return dev_.write(bat_offset_ + index * 8, e, 8);
    }

    // vhdx_user_visible_write: both headers (vhdx_update_headers) with new file and data write
    // GUIDs (MS-VHDX 2.2.2).
    Status renew_headers() {
        VhdxHeader cur;
        if (const Status st = vhdx_read_current_header(dev_, alloc_, &cur); st != Status::Ok)
            return st;
        uint8_t file_guid[16], data_guid[16];
        __builtin_memcpy(file_guid, cur.raw + __builtin_offsetof(VhdxHeaderDisk, file_write_guid), 16);
        __builtin_memcpy(data_guid, cur.raw + __builtin_offsetof(VhdxHeaderDisk, data_write_guid), 16);
        derive_guid(file_guid, cur.sequence_number + 1, 1);
        derive_guid(data_guid, cur.sequence_number + 1, 2);
        return vhdx_update_headers(dev_, alloc_, VhdxHeaderChange{file_guid, data_guid, nullptr});
    }

    // A new GUID from the old one, the new sequence number and a label (CRC-32C of the three, four
    // times), marked as a version 4 GUID: it differs from the old one, which is what readers check.
    static void derive_guid(uint8_t* guid, uint64_t seq, uint8_t label) {
        uint8_t in[16 + 8 + 2];
        __builtin_memcpy(in, guid, 16);
        store_le(in + 16, seq, 8);
        in[24] = label;
        uint8_t out[16];
        for (uint8_t k = 0; k < 4; ++k) {
            in[25] = k;
            store_le(out + 4 * k, crc32c_update(0xFFFFFFFFu, in, sizeof in), 4);
        }
        out[7] = static_cast<uint8_t>((out[7] & 0x0F) | 0x40); // version 4 (data3's high nibble)
        out[8] = static_cast<uint8_t>((out[8] & 0x3F) | 0x80); // RFC 4122 variant
        __builtin_memcpy(guid, out, 16);
    }

    guest::BlockDevice& dev_;
    guest::Allocator& alloc_;
    uint64_t size_;
    uint64_t block_;
    uint64_t ratio_;
    uint64_t bat_offset_;
    uint64_t bat_entries_;
    bool renewed_ = false;
    bool cached_ = false;
    uint64_t page_ = 0;
    uint8_t bat_[BAT_PAGE];
};

} // namespace

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    guest::BlockDevice& dev = *req.image;
    VhdxImage img{};
    const char* why = nullptr;
    if (const Status st = vhdx_load(dev, *req.allocator, &img, &why); st != Status::Ok) {
        if (why != nullptr)
            say(req.reasons, why);
        return st;
    }
    // qemu's vhdx_open fails on a differencing disk ("not supported yet"), so qemu-img cannot open
    // it as a target at all.
    if ((img.meta.data_bits & VHDX_PARAMS_HAS_PARENT) != 0) {
        say(req.reasons, "Could not open '{image}': Operation not supported");
        return Status::Unsupported;
    }
    if (img.meta.block_size == 0 || img.meta.block_size % MiB != 0)
        return Status::Corrupt; // vhdx_load's metadata checks allow 1..256 MiB powers of two only
    // The entries the BAT region holds (vhdx_load checked the disk's entries fit in it).
    const uint64_t bat_entries = img.regions.bat.length / 8;
    if (bat_entries < vhdx_bat_entries(img.meta.virtual_disk_size, img.meta.block_size))
        return Status::Corrupt;
    auto* w = guest::arena_new<ExistingVhdxWriter>(*req.allocator, dev, *req.allocator, img, bat_entries);
    if (w == nullptr)
        return Status::NoMemory;
    *out = w;
    return Status::Ok;
}

} // namespace instar::vhdx
