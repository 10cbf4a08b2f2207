// vhdx: a differencing disk's grown area reads as zeros (vhdx_resize_expose.h).
#include "vhdx_resize_expose.h"

#include "vhdx_bat.h"
#include "vhdx_bytes.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;                           // vhdx_metadata_read accepts only 512-byte logical sectors
constexpr uint64_t SECTOR_BITMAP_BLOCK_SIZE = 1u << 20;    // MS-VHDX 2.4: sector bitmap blocks are 1 MiB
constexpr uint64_t PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;    // MS-VHDX 2.5.1.1
constexpr uint64_t SB_BLOCK_PRESENT = 6;                   // MS-VHDX 2.5.1.2
// BAT bytes handled at a time (bounded guest buffer; a multiple of the 8-byte entry).
constexpr size_t ENTRY_BUF = 64 * 1024;

void store_le64(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t payload_index(const VhdxExpose& x, uint64_t block) { return block + block / x.ratio; }
uint64_t bitmap_index(const VhdxExpose& x, uint64_t block) {
    return block / x.ratio * (x.ratio + 1) + x.ratio;
}

Status read_entry(guest::SizedDevice& dev, const VhdxExpose& x, uint64_t index, uint64_t* e) {
    uint8_t b[8];
    const Status st = read_at(dev, x.bat + index * 8, b, sizeof b);
    if (st == Status::Ok)
        *e = load_le64(b);
    return st;
}

Status write_entry(guest::SizedDevice& dev, const VhdxExpose& x, uint64_t index, uint64_t e) {
    uint8_t b[8];
    store_le64(b, e);
    return dev.write(x.bat + index * 8, b, sizeof b);
}

bool tail_partial(const VhdxExpose& x) { return x.old_size % x.block != 0; }

bool parent_state(uint64_t state) {
    return state != PAYLOAD_BLOCK_ZERO && state != PAYLOAD_BLOCK_FULLY_PRESENT &&
           state != PAYLOAD_BLOCK_PARTIALLY_PRESENT;
}

// The old entries of payload blocks wholly past the old end (a shrink keeps the last chunk's):
// PAYLOAD_BLOCK_ZERO. A present block's space is left unreferenced, as a shrink leaves it.
Status zero_stale_entries(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxExpose& x) {
    const uint64_t first_block = (x.old_size + x.block - 1) / x.block;
    const uint64_t first = payload_index(x, first_block);
    if (first >= x.old_entries)
        return Status::Ok;
    Buffer buf(alloc, ENTRY_BUF);
    if (!buf.p)
        return Status::NoMemory;
    for (uint64_t j = first; j < x.old_entries;) {
        const uint64_t n = x.old_entries - j < ENTRY_BUF / 8 ? x.old_entries - j : ENTRY_BUF / 8;
        Status st = read_at(dev, x.bat + j * 8, buf.p, static_cast<size_t>(n * 8));
        if (st != Status::Ok)
            return st;
        bool changed = false;
        for (uint64_t k = 0; k < n; ++k) {
            if ((j + k + 1) % (x.ratio + 1) == 0)
                continue; // a sector bitmap entry
            if ((load_le64(buf.p + k * 8) & VHDX_BAT_STATE_BIT_MASK) != PAYLOAD_BLOCK_ZERO) {
                store_le64(buf.p + k * 8, PAYLOAD_BLOCK_ZERO);
                changed = true;
            }
        }
        if (changed && (st = dev.write(x.bat + j * 8, buf.p, static_cast<size_t>(n * 8))) != Status::Ok)
            return st;
        j += n;
    }
    return Status::Ok;
}

// Sets the sector bitmap bits of the old end's block from the old end to the block's end (MS-VHDX:
// bit 0 of byte 0 is the chunk's first sector; a set bit means the sector is in this file).
Status mark_tail_present(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxExpose& x, uint64_t bitmap_at) {
    const uint64_t block = x.old_size / x.block;
    const uint64_t base = (block % x.ratio) * (x.block / SECTOR); // the block's first bit
    const uint64_t first = base + (x.old_size % x.block + SECTOR - 1) / SECTOR;
    const uint64_t end = base + x.block / SECTOR;
    const uint64_t lo = first / 8, hi = (end + 7) / 8; // bytes [lo, hi): at most 64 KiB (256 MiB blocks)
    if (hi > SECTOR_BITMAP_BLOCK_SIZE)
        return Status::Corrupt;
    Buffer buf(alloc, static_cast<size_t>(hi - lo));
    if (!buf.p)
        return Status::NoMemory;
    Status st = read_at(dev, bitmap_at + lo, buf.p, static_cast<size_t>(hi - lo));
    if (st != Status::Ok)
        return st;
    for (uint64_t b = first; b < end; ++b)
        buf.p[b / 8 - lo] = static_cast<uint8_t>(buf.p[b / 8 - lo] | (1u << (b % 8)));
    return dev.write(bitmap_at + lo, buf.p, static_cast<size_t>(hi - lo));
}

} // namespace

Status vhdx_expose_space(guest::SizedDevice& dev, const VhdxExpose& x, uint64_t* bytes) {
    *bytes = 0;
    if (!tail_partial(x) || !x.parent_reaches)
        return Status::Ok;
    const uint64_t block = x.old_size / x.block;
    uint64_t e;
    Status st = read_entry(dev, x, payload_index(x, block), &e);
    if (st != Status::Ok || !parent_state(e & VHDX_BAT_STATE_BIT_MASK))
        return st;
    *bytes = x.block;
    if ((st = read_entry(dev, x, bitmap_index(x, block), &e)) != Status::Ok)
        return st;
    if ((e & VHDX_BAT_STATE_BIT_MASK) != SB_BLOCK_PRESENT)
        *bytes += SECTOR_BITMAP_BLOCK_SIZE;
    return Status::Ok;
}

Status vhdx_expose_zeros(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxExpose& x, uint64_t space) {
    Status st = zero_stale_entries(dev, alloc, x);
    if (st != Status::Ok || !tail_partial(x))
        return st;
    const uint64_t block = x.old_size / x.block;
    uint64_t e, sb;
    if ((st = read_entry(dev, x, payload_index(x, block), &e)) != Status::Ok ||
        (st = read_entry(dev, x, bitmap_index(x, block), &sb)) != Status::Ok)
        return st;
    const uint64_t state = e & VHDX_BAT_STATE_BIT_MASK;
    const bool sb_present = (sb & VHDX_BAT_STATE_BIT_MASK) == SB_BLOCK_PRESENT;
    if (state == PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        // Its tail's data was zeroed (zero_tail); the sectors become present.
        if (!sb_present)
            return Status::Corrupt; // a partially present block needs its sector bitmap
        return mark_tail_present(dev, alloc, x, sb & VHDX_BAT_FILE_OFF_MASK);
    }
    if (!parent_state(state) || !x.parent_reaches)
        return Status::Ok; // present (its tail zeroed), zero, or a parent that ends before the old end
    // A block the parent served: a new payload block (zeros: the file's new end) whose tail sectors
    // are present, so the head still reads the parent and the tail zeros. The bitmap first, then its
    // entry, then the payload entry: until that last write the block reads as before.
    uint64_t payload_at = space;
    if (!sb_present) {
        payload_at = space + SECTOR_BITMAP_BLOCK_SIZE;
        if ((st = mark_tail_present(dev, alloc, x, space)) != Status::Ok ||
            (st = write_entry(dev, x, bitmap_index(x, block), space | SB_BLOCK_PRESENT)) != Status::Ok)
            return st;
    } else if ((st = mark_tail_present(dev, alloc, x, sb & VHDX_BAT_FILE_OFF_MASK)) != Status::Ok) {
        return st;
    }
    return write_entry(dev, x, payload_index(x, block), payload_at | PAYLOAD_BLOCK_PARTIALLY_PRESENT);
}

} // namespace instar::vhdx
