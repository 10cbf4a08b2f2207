// The VHD writer (vpc_write.h): qemu's vpc_co_pwritev and alloc_block rules, with one BAT sector
// cached so memory does not grow with the disk.
#include "vpc_write.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

#include "vpc_bytes.h"
#include "vpc_create.h"
#include "vpc_footer.h"
#include "vpc_format.h"

namespace instar::vpc {

using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;
// qemu's bitmap_size for the 2 MiB blocks create makes: one bit per sector, rounded up to a sector.
constexpr uint32_t CREATE_BITMAP_SIZE = 512;
// Zeros written at a time for write_zeroes (qemu has no zero-write for vpc: it writes zeros as data).
constexpr size_t ZERO_CHUNK = 64 * 1024;
// BAT entries per cached sector.
constexpr uint32_t ENTRIES_PER_SECTOR = SECTOR / 4;

class VpcWriter final : public guest::ImageWriter {
public:
    VpcWriter(guest::BlockDevice& dev, guest::Allocator& alloc, const VpcCreated& c, bool existing = false,
              uint64_t bitmap_size = CREATE_BITMAP_SIZE)
        : dev_(dev), alloc_(alloc), c_(c), existing_(existing),
          differencing_(existing && c.disk_type == VHD_DIFFERENCING), bitmap_size_(bitmap_size) {
        free_offset_ = c.footer_offset;
    }

    // vpc_get_info: the block size for dynamic disks, nothing for fixed ones.
    uint64_t cluster_size() const override { return c_.disk_type == VHD_FIXED ? 0 : c_.block_size; }
    // vpc_has_zero_init: a dynamic disk reads as zeros; a fixed one as its (new, sparse) file does.
    // An existing image (convert -n) has none: qemu asks for zeros, written as data.
    bool zero_init() const override { return !existing_; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > c_.size || len > c_.size - offset)
            return Status::Invalid;
        if (c_.disk_type == VHD_FIXED)
            return dev_.write(offset, buf, len);
        const uint8_t* p = static_cast<const uint8_t*>(buf);
        while (len > 0) {
            const uint64_t in_block = offset % c_.block_size;
            const size_t n = c_.block_size - in_block < len ? static_cast<size_t>(c_.block_size - in_block) : len;
            uint64_t data_at = 0;
            bool fresh = false;
            if (const Status st = block_data(offset / c_.block_size, &data_at, &fresh); st != Status::Ok)
                return st;
            if (const Status st = dev_.write(data_at + in_block, p, n); st != Status::Ok)
                return st;
            if (differencing_)
                if (const Status st = mark_present(data_at - bitmap_size_, in_block, n); st != Status::Ok)
                    return st;
            // A new block's BAT entry goes last, after its data (the bytes qemu leaves are the same).
            if (fresh)
                if (const Status st = write_entry(offset / c_.block_size); st != Status::Ok)
                    return st;
            offset += n;
            p += n;
            len -= n;
        }
        return Status::Ok;
    }

    // qemu's vpc driver has no write_zeroes: the block layer writes a buffer of zeros instead.
    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > c_.size || len > c_.size - offset)
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
    // Loads the BAT sector holding entry `index` into the cache.
    Status load_bat_sector(uint32_t index) {
        const uint32_t sector = index / ENTRIES_PER_SECTOR;
        if (cached_ && cached_sector_ == sector)
            return Status::Ok;
        if (const Status st = dev_.read(c_.bat_offset + uint64_t{sector} * SECTOR, bat_, SECTOR); st != Status::Ok)
            return st;
        cached_ = true;
        cached_sector_ = sector;
        return Status::Ok;
    }

    // Where block `index`'s data starts in the file, allocating the block as qemu's alloc_block does.
    Status block_data(uint64_t index, uint64_t* out, bool* fresh) {
        if (index >= c_.max_table_entries)
            return Status::Invalid;
        const uint32_t i = static_cast<uint32_t>(index);
        if (const Status st = load_bat_sector(i); st != Status::Ok)
            return st;
        uint8_t* entry = bat_ + 4 * (i % ENTRIES_PER_SECTOR);
        uint32_t value = load_be32(entry);
        if (value == VPC_BAT_UNUSED) {
            // The bitmap goes where the footer was, the footer after the new block, then the entry.
            const uint64_t block = free_offset_;
            uint64_t next;
            if (!add_u64(block, bitmap_size_ + uint64_t{c_.block_size}, &next) || block / SECTOR >= VPC_BAT_UNUSED)
                return Status::TooLarge;
            // The footer moves past the new block first (the file always ends in one), then the
            // bitmap goes over the old footer; the caller writes the data and then the BAT entry, so
            // a crash leaves the image as it was, plus unused space (qemu writes the entry first).
            if (const Status st = dev_.write(next, c_.footer, sizeof c_.footer); st != Status::Ok)
                return st;
            if (const Status st = write_bitmap(block, differencing_ ? 0x00 : 0xFF); st != Status::Ok)
                return st;
            value = static_cast<uint32_t>(block / SECTOR);
            store_be32(entry, value);
            free_offset_ = next;
            last_bitmap_ = block;
            *fresh = true;
        } else if (existing_ && !differencing_ && last_bitmap_ != uint64_t{value} * SECTOR) {
            // qemu's get_image_offset for a write: the block's sector bitmap is set all-ones whenever
            // a write goes to another block than the last one (a block another tool wrote may mark
            // sectors absent; a differencing disk's clear bits would let its parent show through).
            last_bitmap_ = uint64_t{value} * SECTOR;
            if (const Status st = write_bitmap(last_bitmap_, 0xFF); st != Status::Ok)
                return st;
        }
        *out = uint64_t{value} * SECTOR + bitmap_size_;
        return Status::Ok;
    }

    // Block `index`'s BAT entry, as block_data set it in the cached sector.
    Status write_entry(uint64_t index) {
        const uint32_t i = static_cast<uint32_t>(index);
        if (const Status st = load_bat_sector(i); st != Status::Ok)
            return st;
        return dev_.write(c_.bat_offset + 4 * uint64_t{i}, bat_ + 4 * (i % ENTRIES_PER_SECTOR), 4);
    }

    // A differencing disk's sectors [in_block, in_block + n) of the block whose bitmap is at
    // `bitmap_at` become present (bit 7 of byte 0 is the block's first sector), after their data
    // was written: a crash before leaves them reading from the parent, as before.
    Status mark_present(uint64_t bitmap_at, uint64_t in_block, uint64_t n) {
        const uint64_t first = in_block / SECTOR, end = (in_block + n + SECTOR - 1) / SECTOR;
        uint8_t bits[SECTOR];
        for (uint64_t s = first; s < end;) {
            const uint64_t page = s / (8 * SECTOR); // the bitmap sector holding sector s's bit
            if (page * SECTOR >= bitmap_size_)
                return Status::Corrupt;
            if (const Status st = dev_.read(bitmap_at + page * SECTOR, bits, SECTOR); st != Status::Ok)
                return st;
            for (; s < end && s / (8 * SECTOR) == page; ++s)
                bits[(s / 8) % SECTOR] = static_cast<uint8_t>(bits[(s / 8) % SECTOR] | (0x80u >> (s % 8)));
            if (const Status st = dev_.write(bitmap_at + page * SECTOR, bits, SECTOR); st != Status::Ok)
                return st;
        }
        return Status::Ok;
    }

    // A sector bitmap of bitmap_size_ bytes `fill` at `at`, a sector at a time.
    Status write_bitmap(uint64_t at, uint8_t fill) {
        uint8_t ones[SECTOR];
        __builtin_memset(ones, fill, sizeof ones);
        for (uint64_t done = 0; done < bitmap_size_; done += SECTOR)
            if (const Status st = dev_.write(at + done, ones, SECTOR); st != Status::Ok)
                return st;
        return Status::Ok;
    }

    guest::BlockDevice& dev_;
    guest::Allocator& alloc_;
    VpcCreated c_;
    bool existing_;
    // An existing differencing disk: its bitmaps say which sectors are its own (instar reads the
    // parent for the others), so only written sectors are marked, after their data.
    bool differencing_ = false;
    uint64_t bitmap_size_; // a multiple of SECTOR (vpc_bitmap_size)
    uint64_t last_bitmap_ = UINT64_MAX;
    uint64_t free_offset_;
    bool cached_ = false;
    uint32_t cached_sector_ = 0;
    uint8_t bat_[SECTOR];
};

} // namespace

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr)
        return Status::Invalid;
    if (req.backing_file != nullptr && req.backing_file[0] != 0)
        return guest::create_fail(target, Status::Unsupported,
                                  "Backing file not supported for file format 'vpc'");
    VpcCreated created;
    if (const Status st = create_image(req, target, &created); st != Status::Ok)
        return st;
    // create makes 2 MiB blocks only; the bitmap size and the entry arithmetic above rely on it.
    if (created.disk_type != VHD_FIXED && created.block_size != 0x200000)
        return Status::Invalid;
    VpcWriter* w = guest::arena_new<VpcWriter>(*req.allocator, target.image(), *req.allocator, created);
    if (w == nullptr)
        return Status::NoMemory;
    *out = w;
    return Status::Ok;
}

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    guest::BlockDevice& dev = *req.image;
    VpcImage img{};
    const char* why = nullptr;
    auto say = [&](const char* text) {
        size_t n = 0;
        while (text[n] != 0)
            ++n;
        if (req.reasons != nullptr)
            req.reasons->reason(text, n);
    };
    if (const Status st = vpc_load(dev, *req.allocator, &img, &why); st != Status::Ok) {
        if (why != nullptr)
            say(why);
        return st;
    }
    VpcCreated c{};
    c.disk_type = img.footer.disk_type;
    c.size = img.virtual_size;
    if (!img.dynamic) {
        // Fixed: the data is the file up to its footer; the virtual size must lie inside it.
        if (dev.size() < VPC_FOOTER_SIZE || c.size > dev.size() - VPC_FOOTER_SIZE)
            return Status::Corrupt;
        c.footer_offset = dev.size() - VPC_FOOTER_SIZE;
    } else {
        // Any block size vpc_load accepts (a power of two, at least a sector): qemu's bitmap of
        // vpc_bitmap_size bytes precedes each block's data.
        if (img.bitmap_size % SECTOR != 0)
            return Status::Corrupt;
        uint64_t covered = 0;
        if (__builtin_mul_overflow(uint64_t{img.header.max_table_entries}, uint64_t{img.header.block_size}, &covered) ||
            c.size > covered)
            return Status::Corrupt;
        c.bat_offset = img.header.table_offset;
        c.max_table_entries = img.header.max_table_entries;
        c.block_size = img.header.block_size;
        // qemu's free_data_block_offset: new blocks go after the last allocated one (vpc_load
        // checked it lies inside the file), the footer copy qemu writes after each is the one at 0.
        c.footer_offset = img.free_data_block_offset;
        // A differencing disk (qemu opens it as a dynamic one) keeps its parent locators' data, which
        // instar and Windows place after the BAT: new blocks go after it too, where qemu would write
        // over it and lose the parent's name (docs/quirks.md, vpc-existing-differencing).
        if (c.disk_type == VHD_DIFFERENCING)
            for (const VpcParentLocator& loc : img.header.parent_locators) {
                if (loc.platform_code[0] == 0 && loc.platform_code[1] == 0 && loc.platform_code[2] == 0 &&
                    loc.platform_code[3] == 0)
                    continue;
                uint64_t end = 0;
                if (!add_u64(loc.data_offset, uint64_t{loc.data_space}, &end) || end > dev.size())
                    continue; // not in the file: nothing to keep
                end = (end + SECTOR - 1) / SECTOR * SECTOR;
                if (end > c.footer_offset && end <= dev.size())
                    c.footer_offset = end;
            }
    }
    const uint64_t footer_at = img.dynamic ? 0 : dev.size() - VPC_FOOTER_SIZE;
    if (const Status st = dev.read(footer_at, c.footer, sizeof c.footer); st != Status::Ok)
        return st;
    VpcWriter* w = guest::arena_new<VpcWriter>(*req.allocator, dev, *req.allocator, c, true,
                                                img.dynamic ? img.bitmap_size : 0);
    if (w == nullptr)
        return Status::NoMemory;
    *out = w;
    return Status::Ok;
}

} // namespace instar::vpc
