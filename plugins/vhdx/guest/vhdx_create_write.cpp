// Writing a new VHDX image's structures, byte for byte as qemu's vhdx_co_create writes them.
#include "vhdx_create_write.h"

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"
#include "vhdx_header.h"
#include "vhdx_metadata.h"
#include "vhdx_region_table.h"

namespace instar::vhdx {

using guest::Status;

namespace {

inline constexpr uint64_t VHDX_REGION_TABLE2_OFFSET = 256 * 1024;
inline constexpr uint32_t VHDX_METADATA_ITEMS_OFFSET = 64 * 1024; // items follow the 64 KiB table

void store_le(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

#define FIELD(base, Type, field) ((base) + __builtin_offsetof(Type, field))

// Writes the decimal digits of v as UTF-16LE at p; returns the bytes written.
size_t put_decimal_utf16(uint8_t* p, uint32_t v) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (int i = 0; i < n; ++i)
        store_le(p + 2 * i, static_cast<uint8_t>(digits[n - 1 - i]), 2);
    return 2 * static_cast<size_t>(n);
}

} // namespace

Status vhdx_write_file_identifier(guest::BlockDevice& dev, uint32_t qemu_version) {
    // 8 bytes of signature + "QEMU v" + three numbers of at most 10 digits and two dots, in UTF-16.
    uint8_t buf[8 + 2 * (6 + 3 * 10 + 2)];
    __builtin_memcpy(buf, VHDX_FILE_SIGNATURE, 8);
    size_t n = 8;
    for (const char* s = "QEMU v"; *s != 0; ++s, n += 2)
        store_le(buf + n, static_cast<uint8_t>(*s), 2);
    const uint32_t parts[3] = {qemu_version / 10000, qemu_version / 100 % 100, qemu_version % 100};
    for (int i = 0; i < 3; ++i) {
        if (i > 0) {
            store_le(buf + n, '.', 2);
            n += 2;
        }
        n += put_decimal_utf16(buf + n, parts[i]);
    }
    return dev.write(VHDX_FILE_IDENTIFIER_OFFSET, buf, n);
}

void vhdx_build_header(uint8_t* h, uint64_t sequence_number, const uint8_t* file_write_guid,
                       const uint8_t* data_write_guid, const uint8_t* log_guid, const VhdxLayout& l) {
    __builtin_memset(h, 0, VHDX_HEADER_SIZE);
    __builtin_memcpy(h, VHDX_HEADER_SIGNATURE, 4);
    store_le(FIELD(h, VhdxHeaderDisk, sequence_number), sequence_number, 8);
    __builtin_memcpy(FIELD(h, VhdxHeaderDisk, file_write_guid), file_write_guid, 16);
    __builtin_memcpy(FIELD(h, VhdxHeaderDisk, data_write_guid), data_write_guid, 16);
    if (log_guid != nullptr)
        __builtin_memcpy(FIELD(h, VhdxHeaderDisk, log_guid), log_guid, 16);
    store_le(FIELD(h, VhdxHeaderDisk, version), 1, 2);
    store_le(FIELD(h, VhdxHeaderDisk, log_length), l.log_length, 4);
    store_le(FIELD(h, VhdxHeaderDisk, log_offset), l.log_offset, 8);
    const size_t crc_at = __builtin_offsetof(VhdxHeaderDisk, checksum);
    store_le(h + crc_at, crc32c_skipping(h, VHDX_HEADER_SIZE, crc_at), 4);
}

Status vhdx_write_headers(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxLayout& l,
                          const VhdxCreateIds& ids) {
    Buffer buf(alloc, VHDX_HEADER_SIZE);
    if (!buf.p)
        return Status::NoMemory;
    const uint64_t offsets[2] = {VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET};
    for (int i = 0; i < 2; ++i) {
        vhdx_build_header(buf.p, static_cast<uint64_t>(ids.sequence_number) + i, ids.file_write_guid,
                          ids.data_write_guid, nullptr, l);
        const Status st = dev.write(offsets[i], buf.p, VHDX_HEADER_SIZE);
        if (st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

Status vhdx_write_region_tables(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxLayout& l) {
    Buffer buf(alloc, VHDX_REGION_TABLE_SIZE);
    if (!buf.p)
        return Status::NoMemory;
    uint8_t* t = buf.p;
    __builtin_memset(t, 0, VHDX_REGION_TABLE_SIZE);
    __builtin_memcpy(t, VHDX_REGION_SIGNATURE, 4);
    store_le(FIELD(t, VhdxRegionTableHeaderDisk, entry_count), 2, 4);
    struct {
        const Guid* guid;
        uint64_t offset;
        uint32_t length;
    } const regions[2] = {{&VHDX_BAT_GUID, l.bat_offset, l.bat_length},
                          {&VHDX_METADATA_GUID, l.metadata_offset, VHDX_CREATE_METADATA_LENGTH}};
    for (int i = 0; i < 2; ++i) {
        uint8_t* e = t + sizeof(VhdxRegionTableHeaderDisk) + i * sizeof(VhdxRegionTableEntryDisk);
        __builtin_memcpy(e, regions[i].guid->b, 16);
        store_le(FIELD(e, VhdxRegionTableEntryDisk, file_offset), regions[i].offset, 8);
        store_le(FIELD(e, VhdxRegionTableEntryDisk, length), regions[i].length, 4);
        // qemu leaves "required" clear on both entries; readers accept it since they know both GUIDs.
    }
    const size_t crc_at = __builtin_offsetof(VhdxRegionTableHeaderDisk, checksum);
    store_le(t + crc_at, crc32c_skipping(t, VHDX_REGION_TABLE_SIZE, crc_at), 4);
    Status st = dev.write(VHDX_REGION_TABLE_OFFSET, t, VHDX_REGION_TABLE_SIZE);
    if (st == Status::Ok)
        st = dev.write(VHDX_REGION_TABLE2_OFFSET, t, VHDX_REGION_TABLE_SIZE);
    return st;
}

Status vhdx_write_metadata(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxCreateParams& p,
                           const VhdxLayout& l, const VhdxCreateIds& ids, const uint8_t* locator,
                           uint32_t locator_len) {
    // The five items as qemu packs them: file parameters (8), virtual disk size (8), page 83 data
    // (16), logical sector size (4), physical sector size (4); then the parent locator.
    constexpr uint32_t ITEMS_LEN = 40;
    const uint32_t count = locator != nullptr ? 6 : 5;
    const uint32_t table_len = VHDX_METADATA_TABLE_MAX_SIZE;
    Buffer buf(alloc, table_len + ITEMS_LEN);
    if (!buf.p)
        return Status::NoMemory;
    uint8_t* t = buf.p;
    __builtin_memset(t, 0, table_len + ITEMS_LEN);
    __builtin_memcpy(t, VHDX_METADATA_SIGNATURE, 8);
    store_le(FIELD(t, VhdxMetadataHeaderDisk, entry_count), count, 2);
    const uint32_t vd = VHDX_META_FLAGS_IS_REQUIRED | VHDX_META_FLAGS_IS_VIRTUAL_DISK;
    struct {
        const Guid* guid;
        uint32_t length;
        uint32_t flags;
    } const items[6] = {{&VHDX_FILE_PARAMETERS_GUID, 8, VHDX_META_FLAGS_IS_REQUIRED},
                        {&VHDX_VIRTUAL_DISK_SIZE_GUID, 8, vd},
                        {&VHDX_PAGE83_GUID, 16, vd},
                        {&VHDX_LOGICAL_SECTOR_GUID, 4, vd},
                        {&VHDX_PHYSICAL_SECTOR_GUID, 4, vd},
                        {&VHDX_PARENT_LOCATOR_GUID, locator_len, VHDX_META_FLAGS_IS_REQUIRED}};
    uint32_t offset = VHDX_METADATA_ITEMS_OFFSET;
    for (uint32_t i = 0; i < count; ++i) {
        uint8_t* e = t + sizeof(VhdxMetadataHeaderDisk) + i * sizeof(VhdxMetadataEntryDisk);
        __builtin_memcpy(e, items[i].guid->b, 16);
        store_le(FIELD(e, VhdxMetadataEntryDisk, offset), offset, 4);
        store_le(FIELD(e, VhdxMetadataEntryDisk, length), items[i].length, 4);
        store_le(FIELD(e, VhdxMetadataEntryDisk, flags), items[i].flags, 4);
        offset += items[i].length;
    }
    uint8_t* v = t + table_len;
    uint32_t data_bits = p.fixed ? VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED : 0;
    if (p.differencing)
        data_bits |= VHDX_PARAMS_HAS_PARENT;
    store_le(v, p.block_size, 4);
    store_le(v + 4, data_bits, 4);
    store_le(v + 8, p.size, 8);
    __builtin_memcpy(v + 16, ids.page83_guid, 16);
    store_le(v + 32, 512, 4); // logical sector size: qemu creates 512-byte sectors only
    store_le(v + 36, 512, 4); // physical sector size
    // qemu writes the table and the items as two requests; the same bytes land either way, but
    // two writes keep the hole between them (and so the allocation) identical.
    Status st = dev.write(l.metadata_offset, t, table_len);
    if (st == Status::Ok)
        st = dev.write(l.metadata_offset + VHDX_METADATA_ITEMS_OFFSET, v, ITEMS_LEN);
    if (st == Status::Ok && locator != nullptr)
        st = dev.write(l.metadata_offset + VHDX_METADATA_ITEMS_OFFSET + ITEMS_LEN, locator, locator_len);
    return st;
}

Status vhdx_write_bat(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxCreateParams& p,
                      const VhdxLayout& l) {
    Buffer buf(alloc, VHDX_CREATE_BAT_CHUNK);
    if (!buf.p)
        return Status::NoMemory;
    for (uint64_t done = 0; done < l.bat_length; done += VHDX_CREATE_BAT_CHUNK) {
        const uint64_t n = l.bat_length - done < VHDX_CREATE_BAT_CHUNK ? l.bat_length - done : VHDX_CREATE_BAT_CHUNK;
        const uint64_t first = done / 8;
        for (uint64_t k = 0; k < n / 8; ++k) {
            const uint64_t index = first + k;
            store_le(buf.p + 8 * k, index < l.bat_entries ? vhdx_create_bat_entry(p, l, index) : 0, 8);
        }
        const Status st = dev.write(l.bat_offset + done, buf.p, n);
        if (st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

} // namespace instar::vhdx
