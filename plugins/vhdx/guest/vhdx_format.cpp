// The VHDX format's guest half: the open sequence of qemu's block/vhdx.c, without writing.
#include "vhdx_format.h"

#include "vhdx_bat.h"
#include "vhdx_bytes.h"
#include "vhdx_header.h"
#include "vhdx_log.h"
#include "vhdx_metadata.h"
#include "vhdx_parent_locator.h"
#include "vhdx_region_table.h"

namespace instar::vhdx {

using guest::Status;

namespace {

// MS-VHDX 2.6.2.2: the largest virtual disk is 64 TiB (qemu-img create enforces the same).
constexpr uint64_t VHDX_MAX_VIRTUAL_SIZE = 64ull << 40;
// The messages below print these limits as literals.
static_assert(VHDX_LOG_SCAN_BUDGET == 268435456 && VHDX_PARENT_LOCATOR_MAX_SIZE == 65536 &&
              guest::INFO_MAX_STRING == 4096);

} // namespace

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    uint8_t sig[8];
    if (dev.size() < sizeof sig || dev.read(0, sig, sizeof sig) != Status::Ok)
        return Status::Ok;
    *match = same_bytes(sig, VHDX_FILE_SIGNATURE, 8);
    return Status::Ok;
}

namespace {

// qemu fails vhdx_open with a bare errno for everything but the headers and the log; qemu-img then
// prints bdrv_open's "Could not open 'NAME': " + strerror (the host fills in {image}).
constexpr const char* QEMU_EINVAL = "Could not open '{image}': Invalid argument";
constexpr const char* QEMU_ENOTSUP = "Could not open '{image}': Operation not supported";

Status load(guest::BlockDevice& dev, guest::Allocator& alloc, VhdxImage* out, const char** why);

} // namespace

Status vhdx_load(guest::BlockDevice& dev, guest::Allocator& alloc, VhdxImage* out, const char** why) {
    const char* ignored = nullptr;
    if (why == nullptr)
        why = &ignored;
    *why = nullptr;
    const Status st = load(dev, alloc, out, why);
    if (st != Status::Ok && *why == nullptr) {
        if (st == Status::Corrupt || st == Status::Invalid)
            *why = QEMU_EINVAL;
        else if (st == Status::Unsupported)
            *why = QEMU_ENOTSUP; // an unknown required region or metadata item, a 4 KiB logical sector
    }
    return st;
}

namespace {

// out->why_text: qemu's error_report line (marked to print first, with the program's name), then
// its "Could not open" error.
const char* reported(VhdxImage* out, const VhdxReport& line) {
    char* p = out->why_text;
    *p++ = '\x01';
    for (uint32_t i = 0; i < line.len; ++i)
        *p++ = line.text[i];
    *p++ = '\n';
    for (const char* q = QEMU_EINVAL; *q != 0; ++q)
        *p++ = *q;
    *p = 0;
    return out->why_text;
}

Status load(guest::BlockDevice& dev, guest::Allocator& alloc, VhdxImage* out, const char** why) {
    *out = VhdxImage{};
    uint8_t sig[8];
    Status st = read_at(dev, VHDX_FILE_IDENTIFIER_OFFSET, sig, sizeof sig);
    if (st != Status::Ok)
        return st;
    if (!same_bytes(sig, VHDX_FILE_SIGNATURE, 8))
        return Status::Corrupt;
    VhdxHeader& header = out->header;
    if ((st = vhdx_read_current_header(dev, alloc, &header)) != Status::Ok) {
        if (st == Status::Corrupt)
            *why = "No valid VHDX header found";
        return st;
    }
    if ((st = vhdx_log_check(dev, alloc, header)) != Status::Ok) {
        if (st == Status::TooLarge) // qemu has no such bound: name instar's
            *why = "The VHDX log entries to check exceed instar's limit VHDX_LOG_SCAN_BUDGET (268435456 bytes)";
        if (st == Status::Unsupported) {
            // qemu-img's words for a read-only open of an image with a log to replay.
            *why = "VHDX image file '{image}' opened read-only, but contains a log that needs to be replayed\n"
                   "To replay the log, run:\n"
                   "qemu-img check -r all '{image}'";
        }
        return st;
    }
    VhdxRegions& regions = out->regions;
    {
        Buffer table(alloc, VHDX_REGION_TABLE_SIZE);
        if (!table.p)
            return Status::NoMemory;
        if ((st = read_at(dev, VHDX_REGION_TABLE_OFFSET, table.p, VHDX_REGION_TABLE_SIZE)) != Status::Ok)
            return st;
        VhdxReport overlap;
        if ((st = vhdx_region_table_parse(table.p, VHDX_REGION_TABLE_SIZE, header.log_offset, header.log_length,
                                          &regions, &overlap)) != Status::Ok) {
            if (overlap.len != 0)
                *why = reported(out, overlap);
            return st;
        }
    }
    VhdxMetadata& meta = out->meta;
    if ((st = vhdx_metadata_read(dev, alloc, regions.metadata, &meta)) != Status::Ok)
        return st;
    if (meta.virtual_disk_size > VHDX_MAX_VIRTUAL_SIZE) {
        *why = QEMU_EINVAL; // qemu's limit too (vhdx_parse_metadata)
        return Status::TooLarge;
    }
    VhdxReport bat_report;
    if ((st = vhdx_bat_check(dev, alloc, header, regions, meta, &bat_report)) != Status::Ok) {
        if (st == Status::Corrupt)
            // qemu error_reports the entry first ("VHDX BAT entry N end offset ... points after end of
            // file ...", "VHDX region A-B overlaps ..."), then fails the open with -EINVAL.
            *why = bat_report.len != 0 ? reported(out, bat_report) : QEMU_EINVAL;
        return st;
    }
    out->virtual_size = (meta.virtual_disk_size >> 9) << 9;
    return Status::Ok;
}

} // namespace

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    VhdxImage img;
    const char* why = nullptr;
    Status st = vhdx_load(*req.image, *req.allocator, &img, &why);
    if (st != Status::Ok) {
        if (why != nullptr) {
            size_t n = 0;
            while (why[n] != 0)
                ++n;
            sink.reason(why, n);
        }
        return st;
    }
    if (img.meta.data_bits & VHDX_PARAMS_HAS_PARENT) {
        if ((st = vhdx_report_parent(*req.image, *req.allocator, img.regions.metadata, img.meta.parent_locator,
                                     sink)) != Status::Ok) {
            // qemu opens no differencing VHDX at all ("Operation not supported"); instar reports the
            // parent, within its bounds.
            if (st == Status::TooLarge) {
                static constexpr char WHY[] = "The VHDX parent locator exceeds instar's limit "
                                              "VHDX_PARENT_LOCATOR_MAX_SIZE (65536 bytes) or a path of "
                                              "INFO_MAX_STRING (4096 bytes)";
                sink.reason(WHY, sizeof WHY - 1);
            }
            return st;
        }
    }
    sink.format("vhdx");
    sink.virtual_size(img.virtual_size);
    sink.cluster_size(img.meta.block_size);
    sink.dirty(false);
    return Status::Ok;
}

} // namespace instar::vhdx
