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
constexpr uint32_t BAT_UNUSED = 0xFFFFFFFF;
constexpr size_t BAT_CHUNK = 4096; // bytes of BAT read at a time

// Creator applications whose footer current_size is the disk size (qemu: vpc_ignore_current_size).
bool creator_uses_current_size(const uint8_t* app) {
    static constexpr uint8_t tap[4] = {'t', 'a', 'p', 0};
    return same4(app, "win ") || same4(app, "qem2") || same4(app, "d2v ") || same4(app, "CTXS") ||
           (app[0] == tap[0] && app[1] == tap[1] && app[2] == tap[2] && app[3] == tap[3]);
}

using Buffer = guest::ScopedBuffer;

// qemu's words for a refused image (vpc_open's error_setg), sent as the reason before failing.
class Why {
public:
    explicit Why(guest::InfoSink& sink) : sink_(sink) {}
    Why& s(const char* t) {
        for (size_t i = 0; t[i] != 0; ++i)
            put(t[i]);
        return *this;
    }
    Why& i(int64_t v) {
        uint64_t m = static_cast<uint64_t>(v);
        if (v < 0) {
            put('-');
            m = ~m + 1;
        }
        char d[20];
        size_t n = 0;
        do {
            d[n++] = static_cast<char>('0' + m % 10);
            m /= 10;
        } while (m != 0);
        while (n > 0)
            put(d[--n]);
        return *this;
    }
    Status fail(Status st) {
        sink_.reason(text_, len_);
        return st;
    }

private:
    void put(char c) {
        if (len_ < sizeof text_)
            text_[len_++] = c;
    }
    guest::InfoSink& sink_;
    char text_[128] = {};
    size_t len_ = 0;
};

// qemu's truncation check: no allocated block (bitmap + data) may end past the end of the file.
Status check_bat(guest::BlockDevice& dev, guest::Allocator& alloc, const VpcDynamicHeader& h, guest::InfoSink& sink) {
    const uint64_t bat_bytes = static_cast<uint64_t>(h.max_table_entries) * 4;
    uint64_t bat_end;
    if (!add_u64(h.table_offset, bat_bytes, &bat_end) || bat_end > dev.size())
        return Status::Corrupt;
    const uint64_t bitmap_size = ((h.block_size / (8 * 512)) + 511) & ~uint64_t{511};
    uint64_t free_offset = (bat_end + 511) & ~uint64_t{511};
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
            if (e == BAT_UNUSED)
                continue;
            const uint64_t next = 512 * static_cast<uint64_t>(e) + bitmap_size + h.block_size;
            if (next > free_offset)
                free_offset = next;
        }
        done += n;
    }
    if (free_offset > dev.size())
        return Why(sink)
            .s("block-vpc: free_data_block_offset points after the end of file. The image has been truncated.")
            .fail(Status::Corrupt);
    return Status::Ok;
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

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    guest::BlockDevice& dev = *req.image;
    if (dev.size() < VPC_FOOTER_SIZE)
        return Status::Corrupt;
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
        if (!vpc_footer_has_cookie(raw) || load_be32(raw + offsetof(VpcFooterDisk, disk_type)) != VHD_FIXED)
            return Why(sink).s("invalid VPC image").fail(Status::Corrupt);
    }
    if (load_be32(raw + offsetof(VpcFooterDisk, checksum)) != vpc_footer_checksum(raw))
        return Why(sink).s("Incorrect header checksum").fail(Status::Corrupt);
    VpcFooter footer;
    st = vpc_footer_parse(raw, sizeof raw, &footer);
    if (st != Status::Ok)
        return st;

    uint64_t sectors = static_cast<uint64_t>(footer.cylinders) * footer.heads * footer.sectors_per_track;
    if (creator_uses_current_size(footer.creator_application) || sectors == VHD_MAX_GEOMETRY)
        sectors = footer.current_size / 512;
    if (sectors > VHD_MAX_SECTORS) // qemu fails the open with EFBIG and no message of its own
        return Why(sink).s("File too large").fail(Status::TooLarge);

    uint32_t block_size = 0;
    if (dynamic) {
        uint8_t hraw[VPC_DYNAMIC_HEADER_SIZE];
        uint64_t end;
        if (!add_u64(footer.data_offset, sizeof hraw, &end) || end > dev.size())
            return Status::Corrupt;
        st = dev.read(footer.data_offset, hraw, sizeof hraw);
        if (st != Status::Ok)
            return st;
        if (!same_bytes(hraw, VPC_DYNAMIC_COOKIE, 8))
            return Why(sink).s("Invalid header magic").fail(Status::Corrupt);
        const uint32_t raw_block_size = load_be32(hraw + offsetof(VpcDynamicHeaderDisk, block_size));
        if (raw_block_size < 512 || (raw_block_size & (raw_block_size - 1)) != 0)
            return Why(sink).s("Invalid block size ").i(raw_block_size).fail(Status::Corrupt);
        VpcDynamicHeader h;
        st = vpc_dynamic_header_parse(hraw, sizeof hraw, &h);
        if (st != Status::Ok)
            return st;
        if (sectors * 512 / h.block_size > 0xffffffffu)
            return Why(sink).s("Too many blocks").fail(Status::Corrupt);
        if (static_cast<uint64_t>(h.max_table_entries) * h.block_size < sectors * 512)
            return Why(sink).s("Page table too small").fail(Status::Corrupt);
        if (h.max_table_entries > VPC_QEMU_MAX_TABLE_ENTRIES) // qemu prints it as an int32
            return Why(sink).s("Max Table Entries too large (").i(static_cast<int32_t>(h.max_table_entries)).s(")")
                .fail(Status::Corrupt);
        if (h.max_table_entries > VPC_MAX_TABLE_ENTRIES)
            return Why(sink).s("Max Table Entries ").i(h.max_table_entries)
                .s(" exceeds instar's limit VPC_MAX_TABLE_ENTRIES (").i(VPC_MAX_TABLE_ENTRIES).s(")")
                .fail(Status::TooLarge);
        st = check_bat(dev, *req.allocator, h, sink);
        if (st != Status::Ok)
            return st;
        block_size = h.block_size;
        if (footer.disk_type == VHD_DIFFERENCING) {
            st = vpc_report_parent(dev, *req.allocator, h, sink);
            if (st != Status::Ok)
                return st;
        }
    }

    sink.format("vpc");
    sink.virtual_size(sectors * 512);
    // qemu reports the block size as cluster size for every disk whose footer type is not fixed.
    if (footer.disk_type != VHD_FIXED && block_size != 0)
        sink.cluster_size(block_size);
    sink.dirty(false);
    return Status::Ok;
}

} // namespace instar::vpc
