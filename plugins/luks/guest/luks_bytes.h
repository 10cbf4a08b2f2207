// Big-endian loads and stores for the LUKS headers (all their integers are big-endian).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

inline uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t load_be32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
// The low `bytes` bytes of v, most significant first, at p.
inline void store_be(uint8_t* p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * (bytes - 1 - i)));
}
inline size_t bounded_strlen(const uint8_t* p, size_t cap) {
    size_t n = 0;
    while (n < cap && p[n] != 0)
        ++n;
    return n;
}

} // namespace instar::luks
