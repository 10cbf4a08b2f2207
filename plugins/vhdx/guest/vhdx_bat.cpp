// qemu's open-time checks of the VHDX block allocation table.
#include "vhdx_bat.h"

#include "vhdx_bytes.h"

namespace instar::vhdx {

using guest::Status;

namespace {

uint32_t log2_u64(uint64_t v) {
    uint32_t n = 0;
    while (v > 1) {
        v >>= 1;
        ++n;
    }
    return n;
}

} // namespace

uint32_t vhdx_bat_entries(uint64_t virtual_disk_size, uint32_t block_size) {
    const uint64_t chunk_ratio = vhdx_chunk_ratio(block_size);
    const uint32_t data_blocks = static_cast<uint32_t>((virtual_disk_size + block_size - 1) / block_size);
    return data_blocks + ((data_blocks - 1) >> log2_u64(chunk_ratio));
}

uint32_t vhdx_bat_entries_differencing(uint64_t virtual_disk_size, uint32_t block_size) {
    const uint64_t chunk_ratio = vhdx_chunk_ratio(block_size);
    const uint32_t data_blocks = static_cast<uint32_t>((virtual_disk_size + block_size - 1) / block_size);
    const uint32_t bitmap_blocks = static_cast<uint32_t>((data_blocks + chunk_ratio - 1) / chunk_ratio);
    return static_cast<uint32_t>(bitmap_blocks * (chunk_ratio + 1));
}

Status vhdx_bat_check(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h,
                      const VhdxRegions& regions, const VhdxMetadata& m, VhdxReport* report) {
    VhdxReport ignored;
    VhdxReport& say = report != nullptr ? *report : ignored;
    say.len = 0;
    // The regions qemu registered, in the order its list holds them: the later table entry first,
    // the log last.
    const VhdxRegion& later = regions.bat.index > regions.metadata.index ? regions.bat : regions.metadata;
    const VhdxRegion& earlier = regions.bat.index > regions.metadata.index ? regions.metadata : regions.bat;
    const uint64_t r_start[3] = {later.file_offset, earlier.file_offset, h.log_offset};
    const uint64_t r_end[3] = {later.file_offset + later.length, earlier.file_offset + earlier.length,
                               h.log_offset + h.log_length};
    const uint64_t chunk_ratio = vhdx_chunk_ratio(m.block_size);
    // A differencing disk has a sector bitmap entry after its last chunk too (MS-VHDX 2.5; qemu's
    // vhdx_calc_bat_entries has the rule but never reaches it, refusing such disks).
    const uint32_t entries = (m.data_bits & VHDX_PARAMS_HAS_PARENT)
                                 ? vhdx_bat_entries_differencing(m.virtual_disk_size, m.block_size)
                                 : vhdx_bat_entries(m.virtual_disk_size, m.block_size);
    if (entries > regions.bat.length / 8)
        return Status::Corrupt;
    const uint64_t bytes = static_cast<uint64_t>(entries) * 8;
    uint64_t end;
    if (!add_u64(regions.bat.file_offset, bytes, &end) || end > dev.size())
        return Status::Corrupt;
    Buffer chunk(alloc, VHDX_BAT_CHUNK);
    if (!chunk.p)
        return Status::NoMemory;
    const uint64_t file_size = dev.size();
    const uint64_t disk_bytes = (m.virtual_disk_size >> 9) << 9;
    uint64_t payblocks = chunk_ratio;
    for (uint64_t done = 0; done < bytes;) {
        const uint64_t n = bytes - done < VHDX_BAT_CHUNK ? bytes - done : VHDX_BAT_CHUNK;
        const Status st = dev.read(regions.bat.file_offset + done, chunk.p, n);
        if (st != Status::Ok)
            return st;
        for (uint64_t k = 0; k < n; k += 8) {
            const uint64_t i = (done + k) / 8;
            const uint64_t e = load_le64(chunk.p + k);
            if ((e & VHDX_BAT_STATE_BIT_MASK) != PAYLOAD_BLOCK_FULLY_PRESENT)
                continue;
            const uint64_t offset = e & VHDX_BAT_FILE_OFF_MASK;
            // Wrapping arithmetic as in qemu: a bitmap entry past the disk end counts a full block.
            const uint64_t rest = disk_bytes - i * m.block_size;
            const uint64_t block_length = rest < m.block_size ? rest : m.block_size;
            if (offset > 0x7fffffffffffffffull - m.block_size) {
                say.add("VHDX BAT entry ").dec(i).add(" offset overflow.");
                return Status::Corrupt;
            }
            if (offset >= file_size) {
                say.add("VHDX BAT entry ").dec(i).add(" start offset ").dec(offset).add(" points after end of file (");
                say.signed_dec(static_cast<int64_t>(file_size)).add("). Image has probably been truncated.");
                return Status::Corrupt;
            }
            if (offset + block_length > file_size) {
                say.add("VHDX BAT entry ").dec(i).add(" end offset ").dec(offset + block_length - 1);
                say.add(" points after end of file (").signed_dec(static_cast<int64_t>(file_size));
                say.add("). Image has probably been truncated.");
                return Status::Corrupt;
            }
            if (payblocks--) {
                for (int r = 0; r < 3; ++r) {
                    if (vhdx_region_overlap(offset, offset + m.block_size, r_start[r], r_end[r])) {
                        vhdx_overlap_report(offset, offset + m.block_size, r_start[r], r_end[r], &say);
                        return Status::Corrupt;
                    }
                }
            } else {
                payblocks = chunk_ratio;
            }
        }
        done += n;
    }
    return Status::Ok;
}

} // namespace instar::vhdx
