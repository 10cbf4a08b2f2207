// The qcow (version 1) format's guest half: the header, qemu's open rules (block/qcow.c qcow_open),
// probe and info.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/format_util.h>
#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow {

inline constexpr uint32_t QCOW_MAGIC = 0x514649fb; // "QFI\xfb" big-endian
inline constexpr uint32_t QCOW_VERSION = 1;
inline constexpr size_t QCOW_HEADER_SIZE = 48; // sizeof(QCowHeader)
inline constexpr uint32_t QCOW_CRYPT_NONE = 0;
inline constexpr uint32_t QCOW_CRYPT_AES = 1;
inline constexpr uint64_t QCOW_OFLAG_COMPRESSED = 1ull << 63;
// qemu's cluster_bits and l2_bits bounds (512 bytes to 64 KiB clusters and L2 tables).
inline constexpr uint32_t QCOW_MIN_CLUSTER_BITS = 9;
inline constexpr uint32_t QCOW_MAX_CLUSTER_BITS = 16;
inline constexpr uint32_t QCOW_MIN_L2_BITS = 9 - 3;
inline constexpr uint32_t QCOW_MAX_L2_BITS = 16 - 3;
// qemu reads at most 1023 bytes of backing file name ("Backing file name too long").
inline constexpr uint32_t QCOW_MAX_BACKING_NAME = 1023;
// qemu's L1 bound: l1_size <= INT_MAX / sizeof(uint64_t) ("Image too large").
inline constexpr uint64_t QCOW_MAX_L1_ENTRIES = 0x7fffffffull / 8;
// qemu's block layer refuses requests ending past BDRV_MAX_LENGTH (INT64_MAX aligned down to 1 GiB)
// with EIO; past the end of the file (but below this) it reads zeros.
inline constexpr uint64_t QCOW_MAX_FILE_OFFSET = (1ull << 63) - (1ull << 30);
// The writer holds the whole L1 table in guest memory: 32 MiB is 4 Mi entries, 8 TiB of disk at
// the geometry qemu creates (2 MiB per L1 entry); qemu itself writes such an L1 sector by sector.
inline constexpr uint64_t QCOW_MAX_WRITER_L1_BYTES = 32ull << 20;

inline uint32_t load_be32(const uint8_t* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline uint64_t load_be64(const uint8_t* p) { return uint64_t{load_be32(p)} << 32 | load_be32(p + 4); }
inline void store_be32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
inline void store_be64(uint8_t* p, uint64_t v) {
    store_be32(p, static_cast<uint32_t>(v >> 32));
    store_be32(p + 4, static_cast<uint32_t>(v));
}

struct QcowHeader {
    uint32_t magic;
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t mtime;
    uint64_t size;
    uint8_t cluster_bits;
    uint8_t l2_bits;
    uint16_t padding;
    uint32_t crypt_method;
    uint64_t l1_table_offset;
};

void qcow_header_decode(const uint8_t* raw, QcowHeader* h);
void qcow_header_encode(const QcowHeader& h, uint8_t* raw);

// An opened image, as qcow_open leaves BDRVQcowState.
struct QcowImage {
    QcowHeader header;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_bits;
    uint64_t l2_size;           // entries per L2 table
    uint64_t l1_size;           // entries in the L1 table
    uint64_t cluster_offset_mask;
    uint64_t virtual_size;      // whole sectors (bs->total_sectors * 512)
    bool has_backing;           // a non-empty backing file name
    uint32_t backing_len;
    char backing[QCOW_MAX_BACKING_NAME + 1];
    // A reason with a number in it (the version refusal), when *why points here.
    char text[96];
};

// qcow_open's checks, in its order. *why gets qemu's words for a refusal.
guest::Status qcow_load(guest::BlockDevice& dev, QcowImage* out, const char** why);

// Bytes [offset, offset + len) of the file, zeros past its end (qemu's block layer does the same).
using guest::read_padded;

guest::Status probe(guest::BlockDevice& dev, bool* match);
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::qcow
