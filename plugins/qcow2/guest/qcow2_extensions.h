// qcow2 header extensions (the area between the header and the backing file name in cluster 0).
#pragma once

#include "qcow2_header.h"

#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

inline constexpr uint32_t QCOW2_EXT_MAGIC_END = 0x00000000;
inline constexpr uint32_t QCOW2_EXT_MAGIC_BACKING_FORMAT = 0xe2792aca;
inline constexpr uint32_t QCOW2_EXT_MAGIC_FEATURE_TABLE = 0x6803f857;
inline constexpr uint32_t QCOW2_EXT_MAGIC_BITMAPS = 0x23852875;
inline constexpr uint32_t QCOW2_EXT_MAGIC_CRYPTO_HEADER = 0x0537be77;
inline constexpr uint32_t QCOW2_EXT_MAGIC_DATA_FILE = 0x44415441;

// One extension's framing as stored: type and data length (data follows, padded to 8).
struct Qcow2ExtensionDisk {
    uint8_t magic[4];
    uint8_t len[4];
};
static_assert(sizeof(Qcow2ExtensionDisk) == 8, "qcow2 extension header layout");

// The bitmaps extension's data.
struct Qcow2BitmapsExtensionDisk {
    uint8_t nb_bitmaps[4];
    uint8_t reserved32[4];
    uint8_t bitmap_directory_size[8];
    uint8_t bitmap_directory_offset[8];
};
static_assert(sizeof(Qcow2BitmapsExtensionDisk) == 24, "qcow2 bitmaps extension layout");

// The full disk encryption header pointer's data.
struct Qcow2CryptoHeaderExtensionDisk {
    uint8_t offset[8];
    uint8_t length[8];
};
static_assert(sizeof(Qcow2CryptoHeaderExtensionDisk) == 16, "qcow2 crypto extension layout");

// What the extensions say. Strings point into the caller's header-cluster buffer.
struct Qcow2Extensions {
    const char* backing_format = nullptr; // NUL-free, may be empty
    size_t backing_format_len = 0;
    bool has_data_file = false;
    const char* data_file = nullptr;
    size_t data_file_len = 0;
    // Set only when the bitmaps extension is present and consistent (autoclear bit 0).
    uint32_t nb_bitmaps = 0;
    uint64_t bitmap_directory_size = 0;
    uint64_t bitmap_directory_offset = 0;
    bool has_crypto_header = false;
    uint64_t crypto_header_offset = 0;
    uint64_t crypto_header_length = 0;
};

// Walks the extensions in cluster[start, end), where `cluster` holds at least `end` bytes of the
// file (zero-padded), start = header_length and end = the header's extensions_end().
Status qcow2_extensions_parse(const Qcow2Header& h, const uint8_t* cluster, uint64_t start, uint64_t end,
                              Qcow2Extensions* out);

// What the in-place editors start with: reads the header cluster into `cluster` (cluster_size
// bytes; zeros past the end of a shorter file) and parses its extensions (v3 only: a v2 image's
// *ext stays empty). Strings in *ext point into `cluster`.
Status qcow2_header_cluster_read(guest::BlockDevice& dev, uint64_t file_len, const Qcow2Header& h, uint8_t* cluster,
                                 Qcow2Extensions* ext);

} // namespace instar::qcow2
