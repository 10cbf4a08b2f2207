// The header cluster a new qcow2 image ends with: qemu's qcow2_update_header (header, backing
// format and feature-table extensions, end marker, backing file name).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// A header extension qemu does not know: kept as it was (data points into the caller's buffer).
struct Qcow2RawExtension {
    uint32_t magic;
    const uint8_t* data;
    uint32_t len;
};

// The state qcow2_update_header serialises (the fields after data_file only matter for an existing
// image: amend rewrites its header with them; a new image leaves them zero).
struct Qcow2HeaderState {
    uint32_t version = 3;
    uint32_t cluster_bits = 16;
    uint64_t size = 0;
    uint32_t l1_size = 0;
    uint64_t l1_table_offset = 0;
    uint64_t refcount_table_offset = 0;
    uint32_t refcount_table_clusters = 0;
    uint64_t incompatible_features = 0;
    uint64_t compatible_features = 0;
    uint64_t autoclear_features = 0;
    uint32_t refcount_order = 4;
    uint8_t compression_type = 0;
    const char* backing_file = nullptr;
    const char* backing_fmt = nullptr;
    const char* data_file = nullptr; // the external data file extension's name, or nullptr
    uint32_t crypt_method = 0;
    uint32_t nb_snapshots = 0;
    uint64_t snapshots_offset = 0;
    uint64_t crypto_header_offset = 0; // the crypto header extension when non-zero
    uint64_t crypto_header_length = 0;
    uint32_t nb_bitmaps = 0;           // the bitmaps extension when non-zero
    uint64_t bitmap_directory_size = 0;
    uint64_t bitmap_directory_offset = 0;
    const uint8_t* unknown_header_fields = nullptr; // v3 header bytes past 112, kept (after the v2 header too)
    size_t unknown_header_fields_len = 0;
    const Qcow2RawExtension* unknown_extensions = nullptr;
    size_t unknown_extension_count = 0;
};

// The feature-name table qemu writes for v3 images with clusters above 4 KiB (8 names, 48 bytes
// each); smaller clusters leave it out to keep room for a backing file name.
inline constexpr uint32_t QCOW2_FEATURE_TABLE_MIN_CLUSTER = 4096;
inline constexpr size_t QCOW2_FEATURE_ENTRY_SIZE = 48;
inline constexpr size_t QCOW2_FEATURE_COUNT = 8;

// Writes the whole header cluster (`cluster_size` bytes) into `buf`. False when the extensions and
// the backing file name do not fit in it (qemu's -ENOSPC).
bool qcow2_build_header_cluster(const Qcow2HeaderState& h, uint8_t* buf, size_t cluster_size);

} // namespace instar::qcow2
