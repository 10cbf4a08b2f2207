// Parsing of the VHD dynamic disk header.
#include "vpc_dynamic_header.h"

#include "vpc_bytes.h"

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
    __builtin_memcpy(out->parent_unicode_name, d.parent_unicode_name, VPC_PARENT_NAME_BYTES);
    for (uint32_t i = 0; i < VPC_PARENT_LOCATOR_COUNT; ++i) {
        const VpcParentLocatorDisk& l = d.parent_locators[i];
        VpcParentLocator& p = out->parent_locators[i];
        __builtin_memcpy(p.platform_code, l.platform_code, 4);
        p.data_length = load_be32(l.platform_data_length);
        p.data_offset = load_be64(l.platform_data_offset);
    }
    return Status::Ok;
}

} // namespace instar::vpc
