// The VHD format's guest half: probe and `info`, following qemu's block/vpc.c open rules.
#include <instar/guest/format_util.h>
#include "vpc_format.h"

#include "vpc_bytes.h"
#include "vpc_dynamic_header.h"
#include "vpc_footer.h"
#include "vpc_geometry.h"
#include "vpc_parent.h"

namespace instar::vpc {

using guest::Status;

namespace {

// Largest block allocation table scanned: 16 Mi entries (64 MiB) covers 2040 GiB with blocks of
// 128 KiB; every known writer (Virtual PC, Hyper-V, qemu) uses 2 MiB blocks.
constexpr uint32_t VPC_MAX_TABLE_ENTRIES = 1u << 24;
// qemu's own bound on max_table_entries (it allocates entries * 4 bytes as an int).
constexpr uint32_t VPC_QEMU_MAX_TABLE_ENTRIES = 0x7fffffff / 4;
// Bytes of BAT read at a time by the open-time truncation check: each read is a hypercall, so a
// 2 TiB disk's 4 MiB BAT takes 128 reads, not 1024 (vhdx_bat.h has the same reason). The buffer is
// freed before the reader allocates its own (whose peak the unit tests bound below 64 KiB).
constexpr size_t BAT_CHUNK = 32 * 1024;

// Creator applications whose footer current_size is the disk size (qemu: vpc_ignore_current_size).
bool creator_uses_current_size(const uint8_t* app) {
    static constexpr uint8_t tap[4] = {'t', 'a', 'p', 0};
    return same4(app, "win ") || same4(app, "qem2") || same4(app, "d2v ") || same4(app, "CTXS") ||
           (app[0] == tap[0] && app[1] == tap[1] && app[2] == tap[2] && app[3] == tap[3]);
}

using Buffer = guest::ScopedBuffer;

// Appends `tail` to the NUL-terminated text in `buf` (cut to fit).
void append(char* buf, size_t cap, const char* tail) {
    size_t n = 0;
    while (buf[n] != 0)
        ++n;
    for (size_t i = 0; tail[i] != 0 && n + 1 < cap; ++i)
        buf[n++] = tail[i];
    buf[n] = 0;
}

// `prefix` followed by `v` in decimal, in `buf` (cut to fit, NUL-terminated).
const char* with_number(char* buf, size_t cap, const char* prefix, uint32_t v) {
    size_t n = 0;
    for (; prefix[n] != 0 && n + 1 < cap; ++n)
        buf[n] = prefix[n];
    char digits[10];
    size_t k = 0;
    do {
        digits[k++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (k > 0 && n + 1 < cap)
        buf[n++] = digits[--k];
    buf[n] = 0;
    return buf;
}

// qemu's truncation check: no allocated block (bitmap + data) may end past the end of the file.
// The same pass notes which parent locators' data a block covers (*covered, bit per locator).
Status check_bat(guest::BlockDevice& dev, guest::Allocator& alloc, const VpcDynamicHeader& h, uint64_t* free_out,
                 uint8_t* covered) {
    const uint64_t bat_bytes = static_cast<uint64_t>(h.max_table_entries) * 4;
    uint64_t bat_end;
    if (!add_u64(h.table_offset, bat_bytes, &bat_end) || bat_end > dev.size())
        return Status::Corrupt;
    const uint64_t bitmap_size = vpc_bitmap_size(h.block_size);
    uint64_t free_offset = (bat_end + 511) & ~uint64_t{511};
    // The locators that hold data (a dynamic disk has none), as [start, end) ranges.
    uint64_t loc_start[VPC_PARENT_LOCATOR_COUNT], loc_end[VPC_PARENT_LOCATOR_COUNT];
    uint32_t loc_index[VPC_PARENT_LOCATOR_COUNT], locs = 0;
    for (uint32_t k = 0; k < VPC_PARENT_LOCATOR_COUNT; ++k) {
        const VpcParentLocator& l = h.parent_locators[k];
        if (l.data_length != 0 && add_u64(l.data_offset, l.data_length, &loc_end[locs])) {
            loc_start[locs] = l.data_offset;
            loc_index[locs++] = k;
        }
    }
    Buffer chunk(alloc, BAT_CHUNK);
    if (!chunk.p)
        return Status::NoMemory;
    for (uint64_t done = 0; done < bat_bytes;) {
        const uint64_t n = bat_bytes - done < BAT_CHUNK ? bat_bytes - done : BAT_CHUNK;
        const Status st = dev.read(h.table_offset + done, chunk.p, n);
        if (st != Status::Ok)
            return st;
        for (uint64_t i = 0; i + 4 <= n; i += 4) {
            const uint32_t e = load_be32(chunk.p + i);
            if (e == VPC_BAT_UNUSED)
                continue;
            const uint64_t start = 512 * static_cast<uint64_t>(e);
            const uint64_t next = start + bitmap_size + h.block_size;
            if (next > free_offset)
                free_offset = next;
            for (uint32_t k = 0; k < locs; ++k)
                if (start < loc_end[k] && loc_start[k] < next)
                    *covered |= static_cast<uint8_t>(1u << loc_index[k]);
        }
        done += n;
    }
    *free_out = free_offset;
    return free_offset > dev.size() ? Status::Corrupt : Status::Ok;
}

} // namespace

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    if (dev.size() < VPC_FOOTER_SIZE)
        return Status::Ok;
    uint8_t buf[VPC_FOOTER_SIZE];
    if (dev.read(0, buf, sizeof buf) != Status::Ok)
        return Status::Ok;
    if (vpc_footer_has_cookie(buf)) {
        *match = true;
        return Status::Ok;
    }
    if (dev.read(dev.size() - VPC_FOOTER_SIZE, buf, sizeof buf) != Status::Ok)
        return Status::Ok;
    *match = vpc_footer_has_cookie(buf) && load_be32(buf + offsetof(VpcFooterDisk, disk_type)) == VHD_FIXED;
    return Status::Ok;
}

Status vpc_load(guest::BlockDevice& dev, guest::Allocator& alloc, VpcImage* out, const char** why) {
    const char* ignored = nullptr;
    if (why == nullptr)
        why = &ignored;
    *why = nullptr;
    *out = VpcImage{};
    if (dev.size() < VPC_FOOTER_SIZE) {
        *why = "invalid VPC image";
        return Status::Corrupt;
    }
    uint8_t raw[VPC_FOOTER_SIZE];
    Status st = dev.read(0, raw, sizeof raw);
    if (st != Status::Ok)
        return st;
    // qemu: a footer copy at offset 0 means a dynamic disk (whatever its type field says);
    // otherwise the footer at the end must be a fixed disk's.
    const bool dynamic = vpc_footer_has_cookie(raw);
    if (!dynamic) {
        st = dev.read(dev.size() - VPC_FOOTER_SIZE, raw, sizeof raw);
        if (st != Status::Ok)
            return st;
        if (!vpc_footer_has_cookie(raw) || load_be32(raw + offsetof(VpcFooterDisk, disk_type)) != VHD_FIXED) {
            *why = "invalid VPC image";
            return Status::Corrupt;
        }
    }
    VpcFooter& footer = out->footer;
    st = vpc_footer_parse(raw, sizeof raw, &footer);
    if (st != Status::Ok) {
        if (st == Status::Corrupt)
            *why = "Incorrect header checksum";
        return st;
    }

    uint64_t sectors = static_cast<uint64_t>(footer.cylinders) * footer.heads * footer.sectors_per_track;
    if (creator_uses_current_size(footer.creator_application) || sectors == VHD_MAX_GEOMETRY)
        sectors = footer.current_size / 512;
    if (sectors > VHD_MAX_SECTORS) {
        *why = "File too large";
        return Status::TooLarge;
    }
    out->dynamic = dynamic;
    out->virtual_size = sectors * 512;

    if (dynamic) {
        uint8_t hraw[VPC_DYNAMIC_HEADER_SIZE];
        uint64_t end;
        if (!add_u64(footer.data_offset, sizeof hraw, &end) || end > dev.size()) {
            *why = "Invalid header magic";
            return Status::Corrupt;
        }
        st = dev.read(footer.data_offset, hraw, sizeof hraw);
        if (st != Status::Ok)
            return st;
        VpcDynamicHeader& h = out->header;
        st = vpc_dynamic_header_parse(hraw, sizeof hraw, &h);
        if (st != Status::Ok) {
            if (st == Status::Corrupt)
                *why = same_bytes(hraw, VPC_DYNAMIC_COOKIE, 8)
                           ? with_number(out->message, sizeof out->message, "Invalid block size ",
                                         load_be32(hraw + offsetof(VpcDynamicHeaderDisk, block_size)))
                           : "Invalid header magic";
            return st;
        }
        // qemu: "Too many blocks", "Page table too small", "Max Table Entries too large".
        if (sectors * 512 / h.block_size > 0xffffffffu) {
            *why = "Too many blocks";
            return Status::Corrupt;
        }
        if (static_cast<uint64_t>(h.max_table_entries) * h.block_size < sectors * 512) {
            *why = "Page table too small";
            return Status::Corrupt;
        }
        if (h.max_table_entries > VPC_QEMU_MAX_TABLE_ENTRIES) {
            // qemu prints the count as an int32: a count past 2^31 comes out negative.
            char* m = out->message;
            const auto v = static_cast<int32_t>(h.max_table_entries);
            with_number(m, sizeof out->message, v < 0 ? "Max Table Entries too large (-" : "Max Table Entries too large (",
                        v < 0 ? 0u - static_cast<uint32_t>(v) : static_cast<uint32_t>(v));
            append(m, sizeof out->message, ")");
            *why = m;
            return Status::Corrupt;
        }
        if (h.max_table_entries > VPC_MAX_TABLE_ENTRIES) {
            char* m = out->message;
            with_number(m, sizeof out->message, "Max Table Entries ", h.max_table_entries);
            append(m, sizeof out->message, " exceeds instar's limit VPC_MAX_TABLE_ENTRIES (16777216)");
            static_assert(VPC_MAX_TABLE_ENTRIES == 16777216, "the message names the limit's value");
            *why = m;
            return Status::TooLarge;
        }
        st = check_bat(dev, alloc, h, &out->free_data_block_offset, &out->covered_locators);
        if (st != Status::Ok) {
            if (st == Status::Corrupt)
                *why = "block-vpc: free_data_block_offset points after the end of file. The image has been truncated.";
            return st;
        }
        out->bitmap_size = vpc_bitmap_size(h.block_size);
    }
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    VpcImage img;
    const char* why = nullptr;
    Status st = vpc_load(*req.image, *req.allocator, &img, &why);
    if (st != Status::Ok) {
        if (why != nullptr) { // qemu's words for the refusal (vpc_open's error_setg)
            size_t n = 0;
            while (why[n] != 0)
                ++n;
            sink.reason(why, n);
        }
        return st;
    }
    if (img.dynamic && img.footer.disk_type == VHD_DIFFERENCING) {
        st = vpc_report_parent(*req.image, *req.allocator, img.header, img.covered_locators, sink);
        if (st != Status::Ok)
            return st;
    }
    sink.format("vpc");
    sink.virtual_size(img.virtual_size);
    // qemu reports the block size as cluster size for every disk whose footer type is not fixed.
    if (img.footer.disk_type != VHD_FIXED && img.dynamic)
        sink.cluster_size(img.header.block_size);
    sink.dirty(false);
    return Status::Ok;
}

} // namespace instar::vpc
