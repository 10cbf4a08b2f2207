// Hand-built VHD structures for the unit tests and the fuzz seed.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace vpc_test {

using Bytes = std::vector<std::uint8_t>;

inline void be(Bytes& b, std::size_t at, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (8 * (n - 1 - i)));
}

inline void fix_checksum(Bytes& b, std::size_t at = 0) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < 512; ++i)
        if (i < 64 || i >= 68)
            sum += b[at + i];
    be(b, at + 64, ~sum, 4);
}

inline Bytes footer(std::uint32_t type, const char* creator, std::uint64_t size, std::uint16_t cyls,
                    std::uint8_t heads, std::uint8_t secs, std::uint64_t data_offset) {
    Bytes f(512, 0);
    std::memcpy(f.data(), "conectix", 8);
    be(f, 8, 2, 4);
    be(f, 12, 0x10000, 4);
    be(f, 16, data_offset, 8);
    std::memcpy(f.data() + 28, creator, 4);
    be(f, 40, size, 8);
    be(f, 48, size, 8);
    be(f, 56, cyls, 2);
    f[58] = heads;
    f[59] = secs;
    be(f, 60, type, 4);
    fix_checksum(f);
    return f;
}

inline Bytes dynamic_header(std::uint64_t table_offset, std::uint32_t entries, std::uint32_t block_size) {
    Bytes h(1024, 0);
    std::memcpy(h.data(), "cxsparse", 8);
    be(h, 8, ~std::uint64_t{0}, 8);
    be(h, 16, table_offset, 8);
    be(h, 24, 0x10000, 4);
    be(h, 28, entries, 4);
    be(h, 32, block_size, 4);
    return h;
}

// A dynamic disk as qemu lays it out: footer copy, header at 512, BAT at 1536, footer at the end.
inline Bytes dynamic_image(std::uint64_t size, std::uint32_t type = 3, const char* creator = "qem2",
                           std::uint32_t block_size = 2 << 20) {
    const std::uint32_t entries = static_cast<std::uint32_t>((size + block_size - 1) / block_size);
    const std::size_t bat_bytes = (entries * 4 + 511) & ~std::size_t{511};
    Bytes img(1536 + bat_bytes, 0xFF);
    Bytes f = footer(type, creator, size, 0, 0, 0, 512);
    std::memcpy(img.data(), f.data(), 512);
    Bytes h = dynamic_header(1536, entries, block_size);
    std::memcpy(img.data() + 512, h.data(), 1024);
    img.insert(img.end(), f.begin(), f.end());
    return img;
}

// UTF-16 (LE or BE) of an ASCII string.
inline Bytes utf16(const std::string& s, bool big_endian) {
    Bytes out;
    for (char c : s) {
        if (big_endian) {
            out.push_back(0);
            out.push_back(static_cast<std::uint8_t>(c));
        } else {
            out.push_back(static_cast<std::uint8_t>(c));
            out.push_back(0);
        }
    }
    return out;
}

} // namespace vpc_test
