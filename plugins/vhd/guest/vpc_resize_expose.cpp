// vpc: what a grow exposes reads as zeros (vpc_resize_expose.h).
#include "vpc_resize_expose.h"

#include <instar/guest/format_util.h>

#include "vpc_bytes.h"
#include "vpc_dynamic_header.h"
#include "vpc_footer.h"

namespace instar::vpc {

using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;
// BAT bytes handled at a time, and zeros written at a time where discard is unsupported (bounded
// guest buffers).
constexpr size_t CHUNK = 64 * 1024;
// BAT entries are sector numbers below VPC_BAT_UNUSED: a new block must start below this offset.
constexpr uint64_t MAX_BLOCK_OFFSET = uint64_t{VPC_BAT_UNUSED} * SECTOR;

uint64_t div_up(uint64_t v, uint64_t by) { return (v + by - 1) / by; }

// A dropped block's space reads as zeros (qemu may put a new block there without zeroing it).
Status discard(guest::SizedDevice& dev, guest::Allocator& alloc, uint64_t at, uint64_t len) {
    const Status st = dev.discard(at, len);
    return st == Status::Unsupported ? vpc_write_fill(dev, alloc, at, len, 0) : st;
}


// The sector bitmap at `at`: bits [first, block's sectors) set (bit 7 of byte 0 is the block's
// first sector), the rest as they were (`fresh`: clear; every bitmap sector is then written, since
// the first new block's bitmap lies over the old trailing footer).
Status set_bits(guest::SizedDevice& dev, const VpcExpose& x, uint64_t at, uint64_t first, bool fresh) {
    const uint64_t sectors = x.block_size / SECTOR;
    uint8_t page[SECTOR];
    for (uint64_t p = 0; p < x.bitmap_size / SECTOR; ++p) {
        const uint64_t lo = p * SECTOR * 8, hi = lo + SECTOR * 8; // the sectors this bitmap sector covers
        if (!fresh && (hi <= first || lo >= sectors))
            continue;
        if (fresh)
            __builtin_memset(page, 0, sizeof page);
        else if (const Status st = dev.read(at + p * SECTOR, page, sizeof page); st != Status::Ok)
            return st;
        for (uint64_t s = first > lo ? first : lo; s < hi && s < sectors; ++s)
            page[(s - lo) / 8] = static_cast<uint8_t>(page[(s - lo) / 8] | (0x80u >> (s % 8)));
        if (const Status st = dev.write(at + p * SECTOR, page, sizeof page); st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

Status read_entry(guest::SizedDevice& dev, const VpcExpose& x, uint64_t i, uint32_t* e) {
    uint8_t b[4];
    const Status st = dev.read(x.table + i * 4, b, sizeof b);
    if (st == Status::Ok)
        *e = load_be32(b);
    return st;
}

Status write_entry(guest::SizedDevice& dev, const VpcExpose& x, uint64_t i, uint32_t e) {
    uint8_t b[4];
    store_be32(b, e);
    return dev.write(x.table + i * 4, b, sizeof b);
}

// Entries [first, first + count) reference consecutive new blocks from sector `sector` on.
Status write_run(guest::SizedDevice& dev, guest::Allocator& alloc, const VpcExpose& x, uint64_t first,
                 uint64_t count, uint64_t sector) {
    guest::ScopedBuffer buf(alloc, CHUNK);
    if (!buf.p)
        return Status::NoMemory;
    const uint64_t step = (x.bitmap_size + x.block_size) / SECTOR;
    for (uint64_t done = 0; done < count;) {
        const uint64_t n = count - done < CHUNK / 4 ? count - done : CHUNK / 4;
        for (uint64_t k = 0; k < n; ++k)
            store_be32(buf.p + k * 4, static_cast<uint32_t>(sector + (done + k) * step));
        if (const Status st = dev.write(x.table + (first + done) * 4, buf.p, static_cast<size_t>(n * 4));
            st != Status::Ok)
            return st;
        done += n;
    }
    return Status::Ok;
}

} // namespace

Status vpc_write_fill(guest::BlockDevice& dev, guest::Allocator& alloc, uint64_t offset, uint64_t len, uint8_t byte) {
    guest::ScopedBuffer buf(alloc, CHUNK);
    if (!buf.p)
        return Status::NoMemory;
    __builtin_memset(buf.p, byte, CHUNK);
    for (uint64_t done = 0; done < len;) {
        const size_t n = len - done < CHUNK ? static_cast<size_t>(len - done) : CHUNK;
        const Status st = dev.write(offset + done, buf.p, n);
        if (st != Status::Ok)
            return st;
        done += n;
    }
    return Status::Ok;
}

Status vpc_drop_blocks(guest::SizedDevice& dev, guest::Allocator& alloc, const VpcExpose& x, uint64_t first,
                       uint64_t last) {
    guest::ScopedBuffer buf(alloc, CHUNK);
    if (!buf.p)
        return Status::NoMemory;
    const uint64_t block_bytes = x.bitmap_size + x.block_size;
    for (uint64_t i = first; i < last;) {
        const uint64_t n = last - i < CHUNK / 4 ? last - i : CHUNK / 4;
        Status st = dev.read(x.table + i * 4, buf.p, static_cast<size_t>(n * 4));
        if (st != Status::Ok)
            return st;
        bool changed = false;
        for (uint64_t k = 0; k < n; ++k) {
            const uint32_t e = load_be32(buf.p + k * 4);
            if (e == VPC_BAT_UNUSED)
                continue;
            const uint64_t at = uint64_t{e} * SECTOR;
            if (at < dev.size() && block_bytes <= dev.size() - at)
                if ((st = discard(dev, alloc, at, block_bytes)) != Status::Ok)
                    return st;
            store_be32(buf.p + k * 4, VPC_BAT_UNUSED);
            changed = true;
        }
        if (changed && (st = dev.write(x.table + i * 4, buf.p, static_cast<size_t>(n * 4))) != Status::Ok)
            return st;
        i += n;
    }
    return Status::Ok;
}

Status vpc_expose_zeros(guest::SizedDevice& dev, guest::EditHost& host, guest::Allocator& alloc, const VpcExpose& x,
                        uint64_t* footer_at) {
    const uint64_t bs = x.block_size;
    const uint64_t first_whole = div_up(x.old_size, bs);
    uint64_t stale_end = div_up(x.new_size, bs);
    if (stale_end > x.old_entries)
        stale_end = x.old_entries;
    Status st = Status::Ok;
    if (first_whole < stale_end && (st = vpc_drop_blocks(dev, alloc, x, first_whole, stale_end)) != Status::Ok)
        return st;
    if (x.parent_end <= x.old_size)
        return Status::Ok;
    if (x.bitmap_size * 8 * SECTOR < bs)
        return Status::Unsupported; // a block too small for qemu's bitmap arithmetic: no bits to set
    // The block holding the old end: its tail sectors present (zero_tail zeroed their data), in a
    // new block when the parent served it.
    const bool partial = x.old_size % bs != 0;
    const uint64_t tail_first = div_up(x.old_size % bs, SECTOR);
    uint32_t e = VPC_BAT_UNUSED;
    if (partial && (st = read_entry(dev, x, x.old_size / bs, &e)) != Status::Ok)
        return st;
    if (partial && e != VPC_BAT_UNUSED && (st = set_bits(dev, x, uint64_t{e} * SECTOR, tail_first, false)) != Status::Ok)
        return st;
    const uint64_t whole = div_up(x.parent_end, bs) > first_whole ? div_up(x.parent_end, bs) - first_whole : 0;
    const uint64_t fresh = whole + (partial && e == VPC_BAT_UNUSED ? 1 : 0);
    if (fresh == 0)
        return Status::Ok;
    // New blocks where the trailing footer lies; the footer first moves past them (the file always
    // ends in one), then the bitmaps, then the entries.
    const uint64_t stride = x.bitmap_size + bs;
    const uint64_t start = *footer_at;
    if (start % SECTOR != 0 || fresh > (MAX_BLOCK_OFFSET - start) / stride)
        return Status::TooLarge;
    const uint64_t end = start + fresh * stride;
    uint8_t footer[VPC_FOOTER_SIZE];
    if ((st = dev.read(start, footer, sizeof footer)) != Status::Ok)
        return st;
    if (end + VPC_FOOTER_SIZE > dev.size() &&
        (st = dev.set_length(host, end + VPC_FOOTER_SIZE, guest::Prealloc::Off)) != Status::Ok)
        return st;
    if ((st = dev.write(end, footer, sizeof footer)) != Status::Ok)
        return st;
    uint64_t at = start;
    if (partial && e == VPC_BAT_UNUSED) {
        if ((st = set_bits(dev, x, at, tail_first, true)) != Status::Ok)
            return st;
        at += stride;
    }
    for (uint64_t k = 0; k < whole; ++k, at += stride)
        if ((st = set_bits(dev, x, at, 0, true)) != Status::Ok)
            return st;
    at = start;
    if (partial && e == VPC_BAT_UNUSED) {
        if ((st = write_entry(dev, x, x.old_size / bs, static_cast<uint32_t>(at / SECTOR))) != Status::Ok)
            return st;
        at += stride;
    }
    if (whole > 0 && (st = write_run(dev, alloc, x, first_whole, whole, at / SECTOR)) != Status::Ok)
        return st;
    *footer_at = end;
    return Status::Ok;
}

} // namespace instar::vpc
