// Parsing of the VHD hard disk footer.
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
    __builtin_memcpy(out->creator_application, d.creator_application, 4);
    out->current_size = load_be64(d.current_size);
    out->cylinders = load_be16(d.cylinders);
    out->heads = d.heads[0];
    out->sectors_per_track = d.sectors_per_track[0];
    out->disk_type = load_be32(d.disk_type);
    return Status::Ok;
}

} // namespace instar::vpc
