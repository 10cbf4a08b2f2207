// The VHD emitter: qemu's vpc_co_create_opts / vpc_co_create (block/vpc.c) rules and layout, plus
// differencing disks.
#include "vpc_create.h"

#include <instar/guest/format_util.h>

#include "vpc_bytes.h"
#include "vpc_create_parent.h"
#include "vpc_dynamic_header.h"
#include "vpc_footer.h"
#include "vpc_geometry.h"

namespace instar::vpc {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Status;

namespace {

constexpr uint32_t VPC_BLOCK_SIZE = 0x200000; // qemu's only block size
constexpr uint64_t VPC_HEADER_OFFSET = VPC_FOOTER_SIZE;
constexpr uint64_t VPC_BAT_OFFSET = VPC_HEADER_OFFSET + VPC_DYNAMIC_HEADER_SIZE;
// Bytes of unused BAT entries written at a time: the largest BAT (2040 GiB) is 4 MiB.
constexpr size_t VPC_BAT_WRITE_CHUNK = 64 * 1024;

struct Settings {
    uint32_t disk_type;
    bool force_size;
};

// Copies "Parameter 'subformat' does not accept value 'VALUE'" into `out` (qemu's QAPI enum error),
// cutting an absurdly long value so the text stays one reason.
void subformat_error(const char* value, char* out, size_t cap) {
    static constexpr char head[] = "Parameter 'subformat' does not accept value '";
    size_t n = 0;
    for (size_t i = 0; head[i] != 0; ++i)
        out[n++] = head[i];
    for (size_t i = 0; value[i] != 0 && n + 2 < cap; ++i)
        out[n++] = value[i];
    out[n++] = '\'';
    out[n] = 0;
}

Status parse_settings(const CreateRequest& req, CreateTarget& target, Settings* s) {
    const char* sub = guest::create_option(req, "subformat");
    if (sub == nullptr || guest::create_str_equal(sub, "dynamic")) {
        s->disk_type = VHD_DYNAMIC;
    } else if (guest::create_str_equal(sub, "fixed")) {
        s->disk_type = VHD_FIXED;
    } else {
        char text[guest::CREATE_MAX_REASON];
        subformat_error(sub, text, sizeof text);
        return guest::create_fail(target, Status::Invalid, text);
    }
    s->force_size = guest::create_option_bool(req, "force_size", false);
    return Status::Ok;
}

Status too_large(CreateTarget& target) {
    // qemu-img replaces the driver's -EFBIG message ("Disk size is too large, max size is 2040
    // GiB") with its own.
    return guest::create_fail(target, Status::TooLarge, "The image size is too large for file format 'vpc'");
}

// qemu: the size is rounded up to sectors, then (without force_size) to the next CHS geometry, and
// vpc_co_create computes the geometry again from that size, insisting it reproduces it.
Status size_and_geometry(const CreateRequest& req, CreateTarget& target, bool force_size, uint64_t* size,
                         VpcGeometry* g) {
    if (req.size > VHD_MAX_SECTORS * 512)
        return too_large(target); // also keeps the arithmetic below far from overflow
    uint64_t bytes = (req.size + 511) & ~uint64_t{511};
    uint64_t sectors;
    if (!force_size) {
        if (!vpc_rounded_size(bytes, false, g, &sectors))
            return too_large(target);
        bytes = sectors * 512;
    }
    if (!vpc_rounded_size(bytes, force_size, g, &sectors))
        return too_large(target);
    if (bytes != sectors * 512)
        return guest::create_fail(target, Status::Invalid,
                                  "The requested image size cannot be represented in CHS geometry");
    *size = bytes;
    return Status::Ok;
}

// True when qemu's CHS rounding keeps `size` (in whole sectors) as it is. A differencing disk must
// have its parent's size, so unless the user chose force_size, a size the geometry cannot express
// is kept exactly, as force_size=on does.
bool chs_exact(uint64_t size) {
    if (size > VHD_MAX_SECTORS * 512)
        return true; // refused below either way
    const uint64_t bytes = (size + 511) & ~uint64_t{511};
    VpcGeometry g;
    uint64_t sectors;
    return vpc_rounded_size(bytes, false, &g, &sectors) && sectors * 512 == bytes;
}

// qemu_uuid_generate: random bytes with the version 4 and RFC 4122 variant bits.
void random_uuid(const uint8_t* random, uint8_t* out) {
    __builtin_memcpy(out, random, 16);
    out[6] = static_cast<uint8_t>((out[6] & 0x0f) | 0x40);
    out[8] = static_cast<uint8_t>((out[8] & 0x3f) | 0x80);
}

Status write_bat(CreateTarget& target, guest::Allocator& alloc, uint64_t bytes) {
    guest::ScopedBuffer chunk(alloc, VPC_BAT_WRITE_CHUNK);
    if (!chunk.p)
        return Status::NoMemory;
    __builtin_memset(chunk.p, 0xFF, VPC_BAT_WRITE_CHUNK);
    for (uint64_t done = 0; done < bytes;) {
        const size_t n = bytes - done < VPC_BAT_WRITE_CHUNK ? static_cast<size_t>(bytes - done) : VPC_BAT_WRITE_CHUNK;
        const Status st = target.image().write(VPC_BAT_OFFSET + done, chunk.p, n);
        if (st != Status::Ok)
            return st;
        done += n;
    }
    return Status::Ok;
}

// qemu's create_dynamic_disk: footer copy at 0, header at 512, BAT at 1536 (whole sectors of unused
// entries), footer after it. A differencing disk adds its parent locator data between the BAT and
// the footer.
Status create_dynamic(const CreateRequest& req, CreateTarget& target, const VpcFooter& f, uint64_t sectors,
                      VpcCreated* out) {
    constexpr uint64_t sectors_per_block = VPC_BLOCK_SIZE / 512;
    VpcDynamicHeader h{};
    h.table_offset = VPC_BAT_OFFSET;
    h.max_table_entries = static_cast<uint32_t>((sectors + sectors_per_block - 1) / sectors_per_block);
    h.block_size = VPC_BLOCK_SIZE;
    const uint64_t bat_bytes = (static_cast<uint64_t>(h.max_table_entries) * 4 + 511) & ~uint64_t{511};
    uint64_t end = VPC_BAT_OFFSET + bat_bytes;
    if (f.disk_type == VHD_DIFFERENCING) {
        const Status st = vpc_create_parent(req, target, end, &h, &end);
        if (st != Status::Ok)
            return st;
    }
    uint8_t footer[VPC_FOOTER_SIZE];
    vpc_footer_build(f, footer);
    uint8_t header[VPC_DYNAMIC_HEADER_SIZE];
    vpc_dynamic_header_build(h, header);
    Status st = target.image().write(0, footer, sizeof footer);
    if (st == Status::Ok)
        st = target.image().write(VPC_HEADER_OFFSET, header, sizeof header);
    if (st == Status::Ok)
        st = write_bat(target, *req.allocator, bat_bytes);
    if (st == Status::Ok)
        st = target.image().write(end, footer, sizeof footer);
    if (st == Status::Ok) {
        target.resolved_unit_size(VPC_BLOCK_SIZE);
        out->footer_offset = end;
        out->bat_offset = VPC_BAT_OFFSET;
        out->max_table_entries = h.max_table_entries;
        out->block_size = h.block_size;
        __builtin_memcpy(out->footer, footer, sizeof footer);
    }
    return st;
}

// qemu's file protocol, growing an empty file without preallocation, writes zeros over its first
// block "to optimize future alignment probing" (file-posix.c allocate_first_block): 4 KiB
// (MAX_BLOCKSIZE), or one sector when the new length is below that. `du` counts that block.
constexpr uint64_t FILE_FIRST_BLOCK = 4096;
constexpr uint64_t FILE_SECTOR = 512;

// qemu's create_fixed_disk: the data area is a hole (but for the file protocol's first block), the
// footer follows it.
Status create_fixed(CreateTarget& target, const VpcFooter& f, VpcCreated* out) {
    uint8_t footer[VPC_FOOTER_SIZE];
    vpc_footer_build(f, footer);
    const uint64_t length = f.current_size + VPC_FOOTER_SIZE;
    Status st = target.set_length(target.image(), length, guest::Prealloc::Off);
    if (st == Status::Ok) {
        static constexpr uint8_t zeros[FILE_FIRST_BLOCK] = {};
        st = target.image().write(0, zeros, length < FILE_FIRST_BLOCK ? FILE_SECTOR : FILE_FIRST_BLOCK);
    }
    if (st == Status::Ok)
        st = target.image().write(f.current_size, footer, sizeof footer);
    if (st == Status::Ok) {
        out->footer_offset = f.current_size;
        __builtin_memcpy(out->footer, footer, sizeof footer);
    }
    return st;
}

} // namespace

Status create(const CreateRequest& req, CreateTarget& target) {
    VpcCreated created;
    return create_image(req, target, &created);
}

Status create_image(const CreateRequest& req, CreateTarget& target, VpcCreated* out) {
    if (req.allocator == nullptr || req.random == nullptr)
        return Status::Invalid;
    Settings s;
    Status st = parse_settings(req, target, &s);
    if (st != Status::Ok)
        return st;
    const bool differencing = req.backing_file != nullptr && req.backing_file[0] != 0;
    if (differencing && s.disk_type == VHD_FIXED)
        return guest::create_fail(target, Status::Invalid,
                                  "Backing file not supported for subformat 'fixed': a differencing VHD is dynamic");
    if (differencing && guest::create_option(req, "force_size") == nullptr)
        s.force_size = !chs_exact(req.size);
    uint64_t size = 0;
    VpcGeometry g;
    st = size_and_geometry(req, target, s.force_size, &size, &g);
    if (st != Status::Ok)
        return st;

    VpcFooter f{};
    f.data_offset = s.disk_type == VHD_FIXED ? VPC_NO_DATA_OFFSET : VPC_HEADER_OFFSET;
    // Modulo 2^32, as qemu's cpu_to_be32(time(NULL) - VHD_TIMESTAMP_BASE); unsigned, so no clock
    // value can overflow.
    f.timestamp = static_cast<uint32_t>(static_cast<uint64_t>(req.unix_time) - VHD_TIMESTAMP_BASE);
    // "qem2" tells readers to take current_size as the size, "qemu" the geometry.
    store4(f.creator_application, s.force_size ? "qem2" : "qemu");
    f.original_size = size;
    f.current_size = size;
    f.cylinders = g.cylinders;
    f.heads = g.heads;
    f.sectors_per_track = g.sectors_per_track;
    f.disk_type = differencing ? VHD_DIFFERENCING : s.disk_type;
    random_uuid(req.random, f.unique_id);
    *out = VpcCreated{};
    out->disk_type = f.disk_type;
    out->size = size;
    if (s.disk_type == VHD_FIXED)
        return create_fixed(target, f, out);
    return create_dynamic(req, target, f, size / 512, out);
}

} // namespace instar::vpc
