// Hand-built VMDK files for the unit tests: KDMV sparse extents and text descriptors.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace vmdk_test {

using Bytes = std::vector<std::uint8_t>;

inline void le(Bytes& b, std::size_t at, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline std::string descriptor(const std::string& create_type, const std::string& extents,
                              const std::string& extra = "") {
    return "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n" + extra + "createType=\"" +
           create_type + "\"\n\n# Extent description\n" + extents +
           "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n";
}

inline Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

struct Sparse {
    std::uint64_t capacity = 2048; // sectors
    std::uint64_t granularity = 128;
    std::uint32_t version = 1;
    std::uint32_t gtes = 512;
    std::uint16_t compress = 0;
    std::uint64_t gd_offset = 21;
    std::uint64_t grain_offset = 128;
    std::string embedded; // descriptor at sector 1
};

// A KDMV extent laid out like qemu's: header, descriptor at sector 1, tables, grains from grain_offset.
inline Bytes sparse(const Sparse& o = {}) {
    Bytes b(o.grain_offset * 512, 0);
    std::memcpy(b.data(), "KDMV", 4);
    le(b, 4, o.version, 4);
    le(b, 8, 3, 4); // NL detect + RGD
    le(b, 12, o.capacity, 8);
    le(b, 20, o.granularity, 8);
    le(b, 28, o.embedded.empty() ? 0 : 1, 8);
    le(b, 36, o.embedded.empty() ? 0 : 20, 8);
    le(b, 44, o.gtes, 4);
    le(b, 48, 21, 8);
    le(b, 56, o.gd_offset, 8);
    le(b, 64, o.grain_offset, 8);
    std::memcpy(b.data() + 73, "\n \r\n", 4);
    le(b, 77, o.compress, 2);
    std::memcpy(b.data() + 512, o.embedded.data(), o.embedded.size());
    return b;
}

} // namespace vmdk_test
