// A new sparse extent: qemu's vmdk_init_extent layout, with its grain directories streamed.
#include "vmdk_create_extent.h"

namespace instar::vmdk {

using guest::Status;

SparseLayout sparse_layout(uint64_t bytes, bool compress, bool zeroed_grain) {
    SparseLayout l{};
    Vmdk4Header& h = l.header;
    h.version = compress ? 3 : zeroed_grain ? 2 : 1;
    h.flags = VMDK4_FLAG_RGD | VMDK4_FLAG_NL_DETECT | (compress ? VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER : 0) |
              (zeroed_grain ? VMDK4_FLAG_ZERO_GRAIN : 0);
    h.compress_algorithm = compress ? VMDK4_COMPRESSION_DEFLATE : 0;
    h.capacity = bytes / 512;
    h.granularity = VMDK_CREATE_GRAIN_SECTORS;
    h.num_gtes_per_gt = VMDK_CREATE_GTES_PER_GT;
    // qemu keeps these in uint32_t: the grain count truncates past 2^32 grains (256 TiB).
    const auto grains = static_cast<uint32_t>((h.capacity + VMDK_CREATE_GRAIN_SECTORS - 1) / VMDK_CREATE_GRAIN_SECTORS);
    l.gt_sectors = (VMDK_CREATE_GTES_PER_GT * 4 + 511) / 512;
    l.gt_count = (grains + (VMDK_CREATE_GTES_PER_GT - 1)) / VMDK_CREATE_GTES_PER_GT;
    l.gd_sectors = static_cast<uint32_t>((static_cast<uint64_t>(l.gt_count) * 4 + 511) / 512);
    const uint32_t tables = l.gt_sectors * l.gt_count; // uint32_t product, as in qemu
    h.desc_offset = VMDK_CREATE_DESC_OFFSET_SECTORS;
    h.desc_size = VMDK_CREATE_DESC_SECTORS;
    h.rgd_offset = h.desc_offset + h.desc_size;
    h.gd_offset = h.rgd_offset + l.gd_sectors + tables;
    const uint64_t end = h.gd_offset + l.gd_sectors + tables;
    h.grain_offset = (end + VMDK_CREATE_GRAIN_SECTORS - 1) / VMDK_CREATE_GRAIN_SECTORS * VMDK_CREATE_GRAIN_SECTORS;
    return l;
}

namespace {

// One grain directory at `dir` sectors whose tables follow it: entry i = dir + gd_sectors + i *
// gt_sectors (uint32_t, wrapping as qemu's `tmp`), zero-padded to whole sectors.
Status write_directory(guest::BlockDevice& dev, const SparseLayout& l, uint64_t dir, uint8_t* chunk) {
    const uint64_t bytes = static_cast<uint64_t>(l.gd_sectors) * 512;
    auto entry = static_cast<uint32_t>(dir + l.gd_sectors);
    uint32_t index = 0;
    for (uint64_t done = 0; done < bytes;) {
        const size_t n = bytes - done < VMDK_CREATE_GD_CHUNK ? static_cast<size_t>(bytes - done) : VMDK_CREATE_GD_CHUNK;
        for (size_t i = 0; i + 4 <= n; i += 4) {
            const uint32_t v = index < l.gt_count ? entry : 0;
            chunk[i] = static_cast<uint8_t>(v);
            chunk[i + 1] = static_cast<uint8_t>(v >> 8);
            chunk[i + 2] = static_cast<uint8_t>(v >> 16);
            chunk[i + 3] = static_cast<uint8_t>(v >> 24);
            if (index < l.gt_count) {
                ++index;
                entry += l.gt_sectors;
            }
        }
        const Status st = dev.write(dir * 512 + done, chunk, n);
        if (st != Status::Ok)
            return st;
        done += n;
    }
    return Status::Ok;
}

} // namespace

Status write_sparse_extent(guest::CreateTarget& target, guest::BlockDevice& dev, const SparseLayout& l,
                           uint8_t* chunk) {
    uint8_t head[VMDK4_HEADER_BYTES];
    vmdk4_header_encode(l.header, head);
    Status st = dev.write(0, head, sizeof head);
    if (st == Status::Ok)
        st = target.set_length(dev, l.header.grain_offset << 9, guest::Prealloc::Off);
    if (st == Status::Ok)
        st = write_directory(dev, l, l.header.rgd_offset, chunk);
    if (st == Status::Ok)
        st = write_directory(dev, l, l.header.gd_offset, chunk);
    return st;
}

} // namespace instar::vmdk
