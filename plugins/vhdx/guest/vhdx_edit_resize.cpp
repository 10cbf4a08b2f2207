// vhdx: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/edit.md,
// docs/resize.md "vmdk, vpc, vhdx"). qemu-img refuses every vhdx resize ("Image format driver does
// not support resize"); this is an instar extension (divergence `vhdx-resize`).
//
// Payload block i always sits at BAT index i + i / chunk_ratio, so a resize only adds or drops
// entries at the table's end. Grow: new entries (unallocated; fixed disks: new blocks at the file's
// end, fully present) written where the old size does not look, the BAT region moved to the file's
// end when it is too small (region table copy 2, then copy 1: the first switch), then the
// VirtualDiskSize metadata item (the switch). Shrink: VirtualDiskSize first, then the dropped
// entries cleared and the file cut past the last structure still in use. The log is not used: an
// image whose log needs replaying is refused (vhdx_load), and each step leaves a consistent image.
#include "vhdx_edit.h"

#include <instar/guest/edit_device.h>
#include <instar/guest/edit_resize.h>
#include <instar/guest/format_util.h>

#include "vhdx_bat.h"
#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"
#include "vhdx_format.h"
#include "vhdx_header.h"
#include "vhdx_metadata.h"
#include "vhdx_region_table.h"
#include "vhdx_resize_expose.h"

namespace instar::vhdx {

using guest::EditHost;
using guest::EditRequest;
using guest::Status;

namespace {

constexpr uint64_t MIB = 1u << 20;
// The largest virtual size qemu opens (vhdx_parse_metadata, VHDX_MAX_IMAGE_SIZE): 64 TiB.
constexpr uint64_t RESIZE_MAX_SIZE = 64ull << 40;
constexpr uint64_t REGION_TABLE2_OFFSET = 256 * 1024; // MS-VHDX 2.2.3: the region table's copy
constexpr uint64_t HEADER_SECTION_END = 1 * MIB;      // MS-VHDX 2.1: file identifier, headers, region tables
constexpr uint64_t PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;
constexpr uint64_t SB_BLOCK_PRESENT = 6;
// BAT bytes handled at a time (bounded guest buffer; a multiple of the 8-byte entry).
constexpr size_t BAT_BUF = 64 * 1024;

void store_le(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

struct Layout {
    bool differencing;
    bool fixed;
    uint64_t ratio;   // chunk ratio: payload entries per sector bitmap entry
    uint32_t block;   // payload block size
    uint64_t size_at; // file offset of the VirtualDiskSize item
};

uint32_t entries_for(const Layout& l, uint64_t size) {
    return l.differencing ? vhdx_bat_entries_differencing(size, l.block) : vhdx_bat_entries(size, l.block);
}

bool is_bitmap_entry(const Layout& l, uint64_t index) { return (index + 1) % (l.ratio + 1) == 0; }

// The file offset of the VirtualDiskSize item (vhdx_metadata_read checked the table already).
Status find_size_item(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxRegion& region, uint64_t* at) {
    Buffer t(alloc, VHDX_METADATA_TABLE_MAX_SIZE);
    if (!t.p)
        return Status::NoMemory;
    Status st = read_at(dev, region.file_offset, t.p, VHDX_METADATA_TABLE_MAX_SIZE);
    if (st != Status::Ok)
        return st;
    const uint32_t count = load_le16(t.p + __builtin_offsetof(VhdxMetadataHeaderDisk, entry_count));
    const uint32_t max = (VHDX_METADATA_TABLE_MAX_SIZE - sizeof(VhdxMetadataHeaderDisk)) / sizeof(VhdxMetadataEntryDisk);
    for (uint32_t i = 0; i < count && i < max; ++i) {
        const uint8_t* e = t.p + sizeof(VhdxMetadataHeaderDisk) + i * sizeof(VhdxMetadataEntryDisk);
        if (!guid_eq(e, VHDX_VIRTUAL_DISK_SIZE_GUID))
            continue;
        const uint32_t off = load_le32(e + __builtin_offsetof(VhdxMetadataEntryDisk, offset));
        const uint32_t len = load_le32(e + __builtin_offsetof(VhdxMetadataEntryDisk, length));
        if (len != 8 || off > region.length || region.length - off < 8)
            return Status::Corrupt;
        *at = region.file_offset + off;
        return Status::Ok;
    }
    return Status::Corrupt;
}

Status read_entry(guest::SizedDevice& dev, uint64_t bat, uint64_t index, uint64_t* e) {
    uint8_t b[8];
    const Status st = dev.read(bat + index * 8, b, sizeof b);
    if (st == Status::Ok)
        *e = load_le64(b);
    return st;
}

// Zeros what the block holding `from` keeps past it (up to `to` or the block's end), so a grown
// area reads as zeros even where an earlier shrink left data behind.
Status zero_tail(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxImage& img, const Layout& l,
                 uint64_t from, uint64_t to) {
    if (from % l.block == 0)
        return Status::Ok;
    const uint64_t i = from / l.block;
    uint64_t e;
    Status st = read_entry(dev, img.regions.bat.file_offset, i + i / l.ratio, &e);
    if (st != Status::Ok)
        return st;
    const uint64_t state = e & VHDX_BAT_STATE_BIT_MASK;
    if (state != PAYLOAD_BLOCK_FULLY_PRESENT && state != PAYLOAD_BLOCK_PARTIALLY_PRESENT)
        return Status::Ok;
    const uint64_t end = (i + 1) * l.block < to ? (i + 1) * l.block : to;
    const uint64_t at = (e & VHDX_BAT_FILE_OFF_MASK) + (from - i * l.block);
    // The block must start inside the file; its tail may lie past the end (a shrink cut the file
    // after the last block's used part): the zeros written extend the file over it, as the grown
    // disk needs (qemu checks that a present block ends inside the file).
    if ((e & VHDX_BAT_FILE_OFF_MASK) >= dev.size())
        return Status::Corrupt;
    Buffer z(alloc, BAT_BUF);
    if (!z.p)
        return Status::NoMemory;
    __builtin_memset(z.p, 0, BAT_BUF);
    for (uint64_t done = 0; done < end - from && st == Status::Ok;) {
        const size_t n = end - from - done < BAT_BUF ? static_cast<size_t>(end - from - done) : BAT_BUF;
        st = dev.write(at + done, z.p, n);
        done += n;
    }
    return st;
}

// Writes BAT entries [first, last) at `bat`: unallocated (differencing disks: payload blocks
// PAYLOAD_BLOCK_ZERO, so the grown area reads as zeros, not as the parent's data), or (fixed disks)
// payload blocks fully present at consecutive block-sized places from *next_block.
Status write_new_entries(guest::SizedDevice& dev, guest::Allocator& alloc, const Layout& l, uint64_t bat,
                         uint64_t first, uint64_t last, uint64_t* next_block) {
    Buffer buf(alloc, BAT_BUF);
    if (!buf.p)
        return Status::NoMemory;
    for (uint64_t j = first; j < last;) {
        const uint64_t n = last - j < BAT_BUF / 8 ? last - j : BAT_BUF / 8;
        for (uint64_t k = 0; k < n; ++k) {
            uint64_t e = PAYLOAD_BLOCK_NOT_PRESENT;
            if (l.differencing && !is_bitmap_entry(l, j + k))
                e = PAYLOAD_BLOCK_ZERO;
            if (l.fixed && !is_bitmap_entry(l, j + k)) {
                e = *next_block | PAYLOAD_BLOCK_FULLY_PRESENT;
                *next_block += l.block;
            }
            store_le(buf.p + k * 8, e, 8);
        }
        const Status st = dev.write(bat + j * 8, buf.p, static_cast<size_t>(n * 8));
        if (st != Status::Ok)
            return st;
        j += n;
    }
    return Status::Ok;
}

// The end of the last thing in the file still in use with `entries` BAT entries of a disk of `size`.
Status used_end(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxImage& img, const Layout& l,
                uint64_t entries, uint64_t size, uint64_t* out) {
    uint64_t end = HEADER_SECTION_END;
    const auto bump = [&end](uint64_t v) { end = v > end ? v : end; };
    bump(img.header.log_offset + img.header.log_length);
    bump(img.regions.bat.file_offset + img.regions.bat.length);
    bump(img.regions.metadata.file_offset + img.regions.metadata.length);
    Buffer buf(alloc, BAT_BUF);
    if (!buf.p)
        return Status::NoMemory;
    const uint64_t bytes = entries * 8;
    for (uint64_t done = 0; done < bytes;) {
        const size_t n = bytes - done < BAT_BUF ? static_cast<size_t>(bytes - done) : BAT_BUF;
        const Status st = dev.read(img.regions.bat.file_offset + done, buf.p, n);
        if (st != Status::Ok)
            return st;
        for (size_t k = 0; k < n; k += 8) {
            const uint64_t j = (done + k) / 8;
            const uint64_t e = load_le64(buf.p + k);
            const uint64_t state = e & VHDX_BAT_STATE_BIT_MASK;
            const uint64_t off = e & VHDX_BAT_FILE_OFF_MASK;
            if (is_bitmap_entry(l, j)) {
                if (state == SB_BLOCK_PRESENT)
                    bump(off + MIB);
                continue;
            }
            if (state != PAYLOAD_BLOCK_FULLY_PRESENT && state != PAYLOAD_BLOCK_PARTIALLY_PRESENT)
                continue;
            const uint64_t i = j - j / (l.ratio + 1);
            const uint64_t rest = size - i * l.block;
            bump(off + (rest < l.block ? rest : l.block));
        }
        done += n;
    }
    *out = end;
    return Status::Ok;
}

Status write_region_tables(guest::SizedDevice& dev, EditHost& host, guest::Allocator& alloc, uint64_t bat,
                           uint32_t bat_length) {
    Buffer t(alloc, VHDX_REGION_TABLE_SIZE);
    if (!t.p)
        return Status::NoMemory;
    Status st = read_at(dev, VHDX_REGION_TABLE_OFFSET, t.p, VHDX_REGION_TABLE_SIZE);
    if (st != Status::Ok)
        return st;
    const uint32_t count = load_le32(t.p + __builtin_offsetof(VhdxRegionTableHeaderDisk, entry_count));
    bool found = false;
    for (uint32_t i = 0; i < count && i < VHDX_REGION_MAX_ENTRIES; ++i) {
        uint8_t* e = t.p + sizeof(VhdxRegionTableHeaderDisk) + i * sizeof(VhdxRegionTableEntryDisk);
        if (!guid_eq(e, VHDX_BAT_GUID))
            continue;
        store_le(e + __builtin_offsetof(VhdxRegionTableEntryDisk, file_offset), bat, 8);
        store_le(e + __builtin_offsetof(VhdxRegionTableEntryDisk, length), bat_length, 4);
        found = true;
    }
    if (!found)
        return Status::Corrupt;
    const size_t crc_at = __builtin_offsetof(VhdxRegionTableHeaderDisk, checksum);
    store_le(t.p + crc_at, crc32c_skipping(t.p, VHDX_REGION_TABLE_SIZE, crc_at), 4);
    st = dev.write(REGION_TABLE2_OFFSET, t.p, VHDX_REGION_TABLE_SIZE);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok)
        st = dev.write(VHDX_REGION_TABLE_OFFSET, t.p, VHDX_REGION_TABLE_SIZE);
    return st;
}

Status write_size(guest::SizedDevice& dev, const Layout& l, uint64_t size) {
    uint8_t b[8];
    store_le(b, size, 8);
    return dev.write(l.size_at, b, sizeof b);
}

Status grow(guest::SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const VhdxImage& img, const Layout& l,
            uint64_t size, guest::Prealloc prealloc, bool parent_reaches) {
    const uint64_t old_size = img.meta.virtual_disk_size;
    const uint64_t old_entries = entries_for(l, old_size);
    const uint64_t new_entries = entries_for(l, size);
    uint64_t bat = img.regions.bat.file_offset;
    uint64_t bat_length = img.regions.bat.length;
    const bool relocate = new_entries * 8 > bat_length;

    // Fixed disks: the old last block gets its full length, new blocks follow the file's end.
    uint64_t file_end = dev.size();
    if (l.fixed) {
        uint64_t used;
        const Status st = used_end(dev, alloc, img, l, old_entries, size, &used);
        if (st != Status::Ok)
            return st;
        file_end = used > file_end ? used : file_end;
    }
    uint64_t next = round_up(file_end, MIB);
    if (relocate) {
        bat = next;
        bat_length = round_up(new_entries * 8, MIB);
        if (bat_length > 0xFFFFFFFFull - MIB)
            return Status::TooLarge;
        next = bat + bat_length;
    }
    const uint64_t data_blocks_new = (size + l.block - 1) / l.block;
    const uint64_t data_blocks_old = (old_size + l.block - 1) / l.block;
    // A differencing disk's grown area reads as zeros (vhdx_resize_expose.h); the block holding the
    // old end may need a payload block and a sector bitmap block, after the relocated BAT.
    // The space is judged from the BAT where it is now (a relocated copy is written below).
    VhdxExpose expose{img.regions.bat.file_offset, old_size, size, old_entries, l.ratio, l.block, parent_reaches};
    uint64_t expose_bytes = 0;
    if (l.differencing)
        if (const Status st = vhdx_expose_space(dev, expose, &expose_bytes); st != Status::Ok)
            return st;
    expose.bat = bat;
    const uint64_t expose_at = next;
    if (expose_bytes > 0)
        next += expose_bytes;
    uint64_t new_len = dev.size();
    if ((relocate || expose_bytes > 0) && next > new_len)
        new_len = next;
    if (l.fixed) {
        new_len = file_end > new_len ? file_end : new_len;
        const uint64_t added = data_blocks_new - data_blocks_old;
        // The last block only as long as the disk needs (as qemu's create lays a fixed disk out).
        const uint64_t blocks_end = next + added * l.block - (data_blocks_new * l.block - size);
        if (added > 0 && blocks_end > new_len)
            new_len = blocks_end;
    }
    Status st = Status::Ok;
    if (new_len > dev.size())
        st = dev.set_length(host, new_len, l.fixed ? prealloc : guest::Prealloc::Off);
    if (st == Status::Ok)
        st = zero_tail(dev, alloc, img, l, old_size, size);
    if (st == Status::Ok && relocate) {
        Buffer buf(alloc, BAT_BUF);
        if (!buf.p)
            return Status::NoMemory;
        const uint64_t bytes = old_entries * 8;
        for (uint64_t done = 0; done < bytes && st == Status::Ok;) {
            const size_t n = bytes - done < BAT_BUF ? static_cast<size_t>(bytes - done) : BAT_BUF;
            st = dev.read(img.regions.bat.file_offset + done, buf.p, n);
            if (st == Status::Ok)
                st = dev.write(bat + done, buf.p, n);
            done += n;
        }
    }
    uint64_t block_at = next;
    if (st == Status::Ok)
        st = write_new_entries(dev, alloc, l, bat, old_entries, new_entries, &block_at);
    if (st == Status::Ok && l.differencing)
        st = vhdx_expose_zeros(dev, alloc, expose, expose_at);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok && relocate) {
        st = write_region_tables(dev, host, alloc, bat, static_cast<uint32_t>(bat_length));
        if (st == Status::Ok)
            st = dev.flush(host);
    }
    if (st == Status::Ok)
        st = write_size(dev, l, size);
    if (st == Status::Ok)
        st = dev.flush(host);
    return st;
}

Status shrink(guest::SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const VhdxImage& img, const Layout& l,
              uint64_t size) {
    const uint64_t old_entries = entries_for(l, img.meta.virtual_disk_size);
    const uint64_t new_entries = entries_for(l, size);
    Status st = write_size(dev, l, size);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok && new_entries < old_entries) {
        Buffer z(alloc, BAT_BUF);
        if (!z.p)
            return Status::NoMemory;
        __builtin_memset(z.p, 0, BAT_BUF);
        const uint64_t bytes = (old_entries - new_entries) * 8;
        const uint64_t at = img.regions.bat.file_offset + new_entries * 8;
        for (uint64_t done = 0; done < bytes && st == Status::Ok;) {
            const size_t n = bytes - done < BAT_BUF ? static_cast<size_t>(bytes - done) : BAT_BUF;
            st = dev.write(at + done, z.p, n);
            done += n;
        }
        if (st == Status::Ok)
            st = dev.flush(host);
    }
    uint64_t end = 0;
    if (st == Status::Ok)
        st = used_end(dev, alloc, img, l, new_entries, size, &end);
    if (st == Status::Ok && end < dev.size())
        st = dev.set_length(host, end, guest::Prealloc::Off);
    return st;
}

// MS-VHDX 2.2.2: a writer renews FileWriteGuid and DataWriteGuid (the virtual disk's content
// changes) before its first change. Written as qemu's vhdx_update_header does: the current header
// with the next sequence number into the other slot, so the newer one wins and the old one stays
// valid until then.
Status renew_header(guest::SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const uint8_t* random) {
    Buffer buf(alloc, VHDX_HEADER_SIZE);
    if (!buf.p)
        return Status::NoMemory;
    const uint64_t slots[2] = {VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET};
    VhdxHeader h[2];
    bool valid[2];
    for (int i = 0; i < 2; ++i) {
        const Status st = read_at(dev, slots[i], buf.p, VHDX_HEADER_SIZE);
        if (st != Status::Ok)
            return st;
        valid[i] = vhdx_header_parse(buf.p, VHDX_HEADER_SIZE, &h[i]);
    }
    const int current = !valid[1] || (valid[0] && h[0].sequence_number >= h[1].sequence_number) ? 0 : 1;
    if (!valid[current] || h[current].sequence_number == ~uint64_t{0})
        return Status::Corrupt;
    Status st = read_at(dev, slots[current], buf.p, VHDX_HEADER_SIZE);
    if (st != Status::Ok)
        return st;
    store_le(buf.p + __builtin_offsetof(VhdxHeaderDisk, sequence_number), h[current].sequence_number + 1, 8);
    __builtin_memcpy(buf.p + __builtin_offsetof(VhdxHeaderDisk, file_write_guid), random, 16);
    __builtin_memcpy(buf.p + __builtin_offsetof(VhdxHeaderDisk, data_write_guid), random + 16, 16);
    const size_t crc_at = __builtin_offsetof(VhdxHeaderDisk, checksum);
    store_le(buf.p + crc_at, crc32c_skipping(buf.p, VHDX_HEADER_SIZE, crc_at), 4);
    st = dev.write(slots[1 - current], buf.p, VHDX_HEADER_SIZE);
    if (st == Status::Ok)
        st = dev.flush(host);
    return st;
}

Status refuse(EditHost& host, Status st, const char* why) {
    guest::edit_refuse(host, why, st);
    return st;
}

} // namespace

guest::Status edit_resize(const EditRequest& req, EditHost& host) {
    if (req.image == nullptr || req.allocator == nullptr || req.args == nullptr ||
        req.args_len != sizeof(guest::ResizeArgs))
        return refuse(host, Status::Invalid, "invalid resize arguments");
    guest::ResizeArgs args;
    __builtin_memcpy(&args, req.args, sizeof args);
    // The files are extended with holes, reserved or written zeros; format-level metadata
    // preallocation is not offered (qemu's raw wording).
    if (args.prealloc == static_cast<uint32_t>(guest::Prealloc::Metadata))
        return refuse(host, Status::Unsupported, "Unsupported preallocation mode: metadata");
    guest::SizedDevice dev(*req.image, req.image_length);
    VhdxImage img;
    const char* why = nullptr;
    Status st = vhdx_load(dev, *req.allocator, &img, &why);
    if (st != Status::Ok)
        return refuse(host, st, why != nullptr ? why : "Could not open the image");
    Layout l{};
    l.differencing = (img.meta.data_bits & VHDX_PARAMS_HAS_PARENT) != 0;
    l.fixed = (img.meta.data_bits & VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED) != 0 && !l.differencing;
    l.block = img.meta.block_size;
    l.ratio = vhdx_chunk_ratio(l.block);
    if (args.new_size > RESIZE_MAX_SIZE)
        return refuse(host, Status::TooLarge, "Image size too large; max of 64TB");
    const uint64_t size = (args.new_size + 511) & ~uint64_t{511};
    if (size == 0)
        return refuse(host, Status::Invalid, "vhdx: a disk cannot be resized to 0 bytes");
    const uint64_t old_size = img.meta.virtual_disk_size;
    if (size < old_size && (args.flags & guest::RESIZE_SHRINK) == 0)
        return refuse(host, Status::Invalid, "Use the --shrink option to perform a shrink operation.");
    if (size == old_size)
        return Status::Ok;
    if (!l.fixed && (args.flags & guest::RESIZE_PREALLOC_GIVEN) != 0 && args.prealloc != 0)
        return refuse(host, Status::Unsupported, "Unsupported preallocation mode for dynamic vhdx images");
    if ((st = find_size_item(dev, *req.allocator, img.regions.metadata, &l.size_at)) != Status::Ok)
        return refuse(host, st, "vhdx: no VirtualDiskSize metadata item");
    if (req.random != nullptr && (st = renew_header(dev, host, *req.allocator, req.random)) != Status::Ok)
        return refuse(host, st, "vhdx: could not update the header");
    // The parent reaches into the grown area: it must not show there (qemu zeroes a qcow2 overlay's
    // grown area then, bdrv_co_truncate).
    const bool parent_reaches = (args.flags & guest::RESIZE_HAS_BACKING) != 0 && args.backing_size > old_size;
    st = size > old_size ? grow(dev, host, *req.allocator, img, l, size, static_cast<guest::Prealloc>(args.prealloc),
                                parent_reaches)
                         : shrink(dev, host, *req.allocator, img, l, size);
    if (st != Status::Ok)
        return refuse(host, st, "vhdx: the resize failed");
    return Status::Ok;
}

} // namespace instar::vhdx
