// Parsing of the VHDX metadata table and items, following qemu's vhdx_parse_metadata.
#include "vhdx_metadata.h"

#include "vhdx_bytes.h"

namespace instar::vhdx {

using guest::Status;

namespace {

enum Item { FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE83, LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE, PARENT_LOCATOR, ITEM_COUNT };

constexpr const Guid* ITEM_GUIDS[ITEM_COUNT] = {
    &VHDX_FILE_PARAMETERS_GUID, &VHDX_VIRTUAL_DISK_SIZE_GUID,  &VHDX_PAGE83_GUID,
    &VHDX_LOGICAL_SECTOR_GUID,  &VHDX_PHYSICAL_SECTOR_GUID,    &VHDX_PARENT_LOCATOR_GUID,
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
            if (guid_eq(e.item_id, *ITEM_GUIDS[k]))
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
