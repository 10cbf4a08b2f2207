// Parsing and building of the VHD dynamic disk header.
#include "vpc_dynamic_header.h"

#include "vpc_bytes.h"

#include <stddef.h>

namespace instar::vpc {

using guest::Status;

Status vpc_dynamic_header_parse(const uint8_t* bytes, uint64_t len, VpcDynamicHeader* out) {
    if (len < VPC_DYNAMIC_HEADER_SIZE)
        return Status::Corrupt;
    VpcDynamicHeaderDisk d;
    __builtin_memcpy(&d, bytes, sizeof d);
    if (!same_bytes(d.cookie, VPC_DYNAMIC_COOKIE, 8))
        return Status::Corrupt;
    out->table_offset = load_be64(d.table_offset);
    out->max_table_entries = load_be32(d.max_table_entries);
    out->block_size = load_be32(d.block_size);
    if (out->block_size < 512 || (out->block_size & (out->block_size - 1)) != 0)
        return Status::Corrupt;
    __builtin_memcpy(out->parent_unique_id, d.parent_unique_id, sizeof out->parent_unique_id);
    out->parent_timestamp = load_be32(d.parent_timestamp);
    __builtin_memcpy(out->parent_unicode_name, d.parent_unicode_name, VPC_PARENT_NAME_BYTES);
    for (uint32_t i = 0; i < VPC_PARENT_LOCATOR_COUNT; ++i) {
        const VpcParentLocatorDisk& l = d.parent_locators[i];
        VpcParentLocator& p = out->parent_locators[i];
        __builtin_memcpy(p.platform_code, l.platform_code, 4);
        p.data_space = load_be32(l.platform_data_space);
        p.data_length = load_be32(l.platform_data_length);
        p.data_offset = load_be64(l.platform_data_offset);
    }
    return Status::Ok;
}

void vpc_dynamic_header_build(const VpcDynamicHeader& h, uint8_t* out) {
    VpcDynamicHeaderDisk d;
    __builtin_memset(&d, 0, sizeof d);
    __builtin_memcpy(d.cookie, VPC_DYNAMIC_COOKIE, 8);
    // The spec says 0xFFFFFFFF; qemu and Microsoft's tools write all 64 bits.
    store_be64(d.data_offset, ~uint64_t{0});
    store_be64(d.table_offset, h.table_offset);
    store_be32(d.header_version, 0x00010000);
    store_be32(d.max_table_entries, h.max_table_entries);
    store_be32(d.block_size, h.block_size);
    __builtin_memcpy(d.parent_unique_id, h.parent_unique_id, sizeof d.parent_unique_id);
    store_be32(d.parent_timestamp, h.parent_timestamp);
    __builtin_memcpy(d.parent_unicode_name, h.parent_unicode_name, VPC_PARENT_NAME_BYTES);
    for (uint32_t i = 0; i < VPC_PARENT_LOCATOR_COUNT; ++i) {
        const VpcParentLocator& p = h.parent_locators[i];
        VpcParentLocatorDisk& l = d.parent_locators[i];
        __builtin_memcpy(l.platform_code, p.platform_code, 4);
        store_be32(l.platform_data_space, p.data_space);
        store_be32(l.platform_data_length, p.data_length);
        store_be64(l.platform_data_offset, p.data_offset);
    }
    __builtin_memcpy(out, &d, sizeof d);
    uint32_t sum = 0;
    for (size_t i = 0; i < sizeof d; ++i)
        sum += out[i]; // the checksum field is still zero
    store_be32(out + offsetof(VpcDynamicHeaderDisk, checksum), ~sum);
}

} // namespace instar::vpc
