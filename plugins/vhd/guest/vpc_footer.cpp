// Parsing and building of the VHD hard disk footer.
#include "vpc_footer.h"

#include "vpc_bytes.h"

#include <stddef.h>

namespace instar::vpc {

using guest::Status;

bool vpc_footer_has_cookie(const uint8_t* bytes) { return same_bytes(bytes, VPC_FOOTER_COOKIE, 8); }

uint32_t vpc_footer_checksum(const uint8_t* bytes) {
    constexpr size_t checksum_at = offsetof(VpcFooterDisk, checksum);
    uint32_t sum = 0;
    for (size_t i = 0; i < VPC_FOOTER_SIZE; ++i)
        if (i < checksum_at || i >= checksum_at + 4)
            sum += bytes[i];
    return ~sum;
}

Status vpc_footer_parse(const uint8_t* bytes, uint64_t len, VpcFooter* out) {
    if (len < VPC_FOOTER_SIZE)
        return Status::Corrupt;
    VpcFooterDisk d;
    __builtin_memcpy(&d, bytes, sizeof d);
    if (!vpc_footer_has_cookie(d.cookie))
        return Status::Corrupt;
    out->checksum = load_be32(d.checksum);
    if (out->checksum != vpc_footer_checksum(bytes))
        return Status::Corrupt;
    out->data_offset = load_be64(d.data_offset);
    out->timestamp = load_be32(d.timestamp);
    __builtin_memcpy(out->creator_application, d.creator_application, 4);
    out->original_size = load_be64(d.original_size);
    out->current_size = load_be64(d.current_size);
    out->cylinders = load_be16(d.cylinders);
    out->heads = d.heads[0];
    out->sectors_per_track = d.sectors_per_track[0];
    out->disk_type = load_be32(d.disk_type);
    __builtin_memcpy(out->unique_id, d.unique_id, sizeof out->unique_id);
    return Status::Ok;
}

void vpc_footer_build(const VpcFooter& f, uint8_t* out) {
    VpcFooterDisk d;
    __builtin_memset(&d, 0, sizeof d);
    __builtin_memcpy(d.cookie, VPC_FOOTER_COOKIE, 8);
    store_be32(d.features, 2);
    store_be32(d.file_format_version, 0x00010000);
    store_be64(d.data_offset, f.data_offset);
    store_be32(d.timestamp, f.timestamp);
    __builtin_memcpy(d.creator_application, f.creator_application, 4);
    store_be32(d.creator_version, 0x00050003);
    store4(d.creator_host_os, "Wi2k");
    store_be64(d.original_size, f.original_size);
    store_be64(d.current_size, f.current_size);
    store_be16(d.cylinders, f.cylinders);
    d.heads[0] = f.heads;
    d.sectors_per_track[0] = f.sectors_per_track;
    store_be32(d.disk_type, f.disk_type);
    __builtin_memcpy(d.unique_id, f.unique_id, sizeof d.unique_id);
    __builtin_memcpy(out, &d, sizeof d);
    store_be32(out + offsetof(VpcFooterDisk, checksum), vpc_footer_checksum(out));
}

} // namespace instar::vpc
