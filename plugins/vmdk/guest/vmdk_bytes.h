// Little-endian loads, checked arithmetic, zero-filled reads and a scoped allocation for the VMDK parser.
#pragma once

#include <instar/guest/format_util.h>
#include <stddef.h>
#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vmdk {

inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) { return load_le32(p) | (static_cast<uint64_t>(load_le32(p + 4)) << 32); }
inline uint32_t load_be32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) |
           p[3];
}

// Reads [offset, offset + len), zero-filling whatever lies past the end of the file: qemu's block
// layer reads zeros after EOF, and the descriptor and footer rules depend on it.
inline guest::Status read_zero_filled(guest::BlockDevice& dev, uint64_t offset, uint8_t* buf, size_t len) {
    __builtin_memset(buf, 0, len);
    const uint64_t size = dev.size();
    if (offset >= size)
        return guest::Status::Ok;
    const uint64_t avail = size - offset;
    const size_t n = avail < len ? static_cast<size_t>(avail) : len;
    return dev.read(offset, buf, n);
}

using Buffer = guest::ScopedBuffer;

} // namespace instar::vmdk
