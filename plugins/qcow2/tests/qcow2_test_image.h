// Test helper: builds small qcow2 images byte by byte (header, extensions, backing name, snapshot
// table, bitmap directory, LUKS header) so unit tests can assert exact parsed values.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace instar::qcow2::test {

inline void put_be(std::vector<std::uint8_t>& b, std::size_t off, std::uint64_t v, int bytes) {
    if (b.size() < off + bytes)
        b.resize(off + bytes);
    for (int i = 0; i < bytes; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (8 * (bytes - 1 - i)));
}
inline void append_be(std::vector<std::uint8_t>& b, std::uint64_t v, int bytes) { put_be(b, b.size(), v, bytes); }
inline void append_str(std::vector<std::uint8_t>& b, const std::string& s) { b.insert(b.end(), s.begin(), s.end()); }
inline void pad8(std::vector<std::uint8_t>& b) {
    while (b.size() % 8)
        b.push_back(0);
}

struct SnapshotSpec {
    std::string id, name;
    std::uint32_t date_sec = 0, date_nsec = 0;
    std::uint64_t vm_clock_nsec = 0;
    std::uint32_t vm_state_size32 = 0;
    std::vector<std::uint8_t> extra; // raw extra data
};

inline std::vector<std::uint8_t> snapshot_entry(const SnapshotSpec& s) {
    std::vector<std::uint8_t> b;
    append_be(b, 0x50000, 8); // l1 offset
    append_be(b, 1, 4);
    append_be(b, s.id.size(), 2);
    append_be(b, s.name.size(), 2);
    append_be(b, s.date_sec, 4);
    append_be(b, s.date_nsec, 4);
    append_be(b, s.vm_clock_nsec, 8);
    append_be(b, s.vm_state_size32, 4);
    append_be(b, s.extra.size(), 4);
    b.insert(b.end(), s.extra.begin(), s.extra.end());
    append_str(b, s.id);
    append_str(b, s.name);
    pad8(b);
    return b;
}

inline std::vector<std::uint8_t> snapshot_extra(std::uint64_t vm_state, std::uint64_t disk, std::uint64_t icount) {
    std::vector<std::uint8_t> b;
    append_be(b, vm_state, 8);
    append_be(b, disk, 8);
    append_be(b, icount, 8);
    return b;
}

inline std::vector<std::uint8_t> bitmap_entry(const std::string& name, std::uint32_t flags, std::uint8_t gran_bits,
                                              std::uint64_t table_offset = 0x60000, std::uint32_t table_size = 1) {
    std::vector<std::uint8_t> b;
    append_be(b, table_offset, 8);
    append_be(b, table_size, 4);
    append_be(b, flags, 4);
    append_be(b, 1, 1); // dirty tracking
    append_be(b, gran_bits, 1);
    append_be(b, name.size(), 2);
    append_be(b, 0, 4);
    append_str(b, name);
    pad8(b);
    return b;
}

// A LUKS1 header as qemu writes it for aes-256 xts-plain64 sha256 (one active slot).
inline std::vector<std::uint8_t> luks_header(const std::string& cipher = "aes", const std::string& mode = "xts-plain64",
                                             const std::string& hash = "sha256", std::uint32_t key_bytes = 64) {
    std::vector<std::uint8_t> b(592, 0);
    const std::uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
    std::copy(magic, magic + 6, b.begin());
    put_be(b, 6, 1, 2);
    std::copy(cipher.begin(), cipher.end(), b.begin() + 8);
    std::copy(mode.begin(), mode.end(), b.begin() + 40);
    std::copy(hash.begin(), hash.end(), b.begin() + 72);
    put_be(b, 104, 4040, 4); // payload offset (sectors)
    put_be(b, 108, key_bytes, 4);
    put_be(b, 164, 1538, 4); // master key iterations
    const std::string uuid = "141d80a3-f8ac-4172-b864-55637b48cb20";
    std::copy(uuid.begin(), uuid.end(), b.begin() + 168);
    for (int i = 0; i < 8; ++i) {
        const std::size_t s = 208 + 48 * i;
        put_be(b, s, i == 0 ? 0x00AC71F3 : 0x0000DEAD, 4);
        put_be(b, s + 4, i == 0 ? 8036 : 0, 4);
        put_be(b, s + 40, 8 + 504 * i, 4); // key material sectors: 64 * 4000 / 512 = 500 -> 504
        put_be(b, s + 44, 4000, 4);
    }
    return b;
}

// A v3 (or v2) image: cluster 0 header, 1 refcount table, 2 refcount block, 3 L1, 4 snapshot
// table, 5 bitmap directory, 6.. LUKS header area.
struct ImageSpec {
    std::uint32_t version = 3;
    std::uint32_t cluster_bits = 16;
    std::uint64_t size = 1 << 20;
    std::uint32_t crypt_method = 0;
    std::uint64_t incompatible = 0, compatible = 0, autoclear = 0;
    std::uint32_t refcount_order = 4;
    std::uint32_t header_length = 112;
    std::uint8_t compression_type = 0;
    std::vector<std::pair<std::uint32_t, std::vector<std::uint8_t>>> extensions;
    std::string backing;
    std::vector<SnapshotSpec> snapshots;
    std::vector<std::vector<std::uint8_t>> bitmaps; // directory entries
    std::vector<std::uint8_t> luks;
    std::uint64_t l1_size = 0; // 0: as qemu would choose

    std::uint64_t cluster() const { return std::uint64_t{1} << cluster_bits; }
    std::uint64_t snapshot_offset() const { return 4 * cluster(); }
    std::uint64_t bitmap_offset() const { return 5 * cluster(); }
    std::uint64_t luks_offset() const { return 6 * cluster(); }

    void add_luks() {
        crypt_method = 2;
        luks = luks_header();
        std::vector<std::uint8_t> e;
        append_be(e, luks_offset(), 8);
        append_be(e, 2068480, 8);
        extensions.push_back({0x0537be77, e});
    }
    void add_bitmaps(std::vector<std::vector<std::uint8_t>> entries) {
        bitmaps = std::move(entries);
        autoclear |= 1;
        std::size_t dir = 0;
        for (auto& e : bitmaps)
            dir += e.size();
        std::vector<std::uint8_t> e;
        append_be(e, bitmaps.size(), 4);
        append_be(e, 0, 4);
        append_be(e, dir, 8);
        append_be(e, bitmap_offset(), 8);
        extensions.push_back({0x23852875, e});
    }

    std::vector<std::uint8_t> build() const {
        const std::uint64_t cs = cluster();
        std::vector<std::uint8_t> b(7 * cs + (luks.empty() ? 0 : 2 * cs), 0);
        put_be(b, 0, 0x514649fb, 4);
        put_be(b, 4, version, 4);
        put_be(b, 20, cluster_bits, 4);
        put_be(b, 24, size, 8);
        put_be(b, 32, crypt_method, 4);
        const std::uint64_t per_l1 = cs * (cs / 8);
        std::uint64_t l1 = l1_size ? l1_size : (size + per_l1 - 1) / per_l1;
        put_be(b, 36, l1, 4);
        put_be(b, 40, 3 * cs, 8);
        put_be(b, 48, cs, 8);
        put_be(b, 56, 1, 4);
        put_be(b, 60, snapshots.size(), 4);
        put_be(b, 64, snapshots.empty() ? 0 : snapshot_offset(), 8);
        std::size_t off = 72;
        if (version >= 3) {
            put_be(b, 72, incompatible, 8);
            put_be(b, 80, compatible, 8);
            put_be(b, 88, autoclear, 8);
            put_be(b, 96, refcount_order, 4);
            put_be(b, 100, header_length, 4);
            if (header_length > 104)
                b[104] = compression_type;
            off = header_length;
        }
        for (const auto& [magic, data] : extensions) {
            put_be(b, off, magic, 4);
            put_be(b, off + 4, data.size(), 4);
            std::copy(data.begin(), data.end(), b.begin() + off + 8);
            off += 8 + (data.size() + 7) / 8 * 8;
        }
        off += 8; // end-of-extensions marker (zeros)
        if (!backing.empty()) {
            put_be(b, 8, off, 8);
            put_be(b, 16, backing.size(), 4);
            std::copy(backing.begin(), backing.end(), b.begin() + off);
        }
        std::size_t so = snapshot_offset();
        for (const auto& s : snapshots) {
            auto e = snapshot_entry(s);
            if (so + e.size() > b.size())
                b.resize(so + e.size());
            std::copy(e.begin(), e.end(), b.begin() + so);
            so += e.size();
        }
        std::size_t bo = bitmap_offset();
        for (const auto& e : bitmaps) {
            std::copy(e.begin(), e.end(), b.begin() + bo);
            bo += e.size();
        }
        if (!luks.empty())
            std::copy(luks.begin(), luks.end(), b.begin() + luks_offset());
        return b;
    }
};

} // namespace instar::qcow2::test
