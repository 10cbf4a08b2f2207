// Byte-order loads and stores and checked arithmetic for the VHD parser and emitter (all VHD fields
// are big-endian).
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

inline void store_be16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
inline void store_be32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
inline void store_be64(uint8_t* p, uint64_t v) {
    store_be32(p, static_cast<uint32_t>(v >> 32));
    store_be32(p + 4, static_cast<uint32_t>(v));
}
inline void store4(uint8_t* p, const char* s) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(s[i]);
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
