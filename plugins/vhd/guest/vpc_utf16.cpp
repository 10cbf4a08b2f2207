// UTF-8 decoding and UTF-16 encoding for differencing VHD names.
#include "vpc_utf16.h"

namespace instar::vpc {

namespace {

// Decodes one code point at s[*i]; false on invalid UTF-8.
bool decode(const uint8_t* s, size_t len, size_t* i, uint32_t* cp) {
    const uint8_t b = s[*i];
    uint32_t c;
    size_t n;
    uint32_t min;
    if (b < 0x80) {
        *cp = b;
        *i += 1;
        return true;
    } else if ((b & 0xE0) == 0xC0) {
        c = b & 0x1F, n = 1, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        c = b & 0x0F, n = 2, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
        c = b & 0x07, n = 3, min = 0x10000;
    } else {
        return false;
    }
    if (len - *i <= n)
        return false;
    for (size_t k = 1; k <= n; ++k) {
        const uint8_t t = s[*i + k];
        if ((t & 0xC0) != 0x80)
            return false;
        c = (c << 6) | (t & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
        return false;
    *cp = c;
    *i += n + 1;
    return true;
}

void put(uint8_t* dst, size_t at, uint32_t unit, bool big_endian) {
    const auto hi = static_cast<uint8_t>(unit >> 8);
    const auto lo = static_cast<uint8_t>(unit);
    dst[2 * at] = big_endian ? hi : lo;
    dst[2 * at + 1] = big_endian ? lo : hi;
}

} // namespace

bool vpc_utf8_to_utf16(const char* src, size_t len, bool big_endian, uint8_t* dst, size_t cap_units,
                       size_t* units, bool* complete) {
    const auto* s = reinterpret_cast<const uint8_t*>(src); // SAFETY: char and uint8_t alias freely
    size_t n = 0;
    bool fits = true;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (!decode(s, len, &i, &cp))
            return false;
        const size_t need = cp >= 0x10000 ? 2 : 1;
        if (!fits || cap_units - n < need) {
            fits = false; // keep validating the rest
            continue;
        }
        if (need == 2) {
            put(dst, n, 0xD800 + ((cp - 0x10000) >> 10), big_endian);
            put(dst, n + 1, 0xDC00 + ((cp - 0x10000) & 0x3FF), big_endian);
        } else {
            put(dst, n, cp, big_endian);
        }
        n += need;
    }
    *units = n;
    *complete = fits;
    return true;
}

} // namespace instar::vpc
