// vpc: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/edit.md,
// docs/resize.md "vmdk, vpc, vhdx"). qemu-img refuses every vpc resize ("Image format driver does
// not support resize"); this is an instar extension (divergence `vpc-resize`).
//
// The new size is rounded as qemu's create rounds it (CHS geometry, or exact sectors for images
// whose size is the footer's current_size). Fixed disks move the footer; dynamic and differencing
// disks grow or cut the block allocation table (relocated to the file's end when it has no room).
// Write order (dynamic): new structures, flush, header, flush, footer copy at 0 (what qemu reads:
// the switch), trailing footer, then tidying of what the old size no longer covers.
#include "vpc_edit.h"

#include <instar/guest/edit_device.h>
#include <instar/guest/edit_resize.h>
#include <instar/guest/format_util.h>

#include "vpc_bytes.h"
#include "vpc_dynamic_header.h"
#include "vpc_footer.h"
#include "vpc_format.h"
#include "vpc_geometry.h"
#include "vpc_resize_expose.h"

#include <stddef.h>

namespace instar::vpc {

using guest::EditHost;
using guest::EditRequest;
using guest::Status;

namespace {

// Largest BAT after a resize: vpc_load's own limit (VPC_MAX_TABLE_ENTRIES there), so instar can
// open what it wrote.
constexpr uint32_t RESIZE_MAX_TABLE_ENTRIES = 1u << 24;
// BAT bytes copied or filled at a time (bounded guest buffer).
constexpr size_t BAT_CHUNK = 64 * 1024;

// The creators whose current_size is the disk size (as vpc_format.cpp's rule).
bool uses_current_size(const VpcFooter& f) {
    const uint8_t* a = f.creator_application;
    return same4(a, "win ") || same4(a, "qem2") || same4(a, "d2v ") || same4(a, "CTXS") ||
           (a[0] == 't' && a[1] == 'a' && a[2] == 'p' && a[3] == 0);
}

uint32_t header_checksum(const uint8_t* bytes) {
    constexpr size_t at = offsetof(VpcDynamicHeaderDisk, checksum);
    uint32_t sum = 0;
    for (size_t i = 0; i < VPC_DYNAMIC_HEADER_SIZE; ++i)
        if (i < at || i >= at + 4)
            sum += bytes[i];
    return ~sum;
}

// The footer bytes `raw` with the new size and geometry (every other field kept as its writer left
// it). The original size changes too: libvhdi (vhdiinfo) reports it as the media size.
void patch_footer(uint8_t* raw, uint64_t size, const VpcGeometry& g) {
    store_be64(raw + offsetof(VpcFooterDisk, original_size), size);
    store_be64(raw + offsetof(VpcFooterDisk, current_size), size);
    store_be16(raw + offsetof(VpcFooterDisk, cylinders), g.cylinders);
    raw[offsetof(VpcFooterDisk, heads)] = g.heads;
    raw[offsetof(VpcFooterDisk, sectors_per_track)] = g.sectors_per_track;
    store_be32(raw + offsetof(VpcFooterDisk, checksum), vpc_footer_checksum(raw));
}

// The new size as the image will report it: qemu's create rounding for CHS-sized images, exact
// sectors (force_size's maxed geometry kept, or the geometry for the size) for current_size ones.
Status new_geometry(const VpcImage& img, uint64_t requested, uint64_t* size, VpcGeometry* g) {
    if (requested > VHD_MAX_SECTORS * 512)
        return Status::TooLarge;
    const uint64_t bytes = (requested + 511) & ~uint64_t{511};
    const VpcFooter& f = img.footer;
    const bool maxed = static_cast<uint64_t>(f.cylinders) * f.heads * f.sectors_per_track == VHD_MAX_GEOMETRY;
    uint64_t sectors;
    if (maxed || uses_current_size(f)) {
        if (!vpc_rounded_size(bytes, maxed, g, &sectors))
            return Status::TooLarge;
        sectors = bytes / 512; // the size is current_size, whatever the geometry covers
    } else if (!vpc_rounded_size(bytes, false, g, &sectors)) {
        return Status::TooLarge;
    }
    if (sectors > VHD_MAX_SECTORS || sectors == 0)
        return sectors == 0 ? Status::Invalid : Status::TooLarge;
    *size = sectors * 512;
    return Status::Ok;
}


// Fixed disk: data [0, size), footer after it. Grow: the new footer at the new end, then the old
// footer's bytes (now inside the grown data) zeroed. Shrink: the new footer over the data past the
// new end, then the file cut. A kill between the two steps leaves a valid image of the new size
// (grow: with the old footer's 512 bytes still in the new area).
Status resize_fixed(guest::SizedDevice& dev, EditHost& host, const VpcImage& img, uint64_t size,
                    const VpcGeometry& g, guest::Prealloc prealloc) {
    const uint64_t old_footer = dev.size() - VPC_FOOTER_SIZE;
    uint8_t raw[VPC_FOOTER_SIZE];
    Status st = dev.read(old_footer, raw, sizeof raw);
    if (st != Status::Ok)
        return st;
    patch_footer(raw, size, g);
    (void)img;
    if (size > old_footer) {
        if (prealloc != guest::Prealloc::Off) {
            st = dev.set_length(host, size + VPC_FOOTER_SIZE, prealloc);
            if (st != Status::Ok)
                return st;
        }
        st = dev.write(size, raw, sizeof raw);
        if (st == Status::Ok)
            st = dev.flush(host);
        static constexpr uint8_t zeros[VPC_FOOTER_SIZE] = {};
        if (st == Status::Ok)
            st = dev.write(old_footer, zeros, sizeof zeros);
        return st;
    }
    st = dev.write(size, raw, sizeof raw);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok)
        st = dev.set_length(host, size + VPC_FOOTER_SIZE, guest::Prealloc::Off);
    return st;
}

// Where the BAT can end without touching other data: the first block, parent locator data or the
// trailing footer after the table's start.
Status bat_room(guest::SizedDevice& dev, guest::Allocator& alloc, const VpcImage& img, uint64_t* limit) {
    const VpcDynamicHeader& h = img.header;
    uint64_t lim = dev.size() - VPC_FOOTER_SIZE;
    if (img.footer.data_offset > h.table_offset && img.footer.data_offset < lim)
        lim = img.footer.data_offset;
    for (const VpcParentLocator& p : h.parent_locators) {
        const bool used = p.platform_code[0] | p.platform_code[1] | p.platform_code[2] | p.platform_code[3];
        if (used && p.data_offset > h.table_offset && p.data_offset < lim)
            lim = p.data_offset;
    }
    guest::ScopedBuffer chunk(alloc, BAT_CHUNK);
    if (!chunk.p)
        return Status::NoMemory;
    const uint64_t bat_bytes = static_cast<uint64_t>(h.max_table_entries) * 4;
    for (uint64_t done = 0; done < bat_bytes;) {
        const size_t n = bat_bytes - done < BAT_CHUNK ? static_cast<size_t>(bat_bytes - done) : BAT_CHUNK;
        const Status st = dev.read(h.table_offset + done, chunk.p, n);
        if (st != Status::Ok)
            return st;
        for (size_t i = 0; i + 4 <= n; i += 4) {
            const uint32_t e = load_be32(chunk.p + i);
            const uint64_t at = static_cast<uint64_t>(e) * 512;
            if (e != VPC_BAT_UNUSED && at > h.table_offset && at < lim)
                lim = at;
        }
        done += n;
    }
    *limit = lim;
    return Status::Ok;
}

// Zeros what the block holding `from` keeps past `from` (up to `to` or the block's end), so a
// grown area reads as zeros even where an earlier shrink left data behind.
Status zero_tail(guest::SizedDevice& dev, guest::Allocator& alloc, const VpcImage& img, uint64_t from, uint64_t to) {
    const VpcDynamicHeader& h = img.header;
    if (from % h.block_size == 0)
        return Status::Ok;
    const uint64_t index = from / h.block_size;
    if (index >= h.max_table_entries)
        return Status::Ok;
    uint8_t e[4];
    Status st = dev.read(h.table_offset + index * 4, e, sizeof e);
    if (st != Status::Ok)
        return st;
    const uint32_t sector = load_be32(e);
    if (sector == VPC_BAT_UNUSED)
        return Status::Ok;
    uint64_t end = (index + 1) * h.block_size;
    if (to < end)
        end = to;
    const uint64_t data = static_cast<uint64_t>(sector) * 512 + img.bitmap_size;
    const uint64_t in_block = from - index * h.block_size;
    return vpc_write_fill(dev, alloc, data + in_block, end - from, 0);
}

Status resize_dynamic(guest::SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const VpcImage& img,
                      uint64_t size, const VpcGeometry& g, uint64_t parent_end) {
    const VpcDynamicHeader& h = img.header;
    const uint64_t entries64 = (size + h.block_size - 1) / h.block_size;
    if (entries64 > RESIZE_MAX_TABLE_ENTRIES)
        return Status::TooLarge;
    const auto entries = static_cast<uint32_t>(entries64);
    uint8_t footer[VPC_FOOTER_SIZE];
    uint8_t header[VPC_DYNAMIC_HEADER_SIZE];
    Status st = dev.read(0, footer, sizeof footer);
    if (st == Status::Ok)
        st = dev.read(img.footer.data_offset, header, sizeof header);
    if (st != Status::Ok)
        return st;
    patch_footer(footer, size, g);
    const uint64_t trailing = dev.size() - VPC_FOOTER_SIZE;
    // What the grow exposes reads as zeros (vpc_resize_expose.h); new blocks move the trailing footer.
    VpcExpose expose{h.table_offset, h.max_table_entries, h.block_size, img.bitmap_size, img.virtual_size, size,
                     parent_end};
    uint64_t footer_at = trailing;

    if (entries <= h.max_table_entries) {
        // Shrink (or a grow within the table): the footer is the switch; then the entries past the
        // new end are cleared and the table cut, leaving their blocks as unused space.
        if (size > img.virtual_size) {
            st = zero_tail(dev, alloc, img, img.virtual_size, size);
            if (st == Status::Ok)
                st = vpc_expose_zeros(dev, host, alloc, expose, &footer_at);
            if (st == Status::Ok)
                st = dev.flush(host);
        }
        if (st == Status::Ok)
            st = dev.write(0, footer, sizeof footer);
        if (st == Status::Ok)
            st = dev.write(footer_at, footer, sizeof footer);
        if (st == Status::Ok)
            st = dev.flush(host);
        if (st != Status::Ok || entries == h.max_table_entries)
            return st;
        // The blocks of entries [entries, max) are emptied (qemu allocates new blocks at the end of
        // what the table references and does not zero them, so space it may reuse must read as
        // zeros) and their entries marked unused.
        st = vpc_drop_blocks(dev, alloc, expose, entries, h.max_table_entries);
        if (st == Status::Ok)
            st = dev.flush(host);
        if (st != Status::Ok)
            return st;
        store_be32(header + offsetof(VpcDynamicHeaderDisk, max_table_entries), entries);
        store_be32(header + offsetof(VpcDynamicHeaderDisk, checksum), header_checksum(header));
        st = dev.write(img.footer.data_offset, header, sizeof header);
        if (st == Status::Ok)
            st = dev.flush(host);
        // qemu takes the space past the table's (sector-rounded) end as free when the table is the
        // file's last structure: what the cut entries held there must read as zeros.
        const uint64_t kept = (h.table_offset + static_cast<uint64_t>(entries) * 4 + 511) & ~uint64_t{511};
        const uint64_t old_end = (h.table_offset + static_cast<uint64_t>(h.max_table_entries) * 4 + 511) & ~uint64_t{511};
        if (st == Status::Ok && old_end > kept)
            st = vpc_write_fill(dev, alloc, kept, old_end - kept, 0);
        return st;
    }

    // Grow: new entries unused, in place when the table has room, else a copy after the trailing
    // footer (which stays valid until the new one is written past the copy).
    st = zero_tail(dev, alloc, img, img.virtual_size, size);
    if (st != Status::Ok)
        return st;
    uint64_t limit = 0;
    st = bat_room(dev, alloc, img, &limit);
    if (st != Status::Ok)
        return st;
    const uint64_t old_bytes = static_cast<uint64_t>(h.max_table_entries) * 4;
    const uint64_t new_bytes = static_cast<uint64_t>(entries) * 4;
    uint64_t table = h.table_offset;
    uint64_t new_trailing = trailing;
    if (h.table_offset + new_bytes <= limit) {
        st = vpc_write_fill(dev, alloc, h.table_offset + old_bytes, new_bytes - old_bytes, 0xFF);
    } else {
        table = trailing + VPC_FOOTER_SIZE;
        const uint64_t table_space = (new_bytes + 511) & ~uint64_t{511};
        new_trailing = table + table_space;
        guest::ScopedBuffer chunk(alloc, BAT_CHUNK);
        if (!chunk.p)
            return Status::NoMemory;
        for (uint64_t done = 0; done < old_bytes && st == Status::Ok;) {
            const size_t n = old_bytes - done < BAT_CHUNK ? static_cast<size_t>(old_bytes - done) : BAT_CHUNK;
            st = dev.read(h.table_offset + done, chunk.p, n);
            if (st == Status::Ok)
                st = dev.write(table + done, chunk.p, n);
            done += n;
        }
        if (st == Status::Ok)
            st = vpc_write_fill(dev, alloc, table + old_bytes, table_space - old_bytes, 0xFF);
        if (st == Status::Ok)
            st = dev.write(new_trailing, footer, sizeof footer); // the new size's footer, not yet in use
    }
    footer_at = new_trailing;
    expose.table = table;
    if (st == Status::Ok)
        st = vpc_expose_zeros(dev, host, alloc, expose, &footer_at);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st != Status::Ok)
        return st;
    store_be64(header + offsetof(VpcDynamicHeaderDisk, table_offset), table);
    store_be32(header + offsetof(VpcDynamicHeaderDisk, max_table_entries), entries);
    store_be32(header + offsetof(VpcDynamicHeaderDisk, checksum), header_checksum(header));
    st = dev.write(img.footer.data_offset, header, sizeof header);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok)
        st = dev.write(0, footer, sizeof footer); // the switch: qemu reads this copy
    if (st == Status::Ok)
        st = dev.write(footer_at, footer, sizeof footer);
    if (st == Status::Ok && new_trailing != trailing) {
        // The old trailing footer now lies between the blocks and the table: wipe its cookie.
        static constexpr uint8_t zeros[VPC_FOOTER_SIZE] = {};
        st = dev.flush(host);
        if (st == Status::Ok)
            st = dev.write(trailing, zeros, sizeof zeros);
    }
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
    VpcImage img;
    const char* why = nullptr;
    Status st = vpc_load(dev, *req.allocator, &img, &why);
    if (st != Status::Ok)
        return refuse(host, st, why != nullptr ? why : "Could not open the image");
    uint64_t size;
    VpcGeometry g;
    st = new_geometry(img, args.new_size, &size, &g);
    if (st == Status::TooLarge)
        return refuse(host, st, "Disk size is too large, max size is 2040 GiB");
    if (st != Status::Ok)
        return refuse(host, st, "Invalid image size specified. Must be between 0 and 9223372036854775807.");
    if (size < img.virtual_size && (args.flags & guest::RESIZE_SHRINK) == 0)
        return refuse(host, Status::Invalid, "Use the --shrink option to perform a shrink operation.");
    if (size == img.virtual_size)
        return Status::Ok;
    if (!img.dynamic) {
        if (img.footer.data_offset != VPC_NO_DATA_OFFSET && img.footer.data_offset < dev.size())
            return refuse(host, Status::Unsupported, "vpc: a fixed disk with a data offset cannot be resized");
        if (img.virtual_size != dev.size() - VPC_FOOTER_SIZE)
            return refuse(host, Status::Unsupported,
                          "vpc: a fixed disk whose data area differs from its size cannot be resized");
        return resize_fixed(dev, host, img, size, g, static_cast<guest::Prealloc>(args.prealloc));
    }
    if ((args.flags & guest::RESIZE_PREALLOC_GIVEN) != 0 && args.prealloc != 0)
        return refuse(host, Status::Unsupported, "Unsupported preallocation mode for dynamic vpc images");
    // A differencing disk's parent must not show in the grown area where it reaches past the old
    // end (qemu zeroes a qcow2 overlay's grown area then, bdrv_co_truncate).
    uint64_t parent_end = 0;
    if (img.footer.disk_type == VHD_DIFFERENCING) {
        parent_end = img.virtual_size;
        if ((args.flags & guest::RESIZE_HAS_BACKING) != 0 && args.backing_size > parent_end)
            parent_end = args.backing_size < size ? args.backing_size : size;
    }
    return resize_dynamic(dev, host, *req.allocator, img, size, g, parent_end);
}

} // namespace instar::vpc
