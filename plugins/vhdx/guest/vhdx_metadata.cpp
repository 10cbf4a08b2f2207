// Parsing of the VHDX metadata table and items, following qemu's vhdx_parse_metadata.
#include "vhdx_metadata.h"

#include "vhdx_bytes.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint8_t FILE_PARAM_D4[8] = {0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b};
constexpr uint8_t VIRTUAL_SIZE_D4[8] = {0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8};
constexpr uint8_t PAGE83_D4[8] = {0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46};
constexpr uint8_t LOGICAL_SECTOR_D4[8] = {0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f};
constexpr uint8_t PHYS_SECTOR_D4[8] = {0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56};
constexpr uint8_t PARENT_LOCATOR_D4[8] = {0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};

enum Item { FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE83, LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE, PARENT_LOCATOR, ITEM_COUNT };

constexpr Guid ITEM_GUIDS[ITEM_COUNT] = {
    make_guid(0xcaa16737, 0xfa36, 0x4d43, FILE_PARAM_D4),
    make_guid(0x2fa54224, 0xcd1b, 0x4876, VIRTUAL_SIZE_D4),
    make_guid(0xbeca12ab, 0xb2e6, 0x4523, PAGE83_D4),
    make_guid(0x8141bf1d, 0xa96f, 0x4709, LOGICAL_SECTOR_D4),
    make_guid(0xcda348c7, 0x445d, 0x4471, PHYS_SECTOR_D4),
    make_guid(0xa8d35f2d, 0xb30b, 0x454d, PARENT_LOCATOR_D4),
};

// Reads `len` bytes of an item (offset relative to the metadata region).
Status read_item(guest::BlockDevice& dev, const VhdxRegion& region, const VhdxMetadataItem& item, void* buf, size_t len) {
    uint64_t at;
    if (!add_u64(region.file_offset, item.offset, &at))
        return Status::Corrupt;
    return read_at(dev, at, buf, len);
}

} // namespace

Status vhdx_metadata_read(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxRegion& region, VhdxMetadata* out) {
    Buffer table(alloc, VHDX_METADATA_TABLE_MAX_SIZE);
    if (!table.p)
        return Status::NoMemory;
    Status st = read_at(dev, region.file_offset, table.p, VHDX_METADATA_TABLE_MAX_SIZE);
    if (st != Status::Ok)
        return st;
    VhdxMetadataHeaderDisk h;
    __builtin_memcpy(&h, table.p, sizeof h);
    if (!same_bytes(h.signature, VHDX_METADATA_SIGNATURE, 8))
        return Status::Corrupt;
    const uint32_t count = load_le16(h.entry_count);
    if (count * sizeof(VhdxMetadataEntryDisk) > VHDX_METADATA_TABLE_MAX_SIZE - sizeof h)
        return Status::Corrupt;
    VhdxMetadataItem items[ITEM_COUNT] = {};
    bool present[ITEM_COUNT] = {};
    for (uint32_t i = 0; i < count; ++i) {
        VhdxMetadataEntryDisk e;
        __builtin_memcpy(&e, table.p + sizeof h + i * sizeof e, sizeof e);
        int which = -1;
        for (int k = 0; k < ITEM_COUNT; ++k)
            if (guid_eq(e.item_id, ITEM_GUIDS[k]))
                which = k;
        if (which < 0) {
            if (load_le32(e.flags) & VHDX_META_FLAGS_IS_REQUIRED)
                return Status::Unsupported;
            continue;
        }
        if (present[which])
            return Status::Corrupt;
        present[which] = true;
        items[which] = {load_le32(e.offset), load_le32(e.length)};
    }
    for (int k = 0; k < PARENT_LOCATOR; ++k)
        if (!present[k])
            return Status::Unsupported; // qemu: -ENOTSUP when a required item is missing

    uint8_t params[8];
    if ((st = read_item(dev, region, items[FILE_PARAMETERS], params, sizeof params)) != Status::Ok)
        return st;
    out->block_size = load_le32(params);
    out->data_bits = load_le32(params + 4);
    out->has_parent_locator = present[PARENT_LOCATOR];
    out->parent_locator = items[PARENT_LOCATOR];
    // qemu: has_parent without a parent locator is invalid.
    if ((out->data_bits & VHDX_PARAMS_HAS_PARENT) && !present[PARENT_LOCATOR])
        return Status::Corrupt;

    uint8_t v8[8], v4[4];
    if ((st = read_item(dev, region, items[VIRTUAL_DISK_SIZE], v8, sizeof v8)) != Status::Ok)
        return st;
    out->virtual_disk_size = load_le64(v8);
    if ((st = read_item(dev, region, items[LOGICAL_SECTOR_SIZE], v4, sizeof v4)) != Status::Ok)
        return st;
    out->logical_sector_size = load_le32(v4);
    if ((st = read_item(dev, region, items[PHYSICAL_SECTOR_SIZE], v4, sizeof v4)) != Status::Ok)
        return st;
    out->physical_sector_size = load_le32(v4);

    const uint32_t bs = out->block_size;
    if (bs < VHDX_BLOCK_SIZE_MIN || bs > VHDX_BLOCK_SIZE_MAX || (bs & (bs - 1)) != 0)
        return Status::Corrupt;
    // qemu supports only 512-byte logical sectors (-ENOTSUP for 4096).
    if (out->logical_sector_size != 512)
        return Status::Unsupported;
    return Status::Ok;
}

} // namespace instar::vhdx
