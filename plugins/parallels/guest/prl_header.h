// The Parallels (ploop) image header and the open checks of qemu's block/parallels.c, shared by
// info, the reader, the writer and check. Two qemu profiles: 7.2 and 10.0 (data_start/data_end
// differ, 10.0 refuses a too large ext_off).
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::parallels {

inline constexpr size_t PRL_HEADER_SIZE = 64; // sizeof(ParallelsHeader)
inline constexpr uint64_t PRL_SECTOR = 512;
inline constexpr uint32_t PRL_VERSION = 2;
inline constexpr uint32_t PRL_INUSE_MAGIC = 0x746F6E59;
inline constexpr char PRL_MAGIC[] = "WithoutFreeSpace";  // offsets in sectors
inline constexpr char PRL_MAGIC2[] = "WithouFreSpacExt"; // offsets in clusters
inline constexpr uint32_t PRL_HEADS = 16;                 // qemu's HEADS_NUMBER
inline constexpr uint32_t PRL_SEC_IN_CYL = 32;            // qemu's SEC_IN_CYL
inline constexpr uint64_t PRL_DEFAULT_CLUSTER = 1048576;
// qemu's limits, checked on open: the cluster (tracks sectors) below INT32_MAX/513 sectors, the
// BAT below INT_MAX/4 entries (qemu allocates it whole; instar pages it), ext_off below 2^54.
inline constexpr uint32_t PRL_MAX_TRACKS = 2147483647u / 513u;
inline constexpr uint32_t PRL_MAX_BAT = 2147483647u / 4u;
inline constexpr uint64_t PRL_MAX_EXT_OFF = ((uint64_t{1} << 63) - 1) >> 9;
// qemu reads the header and BAT in one request of ROUND_UP(64 + 4 * bat_entries, the file's memory
// alignment: a host page) bytes; a request over BDRV_REQUEST_MAX_BYTES (2^31 - 512) fails with EIO.
inline constexpr uint64_t PRL_QEMU_MEM_ALIGN = 4096;
inline constexpr uint64_t PRL_QEMU_MAX_REQUEST = (uint64_t{1} << 31) - 512;
// Host offsets instar follows: below 2^62 bytes, so offset + cluster never overflows (a BAT entry
// times a 4 M-sector cluster could reach 2^63); qemu fails such requests with EIO as well.
inline constexpr uint64_t PRL_MAX_HOST_OFFSET = uint64_t{1} << 62;

namespace off {
inline constexpr size_t magic = 0, version = 16, heads = 20, cylinders = 24, tracks = 28, bat_entries = 32,
                        nb_sectors = 36, inuse = 44, data_off = 48, flags = 52, ext_off = 56;
}

inline uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
inline uint64_t load_le64(const uint8_t* p) { return load_le32(p) | (static_cast<uint64_t>(load_le32(p + 4)) << 32); }
inline void store_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_le64(uint8_t* p, uint64_t v) {
    store_le32(p, static_cast<uint32_t>(v));
    store_le32(p + 4, static_cast<uint32_t>(v >> 32));
}

// The BAT entry `i` lies at this byte offset (qemu's bat_entry_off, without its uint32 truncation:
// i < PRL_MAX_BAT keeps it below 2^31).
inline uint64_t prl_bat_entry_off(uint64_t i) { return PRL_HEADER_SIZE + 4 * i; }

// The 10.0 profile (qemu 8.1 reworked open and check); anything older is 7.2's.
inline bool prl_v10(uint32_t qemu_version) { return qemu_version >= 80100; }

struct PrlImage {
    uint8_t raw[PRL_HEADER_SIZE];
    bool old_magic;          // "WithoutFreeSpace": BAT entries in sectors, data_off may be 0
    uint32_t tracks;         // sectors per cluster
    uint32_t bat_entries;
    uint32_t off_multiplier; // 1 (old magic) or tracks
    uint32_t inuse;
    uint32_t data_off;
    uint64_t ext_off;
    uint64_t total_sectors;  // virtual size / 512
    uint64_t cluster_size;   // tracks * 512
    uint64_t file_size;      // the file's length at open, rounded up to a sector (qemu's bdrv_getlength)
    char why_buf[192];       // a formatted open error (prl_load's *why may point here)

    uint64_t virtual_size() const { return total_sectors * PRL_SECTOR; }
    bool unclean() const { return inuse == PRL_INUSE_MAGIC; }
    // qemu's bat2sect: entry * off_multiplier (below 2^32 * 2^22: no overflow).
    uint64_t entry_sector(uint32_t e) const { return uint64_t{e} * off_multiplier; }
};

// Reads and checks the header as qemu's parallels_open does, in its order and with its messages
// (*why, qemu's words). A format extension (ext_off != 0, dirty bitmaps behind an MD5 checksum) is
// checked as qemu's read-only open does (prl_ext.h); an open for writing refuses it as Unsupported
// (qemu ignores it with a warning and then writes over it: divergence parallels-format-extension).
enum class PrlAccess { Read, Write };
guest::Status prl_load(guest::BlockDevice& dev, uint32_t qemu_version, PrlImage* img, const char** why,
                       PrlAccess access = PrlAccess::Read);

// BAT entries [first, first + count) (count <= PRL_BAT_PAGE), zeros past the end of the file (qemu
// reads the BAT through the block layer, which pads with zeros).
inline constexpr uint32_t PRL_BAT_PAGE = 1024;
guest::Status prl_read_bat(guest::BlockDevice& dev, uint64_t first, uint64_t count, uint32_t* out);

// BAT entries with a byte inside a file of `file` bytes (a cut entry keeps its bytes there, zeros
// after): the rest read as 0 (prl_read_bat).
inline uint64_t prl_entries_in_file(const PrlImage& img, uint64_t file) {
    const uint64_t in_file = file > PRL_HEADER_SIZE ? (file - PRL_HEADER_SIZE + 3) / 4 : 0;
    return in_file < img.bat_entries ? in_file : img.bat_entries;
}

// Calls fn(i, entry) for every BAT entry inside the file, page by page; fn returns false to stop.
template <typename Fn>
guest::Status prl_each_entry(guest::BlockDevice& dev, const PrlImage& img, Fn&& fn) {
    const uint64_t scan = prl_entries_in_file(img, dev.size());
    uint32_t page[PRL_BAT_PAGE];
    for (uint64_t first = 0; first < scan; first += PRL_BAT_PAGE) {
        const uint64_t n = scan - first < PRL_BAT_PAGE ? scan - first : PRL_BAT_PAGE;
        if (const guest::Status st = prl_read_bat(dev, first, n, page); st != guest::Status::Ok)
            return st;
        for (uint64_t i = 0; i < n; ++i)
            if (!fn(first + i, page[i]))
                return guest::Status::Ok;
    }
    return guest::Status::Ok;
}

// qemu 10.0's parallels_test_data_off: true when data_off is valid; *start gets the data start in
// sectors either way (the corrected value when invalid).
bool prl_test_data_off(const PrlImage& img, uint64_t file_sectors, uint32_t* start);

// Where the next cluster goes (qemu's s->data_end, in sectors) after open, per profile. Scans the
// BAT entries that lie inside the file (the rest read as 0).
guest::Status prl_data_end(guest::BlockDevice& dev, const PrlImage& img, uint32_t qemu_version, uint64_t* out);

} // namespace instar::parallels
