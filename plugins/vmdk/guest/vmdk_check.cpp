// qemu's vmdk_co_check over the extents open_layout found: every extent's clusters in virtual order
// (a FLAT extent is one cluster at its start offset; a sparse one's grains are looked up in its grain
// directory and tables as qemu's get_cluster_offset does). The first cluster whose host offset lies
// at or past the end of its file ends the check with "points after EOF", one corruption and
// -EINVAL; a grain the directory does not cover is qemu's VMDK_ERROR (a corruption, check goes on
// to print its summary, as qemu's positive return value does).
#include "vmdk_check.h"

#include "vmdk_read.h"

#include <instar/guest/format_util.h>

namespace instar::vmdk {
namespace {

using guest::read_padded; // zeros past the end, as qemu's block layer reads
using guest::Status;

constexpr uint32_t VMDK_GTE_ZEROED = 1;

uint32_t le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}

// Grain tables of a sparse extent usually lie one after another: they are read through a window of
// VMDK_CHECK_WINDOW bytes, so a 64 TiB extent's 2 Mi tables cost thousands of device reads, not
// millions (qemu reads them one by one).
constexpr size_t VMDK_CHECK_WINDOW = 1u << 20;

struct Window {
    uint8_t* buf = nullptr;
    uint64_t start = UINT64_MAX;
    Status read(guest::BlockDevice& dev, uint64_t offset, uint8_t* dst, size_t len) {
        if (buf == nullptr || len > VMDK_CHECK_WINDOW)
            return read_padded(dev, offset, dst, len);
        if (start == UINT64_MAX || offset < start || offset - start > VMDK_CHECK_WINDOW - len) {
            if (const Status st = read_padded(dev, offset, buf, VMDK_CHECK_WINDOW); st != Status::Ok)
                return st;
            start = offset;
        }
        for (size_t i = 0; i < len; ++i)
            dst[i] = buf[offset - start + i];
        return Status::Ok;
    }
};

// 1: stop with -EINVAL (after EOF); 2: stop with VMDK_ERROR; 3: stop with VMDK_ERROR returned as
// the check's error (-1, "Operation not permitted": seSparse entries); 0: go on.
int check_sparse(const ReadExtent& e, guest::Allocator& alloc, guest::CheckSink& sink, Status* st) {
    Window window;
    window.buf = static_cast<uint8_t*>(alloc.allocate(VMDK_CHECK_WINDOW, 16)); // nullptr: direct reads
    const uint64_t w = e.sesparse ? 8 : 4; // seSparse: 8-byte directory and table entries
    const uint64_t gt_bytes = uint64_t{e.gtes} * w;
    auto* gt = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(gt_bytes ? gt_bytes : 4), 16));
    if (gt == nullptr) {
        *st = Status::NoMemory;
        return 0;
    }
    const uint64_t size = e.dev->size();
    const uint64_t grains = e.grain_bytes ? (e.bytes + e.grain_bytes - 1) / e.grain_bytes : 0;
    uint64_t loaded = UINT64_MAX;
    bool have_gt = false;
    int result = 0;
    uint64_t next = 0;
    // The grain directory is read VMDK_READ_GD_CHUNK entries at a time (as the reader does): a
    // 64 TiB extent's directory has 2 Mi entries. Entries past l1_size are never used.
    uint8_t gd[VMDK_READ_GD_CHUNK * 8];
    uint64_t gd_loaded = UINT64_MAX;
    for (uint64_t gi = 0; gi < grains && result == 0; gi = next) {
        next = gi + 1;
        const uint64_t l1_index = e.gtes ? gi / e.gtes : UINT64_MAX;
        const uint64_t sector = (e.start + gi * e.grain_bytes) / 512;
        if (l1_index >= e.l1_size) {
            guest::CheckLine().s("ERROR: could not get cluster_offset for sector ").u(sector).emit(sink);
            result = 2;
            break;
        }
        if (l1_index != loaded) {
            const uint64_t chunk = l1_index / VMDK_READ_GD_CHUNK;
            if (chunk != gd_loaded) {
                if ((*st = read_padded(*e.dev, e.gd_offset + chunk * VMDK_READ_GD_CHUNK * w, gd,
                                       static_cast<size_t>(VMDK_READ_GD_CHUNK * w))) != Status::Ok)
                    break;
                gd_loaded = chunk;
            }
            const uint8_t* gde = gd + (l1_index % VMDK_READ_GD_CHUNK) * w;
            uint64_t gt_sector = le32(gde);
            if (e.sesparse) {
                // qemu's get_cluster_offset: top 32 bits 0x10000000, a table index into the tables
                // area, the table's sector within 32 bits; else VMDK_ERROR.
                const uint64_t hi = le32(gde + 4);
                if (gt_sector != 0 || hi != 0) {
                    const uint64_t at = e.se_gt_offset + gt_sector * (gt_bytes / 512);
                    if (hi != 0x10000000u || at < e.se_gt_offset || at > 0xffffffffull) {
                        guest::CheckLine().s("ERROR: could not get cluster_offset for sector ").u(sector).emit(sink);
                        result = 3;
                        break;
                    }
                    gt_sector = at;
                }
            }
            have_gt = gt_sector != 0;
            if (have_gt && (*st = window.read(*e.dev, gt_sector * 512, gt, static_cast<size_t>(gt_bytes))) != Status::Ok)
                break;
            loaded = l1_index;
        }
        if (!have_gt) {
            next = (l1_index + 1) * e.gtes; // every grain of a missing table is unallocated
            continue;
        }
        uint64_t gte = le32(gt + (gi % e.gtes) * w);
        if (e.sesparse) {
            const uint64_t v = gte | (uint64_t{le32(gt + (gi % e.gtes) * w + 4)} << 32);
            const uint64_t kind = v >> 60;
            if (kind == 1 || kind == 2 || v == 0) // unmapped, zero, unallocated
                continue;
            uint64_t at = 0;
            const uint64_t index = ((v & 0x0fff000000000000ull) >> 48) | ((v & 0x0000ffffffffffffull) << 12);
            if (kind != 3 || __builtin_mul_overflow(index, e.grain_bytes / 512, &at) ||
                __builtin_add_overflow(at, e.se_grains_offset, &at) || at > (~uint64_t{0} >> 9)) {
                guest::CheckLine().s("ERROR: could not get cluster_offset for sector ").u(sector).emit(sink);
                result = 3;
                break;
            }
            gte = at;
        } else if (gte == 0 || (e.zero_grain && gte == VMDK_GTE_ZEROED)) {
            continue;
        }
        if (gte * 512 >= size) {
            guest::CheckLine().s("ERROR: cluster offset for sector ").u(sector).s(" points after EOF").emit(sink);
            result = 1;
        }
    }
    alloc.deallocate(gt, static_cast<size_t>(gt_bytes ? gt_bytes : 4));
    if (window.buf)
        alloc.deallocate(window.buf, VMDK_CHECK_WINDOW);
    return result;
}

} // namespace

Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* res) {
    if (!req.image || !req.allocator || !res)
        return Status::Invalid;
    *res = guest::CheckResult{};
    if (req.fix) {
        res->error = -guest::CHECK_ENOTSUP; // qemu: vmdk repairs nothing
        return Status::Ok;
    }
    const guest::OpenRequest oreq{req.image, req.files, req.file_count, req.allocator, req.codecs,
                                  nullptr,   nullptr,   req.qemu_version};
    ReadLayout layout{};
    if (const Status st = open_layout(oreq, &layout); st != Status::Ok)
        return st;
    Status st = Status::Ok;
    for (uint32_t i = 0; i < layout.count && st == Status::Ok; ++i) {
        const ReadExtent& e = layout.extents[i];
        int stop = 0;
        if (e.flat) {
            if (e.flat_offset >= e.dev->size()) {
                guest::CheckLine().s("ERROR: cluster offset for sector ").u(e.start / 512).s(" points after EOF").emit(sink);
                stop = 1;
            }
        } else {
            stop = check_sparse(e, *req.allocator, sink, &st);
        }
        if (stop) {
            res->corruptions++;
            if (stop == 1)
                res->error = -guest::CHECK_EINVAL;
            else if (stop == 3) // a seSparse entry qemu's get_cluster_offset calls VMDK_ERROR (-1)
                res->error = -1;
            break;
        }
    }
    free_layout(*req.allocator, &layout);
    return st;
}

} // namespace instar::vmdk
