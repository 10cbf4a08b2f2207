// vmdk: a delta disk's grown area reads as zeros (vmdk_resize_expose.h).
#include "vmdk_resize_expose.h"

#include <instar/guest/edit_resize.h>
#include <instar/guest/format_util.h>

#include "vmdk_bytes.h"

namespace instar::vmdk {

using guest::SizedDevice;
using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;
// Grain-table entries written at a time (bounded guest buffer).
constexpr size_t CHUNK = 64 * 1024;
// Grain-table entries are 32-bit sector numbers: a sparse file ends below 2 TiB.
constexpr uint64_t SPARSE_MAX_FILE = (uint64_t{1} << 32) * SECTOR;
// The grain table value of a zeroed grain (VMDK4_FLAG_ZERO_GRAIN).
constexpr uint32_t GTE_ZEROED = 1;

void put_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t div_up(uint64_t v, uint64_t by) { return (v + by - 1) / by; }

// The file offset of grain `g`'s entry in the tables the directory at `gd` points to (0: no table).
Status entry_at(SizedDevice& dev, const VmdkExpose& x, uint64_t gd, uint64_t g, uint64_t* at) {
    uint8_t b[4];
    const Status st = dev.read(gd + g / x.gtes_per_gt * 4, b, sizeof b);
    if (st != Status::Ok)
        return st;
    const uint64_t table = uint64_t{load_le32(b)} * SECTOR;
    *at = 0;
    if (table == 0)
        return Status::Ok;
    if (table + x.gtes_per_gt * 4 > dev.size())
        return Status::Corrupt; // a grain table outside the file
    *at = table + g % x.gtes_per_gt * 4;
    return Status::Ok;
}

// Entries of grains [first, first + count) in the directory at `gd`'s tables: GTE_ZEROED, or
// consecutive grains from sector `sector` on.
Status write_entries(SizedDevice& dev, guest::Allocator& alloc, const VmdkExpose& x, uint64_t gd, uint64_t first,
                     uint64_t count, uint64_t sector) {
    guest::ScopedBuffer buf(alloc, CHUNK);
    if (!buf.p)
        return Status::NoMemory;
    for (uint64_t done = 0; done < count;) {
        const uint64_t g = first + done;
        uint64_t n = x.gtes_per_gt - g % x.gtes_per_gt;
        if (n > count - done)
            n = count - done;
        if (n > CHUNK / 4)
            n = CHUNK / 4;
        uint64_t at;
        Status st = entry_at(dev, x, gd, g, &at);
        if (st != Status::Ok)
            return st;
        if (at == 0)
            return Status::Unsupported; // a grain table the directory does not have
        for (uint64_t k = 0; k < n; ++k)
            put_le32(buf.p + k * 4, x.zero_grain ? GTE_ZEROED : static_cast<uint32_t>(sector + (done + k) * x.granularity));
        if ((st = dev.write(at, buf.p, static_cast<size_t>(n * 4))) != Status::Ok)
            return st;
        done += n;
    }
    return Status::Ok;
}

Status write_entry(SizedDevice& dev, const VmdkExpose& x, uint64_t gd, uint64_t g, uint32_t value) {
    uint64_t at;
    Status st = entry_at(dev, x, gd, g, &at);
    if (st != Status::Ok)
        return st;
    if (at == 0)
        return Status::Unsupported;
    uint8_t b[4];
    put_le32(b, value);
    return dev.write(at, b, sizeof b);
}

} // namespace

Status vmdk_expose_head(SizedDevice& dev, const VmdkExpose& x, uint64_t* parent_offset) {
    *parent_offset = UINT64_MAX;
    if (x.parent_end <= x.cap || x.cap % x.granularity == 0)
        return Status::Ok;
    const uint64_t g = x.cap / x.granularity;
    uint64_t at;
    Status st = entry_at(dev, x, x.gd, g, &at);
    if (st != Status::Ok)
        return st;
    if (at == 0)
        return Status::Unsupported; // a grain table the directory does not have
    uint8_t b[4];
    if ((st = dev.read(at, b, sizeof b)) != Status::Ok)
        return st;
    if (load_le32(b) != 0)
        return Status::Ok; // allocated (its tail is zeroed: clear_range), or a zeroed grain
    if (x.granularity * SECTOR > guest::RESIZE_MAX_BACKING_BYTES)
        return Status::TooLarge; // a grain larger than the host sends
    *parent_offset = g * x.granularity * SECTOR;
    return Status::Ok;
}

Status vmdk_expose_zeros(SizedDevice& dev, guest::EditHost& host, guest::Allocator& alloc, const VmdkExpose& x,
                         const uint8_t* head) {
    if (x.parent_end <= x.cap)
        return Status::Ok;
    const uint64_t grain_bytes = x.granularity * SECTOR;
    const uint64_t first = div_up(x.cap, x.granularity);
    const uint64_t last = div_up(x.parent_end, x.granularity);
    const uint64_t whole = last > first ? last - first : 0;
    const uint64_t fresh = (head != nullptr ? 1 : 0) + (x.zero_grain ? 0 : whole);
    const uint64_t start = (dev.size() + SECTOR - 1) / SECTOR * SECTOR;
    if (start > SPARSE_MAX_FILE || fresh > (SPARSE_MAX_FILE - start) / grain_bytes)
        return Status::TooLarge;
    Status st = Status::Ok;
    if (fresh > 0 && (st = dev.set_length(host, start + fresh * grain_bytes, guest::Prealloc::Off)) != Status::Ok)
        return st;
    uint64_t next = start / SECTOR; // new grains, in sectors; their data is the file's new holes
    if (head != nullptr) {
        // The parent's bytes up to the old end, zeros after.
        guest::ScopedBuffer grain(alloc, static_cast<size_t>(grain_bytes));
        if (!grain.p)
            return Status::NoMemory;
        const uint64_t keep = (x.cap % x.granularity) * SECTOR;
        __builtin_memcpy(grain.p, head, static_cast<size_t>(keep));
        __builtin_memset(grain.p + keep, 0, static_cast<size_t>(grain_bytes - keep));
        if ((st = dev.write(start, grain.p, static_cast<size_t>(grain_bytes))) != Status::Ok)
            return st;
        const uint64_t g = x.cap / x.granularity;
        if (x.rgd != 0 && (st = write_entry(dev, x, x.rgd, g, static_cast<uint32_t>(next))) != Status::Ok)
            return st;
        if ((st = write_entry(dev, x, x.gd, g, static_cast<uint32_t>(next))) != Status::Ok)
            return st;
        next += x.granularity;
    }
    if (whole == 0)
        return Status::Ok;
    if (x.rgd != 0 && (st = write_entries(dev, alloc, x, x.rgd, first, whole, next)) != Status::Ok)
        return st;
    return write_entries(dev, alloc, x, x.gd, first, whole, next);
}

} // namespace instar::vmdk
