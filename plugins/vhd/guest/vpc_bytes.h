// Byte-order loads and checked arithmetic for the VHD parser (all VHD fields are big-endian).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::vpc {

inline uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t load_be32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline uint64_t load_be64(const uint8_t* p) {
    return (static_cast<uint64_t>(load_be32(p)) << 32) | load_be32(p + 4);
}
inline uint32_t load_le32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[3]) << 24) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[1]) << 8) | p[0];
}

// Four-character codes (creator application, platform codes) compared as bytes.
inline bool same4(const uint8_t* p, const char* s) {
    return p[0] == static_cast<uint8_t>(s[0]) && p[1] == static_cast<uint8_t>(s[1]) &&
           p[2] == static_cast<uint8_t>(s[2]) && p[3] == static_cast<uint8_t>(s[3]);
}
inline bool same_bytes(const uint8_t* p, const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != static_cast<uint8_t>(s[i]))
            return false;
    return true;
}

// a + b, false on overflow.
inline bool add_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }
inline bool mul_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

} // namespace instar::vpc
