// The layout of a new VHDX image, following qemu's vhdx_create_new_region_table and vhdx_create_bat.
#include "vhdx_create_layout.h"

#include "vhdx_bat.h"

namespace instar::vhdx {

namespace {

constexpr uint64_t MiB = 1u << 20;

uint64_t round_up_mib(uint64_t v) { return (v + MiB - 1) & ~(MiB - 1); }

} // namespace

void vhdx_create_layout(const VhdxCreateParams& p, VhdxLayout* out) {
    out->log_offset = VHDX_HEADER_SECTION_END;
    out->log_length = p.log_size;
    out->chunk_ratio = vhdx_chunk_ratio(p.block_size);
    out->bat_entries = p.differencing ? vhdx_bat_entries_differencing(p.size, p.block_size)
                                      : vhdx_bat_entries(p.size, p.block_size);
    // At most 2^32 entries of 8 bytes rounded up to 1 MiB: below 2^35, but qemu stores it in a
    // uint32 field; the largest reachable value (a 0-byte disk, 256 MiB blocks) is 2 GiB.
    out->bat_length = static_cast<uint32_t>(round_up_mib(static_cast<uint64_t>(out->bat_entries) * 8));
    out->bat_offset = round_up_mib(VHDX_HEADER_SECTION_END + p.log_size);
    out->metadata_offset = round_up_mib(out->bat_offset + out->bat_length);
    out->data_offset = out->bat_offset + out->bat_length + VHDX_CREATE_DATA_GAP;
    out->data_blocks = (p.size + p.block_size - 1) / p.block_size;
    out->file_length = p.fixed ? out->data_offset + p.size : out->data_offset;
    // qemu writes the BAT when its entries are not all zero (a fixed disk or block_state_zero);
    // a differencing disk's entries are all NOT_PRESENT (read from the parent) and bitmaps absent.
    out->write_bat = !p.differencing && (p.fixed || p.zero_blocks);
}

uint64_t vhdx_create_bat_entry(const VhdxCreateParams& p, const VhdxLayout& l, uint64_t index) {
    // Entry index = block + block / chunk_ratio: every (chunk_ratio + 1)th entry is a sector bitmap.
    const uint64_t group = index / (l.chunk_ratio + 1), slot = index % (l.chunk_ratio + 1);
    if (slot == l.chunk_ratio || p.differencing)
        return 0;
    const uint64_t block = group * l.chunk_ratio + slot;
    if (block >= l.data_blocks)
        return 0;
    if (p.zero_blocks)
        return PAYLOAD_BLOCK_ZERO; // qemu: block_state_zero wins even for a fixed disk
    if (p.fixed)
        return (l.data_offset + block * p.block_size) | PAYLOAD_BLOCK_FULLY_PRESENT;
    return PAYLOAD_BLOCK_NOT_PRESENT;
}

} // namespace instar::vhdx
