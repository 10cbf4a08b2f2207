// Hand-built VHDX images for the unit tests (the layout qemu-img creates: headers, log at 1 MiB,
// BAT and metadata regions after it).
#pragma once

#include "vhdx_crc32c.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace vhdx_test {

using Bytes = std::vector<std::uint8_t>;

inline void le(Bytes& b, std::size_t at, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void put_guid(Bytes& b, std::size_t at, std::uint32_t d1, std::uint16_t d2, std::uint16_t d3,
                     std::initializer_list<std::uint8_t> d4) {
    le(b, at, d1, 4);
    le(b, at + 4, d2, 2);
    le(b, at + 6, d3, 2);
    std::size_t i = 8;
    for (auto x : d4)
        b[at + i++] = x;
}
inline void seal(Bytes& b, std::size_t at, std::size_t len) {
    le(b, at + 4, 0, 4);
    le(b, at + 4, instar::vhdx::crc32c_skipping(b.data() + at, len, 4), 4);
}

constexpr std::size_t MiB = 1 << 20;
constexpr std::size_t LOG_OFFSET = 1 * MiB, LOG_LENGTH = 1 * MiB;
constexpr std::size_t META_OFFSET = 2 * MiB, BAT_OFFSET = 3 * MiB;

struct Options {
    std::uint64_t size = 64 * MiB;
    std::uint32_t block_size = 8 * MiB;
    std::uint32_t logical = 512, physical = 4096;
    std::uint32_t data_bits = 0;
    std::uint64_t seq1 = 1, seq2 = 2;
    std::string parent_relative; // adds a parent locator item when not empty
};

inline void header(Bytes& img, std::size_t at, std::uint64_t seq) {
    std::memcpy(img.data() + at, "head", 4);
    le(img, at + 8, seq, 8);
    le(img, at + 66, 1, 2);         // version
    le(img, at + 68, LOG_LENGTH, 4); // log length
    le(img, at + 72, LOG_OFFSET, 8); // log offset
    seal(img, at, 4096);
}

inline Bytes image(const Options& o = {}) {
    Bytes img(BAT_OFFSET + 1 * MiB, 0);
    std::memcpy(img.data(), "vhdxfile", 8);
    header(img, 64 * 1024, o.seq1);
    header(img, 128 * 1024, o.seq2);
    // Region table: BAT and metadata.
    const std::size_t rt = 192 * 1024;
    std::memcpy(img.data() + rt, "regi", 4);
    le(img, rt + 8, 2, 4);
    put_guid(img, rt + 16, 0x2dc27766, 0xf623, 0x4200, {0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08});
    le(img, rt + 32, BAT_OFFSET, 8);
    le(img, rt + 40, 1 * MiB, 4);
    le(img, rt + 44, 1, 4);
    put_guid(img, rt + 48, 0x8b7ca206, 0x4790, 0x4b9a, {0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e});
    le(img, rt + 64, META_OFFSET, 8);
    le(img, rt + 72, 1 * MiB, 4);
    le(img, rt + 76, 1, 4);
    seal(img, rt, 64 * 1024);
    // Metadata table and items (items from 64 KiB into the region).
    const std::size_t m = META_OFFSET;
    std::memcpy(img.data() + m, "metadata", 8);
    const bool parent = !o.parent_relative.empty();
    le(img, m + 10, parent ? 6 : 5, 2);
    struct Item {
        std::uint32_t d1;
        std::uint16_t d2, d3;
        std::initializer_list<std::uint8_t> d4;
        std::uint32_t len;
    };
    const Item items[] = {
        {0xcaa16737, 0xfa36, 0x4d43, {0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b}, 8},
        {0x2fa54224, 0xcd1b, 0x4876, {0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8}, 8},
        {0xbeca12ab, 0xb2e6, 0x4523, {0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46}, 16},
        {0x8141bf1d, 0xa96f, 0x4709, {0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f}, 4},
        {0xcda348c7, 0x445d, 0x4471, {0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56}, 4},
        {0xa8d35f2d, 0xb30b, 0x454d, {0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c}, 4096},
    };
    for (int i = 0; i < (parent ? 6 : 5); ++i) {
        const std::size_t e = m + 32 + 32 * i;
        put_guid(img, e, items[i].d1, items[i].d2, items[i].d3, items[i].d4);
        le(img, e + 16, 0x10000 + 0x1000 * i, 4);
        le(img, e + 20, items[i].len, 4);
        le(img, e + 24, 4, 4); // required
    }
    le(img, m + 0x10000, o.block_size, 4);
    le(img, m + 0x10004, o.data_bits, 4);
    le(img, m + 0x11000, o.size, 8);
    le(img, m + 0x13000, o.logical, 4);
    le(img, m + 0x14000, o.physical, 4);
    if (parent) {
        // Locator: type GUID, 2 pairs: parent_linkage and relative_path.
        const std::size_t p = m + 0x15000;
        le(img, p + 18, 2, 2);
        auto put16 = [&](std::size_t at, const std::string& s) {
            for (std::size_t i = 0; i < s.size(); ++i)
                le(img, at + 2 * i, static_cast<unsigned char>(s[i]), 2);
            return static_cast<std::uint32_t>(2 * s.size());
        };
        std::uint32_t off = 100;
        const std::pair<std::string, std::string> kv[] = {{"parent_linkage", "{00000000-0000-0000-0000-000000000000}"},
                                                          {"relative_path", o.parent_relative}};
        for (int i = 0; i < 2; ++i) {
            const std::uint32_t ko = off, kl = put16(p + off, kv[i].first);
            off += kl;
            const std::uint32_t vo = off, vl = put16(p + off, kv[i].second);
            off += vl;
            le(img, p + 20 + 12 * i, ko, 4);
            le(img, p + 24 + 12 * i, vo, 4);
            le(img, p + 28 + 12 * i, kl, 2);
            le(img, p + 30 + 12 * i, vl, 2);
        }
    }
    return img;
}

} // namespace vhdx_test
