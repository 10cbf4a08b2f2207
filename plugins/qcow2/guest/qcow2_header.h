// The qcow2 file header (versions 2 and 3): on-disk layout, parsed form and validation.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

using guest::Status;

inline constexpr uint32_t QCOW_MAGIC = 0x514649fb; // "QFI\xfb"

inline constexpr uint32_t QCOW_CRYPT_NONE = 0;
inline constexpr uint32_t QCOW_CRYPT_AES = 1;
inline constexpr uint32_t QCOW_CRYPT_LUKS = 2;

inline constexpr uint64_t QCOW2_INCOMPAT_DIRTY = 1u << 0;
inline constexpr uint64_t QCOW2_INCOMPAT_CORRUPT = 1u << 1;
inline constexpr uint64_t QCOW2_INCOMPAT_DATA_FILE = 1u << 2;
inline constexpr uint64_t QCOW2_INCOMPAT_COMPRESSION = 1u << 3;
inline constexpr uint64_t QCOW2_INCOMPAT_EXTL2 = 1u << 4;
inline constexpr uint64_t QCOW2_INCOMPAT_MASK = 0x1f; // every bit the spec defines
inline constexpr uint64_t QCOW2_COMPAT_LAZY_REFCOUNTS = 1u << 0;
inline constexpr uint64_t QCOW2_AUTOCLEAR_BITMAPS = 1u << 0;
inline constexpr uint64_t QCOW2_AUTOCLEAR_DATA_FILE_RAW = 1u << 1;

inline constexpr uint8_t QCOW2_COMPRESSION_TYPE_ZLIB = 0;
inline constexpr uint8_t QCOW2_COMPRESSION_TYPE_ZSTD = 1;

inline constexpr uint32_t QCOW2_V2_HEADER_LENGTH = 72;
inline constexpr uint32_t QCOW2_V3_MIN_HEADER_LENGTH = 104;
inline constexpr uint32_t QCOW2_COMPRESSION_TYPE_OFFSET = 104;

// The header as stored (big-endian). v2 ends after snapshots_offset (72 bytes).
struct Qcow2HeaderDisk {
    uint8_t magic[4];
    uint8_t version[4];
    uint8_t backing_file_offset[8];
    uint8_t backing_file_size[4];
    uint8_t cluster_bits[4];
    uint8_t size[8];
    uint8_t crypt_method[4];
    uint8_t l1_size[4];
    uint8_t l1_table_offset[8];
    uint8_t refcount_table_offset[8];
    uint8_t refcount_table_clusters[4];
    uint8_t nb_snapshots[4];
    uint8_t snapshots_offset[8];
    // version 3
    uint8_t incompatible_features[8];
    uint8_t compatible_features[8];
    uint8_t autoclear_features[8];
    uint8_t refcount_order[4];
    uint8_t header_length[4];
    uint8_t compression_type[1]; // present when header_length > 104
    uint8_t padding[7];
};
static_assert(sizeof(Qcow2HeaderDisk) == 112, "qcow2 header layout");

struct Qcow2Header {
    uint32_t version = 0;
    uint64_t backing_file_offset = 0;
    uint32_t backing_file_size = 0;
    uint32_t cluster_bits = 0;
    uint64_t size = 0;
    uint32_t crypt_method = 0;
    uint32_t l1_size = 0;
    uint64_t l1_table_offset = 0;
    uint64_t refcount_table_offset = 0;
    uint32_t refcount_table_clusters = 0;
    uint32_t nb_snapshots = 0;
    uint64_t snapshots_offset = 0;
    uint64_t incompatible_features = 0;
    uint64_t compatible_features = 0;
    uint64_t autoclear_features = 0;
    uint32_t refcount_order = 4;
    uint32_t header_length = QCOW2_V2_HEADER_LENGTH;
    uint8_t compression_type = QCOW2_COMPRESSION_TYPE_ZLIB;

    uint64_t cluster_size() const { return uint64_t{1} << cluster_bits; }
    // Where header extensions end: the backing file name, if any, follows them in cluster 0.
    uint64_t extensions_end() const { return backing_file_offset ? backing_file_offset : cluster_size(); }
};

// Parses and validates the header the way qemu's qcow2 open does (for a read-only open: the dirty
// and corrupt bits are reported, not refused). `disk` must be the first 112 bytes of the file,
// zero-padded if the file is shorter.
// On refusal, `why` (if given) holds qemu-img's words for the problem, or for a limit stricter than
// qemu's, the limit and the value; len 0 when there is no message.
struct HeaderProblem {
    char text[128] = {};
    size_t len = 0;
};
Status qcow2_header_parse(const Qcow2HeaderDisk& disk, Qcow2Header* out, HeaderProblem* why = nullptr);

// qemu's validate_table_offset: a table of entries * entry_len bytes at a cluster-aligned offset
// whose end does not overflow int64.
bool qcow2_table_offset_valid(const Qcow2Header& h, uint64_t offset, uint64_t entries, uint64_t entry_len);

// Metadata of `bytes` bytes at `offset` in a file of `file_len` bytes: cluster-aligned (`cs` a power
// of two), past the header cluster, wholly inside the file.
inline bool qcow2_placed_in_file(uint64_t offset, uint64_t bytes, uint64_t cs, uint64_t file_len) {
    return (offset & (cs - 1)) == 0 && offset >= cs && offset < file_len && bytes <= file_len - offset;
}

} // namespace instar::qcow2
