// Hand-built disks with and without partition tables, for the raw unit tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace raw_test {

using Bytes = std::vector<std::uint8_t>;

inline void le32(Bytes& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// One Linux partition from LBA 2048, as fdisk writes it.
inline Bytes mbr_disk(std::size_t size = 1 << 20) {
    Bytes d(size, 0);
    d[446] = 0x80;
    d[446 + 4] = 0x83;
    le32(d, 446 + 8, 2048);
    le32(d, 446 + 12, 100);
    d[510] = 0x55;
    d[511] = 0xAA;
    return d;
}

// A protective MBR and a GPT header at LBA 1 for the sector size.
inline Bytes gpt_disk(std::uint32_t sector, std::size_t size = 1 << 20, bool protective_mbr = true) {
    Bytes d(size, 0);
    if (protective_mbr) {
        d[446 + 4] = 0xEE;
        le32(d, 446 + 8, 1);
        le32(d, 446 + 12, static_cast<std::uint32_t>(size / sector - 1));
        d[510] = 0x55;
        d[511] = 0xAA;
    }
    std::memcpy(d.data() + sector, "EFI PART", 8);
    le32(d, sector + 8, 0x00010000);
    le32(d, sector + 12, 92);
    return d;
}

} // namespace raw_test
