// Little-endian loads, GUID comparison, checked arithmetic and a scoped allocation for the VHDX parser.
#pragma once

#include <instar/guest/format_util.h>
#include <stddef.h>
#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vhdx {

inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) { return load_le32(p) | (static_cast<uint64_t>(load_le32(p + 4)) << 32); }

// A GUID as stored on disk (Microsoft layout: data1..data3 little-endian, data4 bytes as is).
struct Guid {
    uint8_t b[16];
};
constexpr Guid make_guid(uint32_t d1, uint16_t d2, uint16_t d3, const uint8_t (&d4)[8]) {
    return Guid{{static_cast<uint8_t>(d1), static_cast<uint8_t>(d1 >> 8), static_cast<uint8_t>(d1 >> 16),
                 static_cast<uint8_t>(d1 >> 24), static_cast<uint8_t>(d2), static_cast<uint8_t>(d2 >> 8),
                 static_cast<uint8_t>(d3), static_cast<uint8_t>(d3 >> 8), d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
                 d4[6], d4[7]}};
}
inline bool guid_eq(const uint8_t* p, const Guid& g) {
    for (int i = 0; i < 16; ++i)
        if (p[i] != g.b[i])
            return false;
    return true;
}
inline bool guid_is_zero(const uint8_t* p) {
    for (int i = 0; i < 16; ++i)
        if (p[i] != 0)
            return false;
    return true;
}

inline bool same_bytes(const uint8_t* p, const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != static_cast<uint8_t>(s[i]))
            return false;
    return true;
}

inline bool add_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// Reads [offset, offset + len) of `dev`, Corrupt if the range is not inside the file.
inline guest::Status read_at(guest::BlockDevice& dev, uint64_t offset, void* buf, size_t len) {
    uint64_t end;
    if (!add_u64(offset, len, &end) || end > dev.size())
        return guest::Status::Corrupt;
    return dev.read(offset, buf, len);
}

using Buffer = guest::ScopedBuffer;

} // namespace instar::vhdx
