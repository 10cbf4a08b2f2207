// The QED format's guest half: the header, qemu's open rules (block/qed.c bdrv_qed_do_open), probe and info.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qed {

inline constexpr uint32_t QED_MAGIC = 0x00444551; // "QED\0" little-endian
inline constexpr size_t QED_HEADER_SIZE = 64;      // sizeof(QEDHeader)
inline constexpr uint64_t QED_F_BACKING_FILE = 0x01;
inline constexpr uint64_t QED_F_NEED_CHECK = 0x02;
inline constexpr uint64_t QED_F_BACKING_FORMAT_NO_PROBE = 0x04;
inline constexpr uint64_t QED_FEATURE_MASK = QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE;
inline constexpr uint32_t QED_MIN_CLUSTER_SIZE = 4 * 1024;
inline constexpr uint32_t QED_MAX_CLUSTER_SIZE = 64 * 1024 * 1024;
inline constexpr uint32_t QED_MIN_TABLE_SIZE = 1;
inline constexpr uint32_t QED_MAX_TABLE_SIZE = 16;
inline constexpr uint32_t QED_DEFAULT_CLUSTER_SIZE = 65536;
inline constexpr uint32_t QED_DEFAULT_TABLE_SIZE = 4;
// qemu reads the backing file name into bs->backing_file (PATH_MAX bytes with its NUL): longer is
// "Failed to read backing filename".
inline constexpr uint32_t QED_MAX_BACKING_NAME = 4095;
// Tables (L1, L2) held whole in guest memory by the writer and the check: qemu allows
// cluster_size x table_size up to 1 GiB; 32 MiB covers every table of 2 MiB clusters and below,
// and two of them fit in the default 256 MiB guest.
inline constexpr uint64_t QED_MAX_TABLE_BYTES = 32ull << 20;

struct QedHeader {
    uint32_t magic;
    uint32_t cluster_size;
    uint32_t table_size;
    uint32_t header_size;
    uint64_t features;
    uint64_t compat_features;
    uint64_t autoclear_features;
    uint64_t l1_table_offset;
    uint64_t image_size;
    uint32_t backing_filename_offset;
    uint32_t backing_filename_size;
};

void qed_header_decode(const uint8_t* raw, QedHeader* h);
void qed_header_encode(const QedHeader& h, uint8_t* raw);

// An opened image: the header and the derived geometry, as bdrv_qed_do_open leaves BDRVQEDState.
struct QedImage {
    QedHeader header;
    uint64_t file_size;     // the file's length rounded down to a cluster
    uint32_t table_nelems;  // entries per table
    uint32_t l2_shift;
    uint32_t l1_shift;
    uint32_t l2_mask;
    bool has_backing;       // a non-empty backing file name
    bool backing_raw;       // QED_F_BACKING_FORMAT_NO_PROBE: the backing format is raw
    uint32_t backing_len;
    char backing[QED_MAX_BACKING_NAME + 1];

    uint64_t cluster_size() const { return header.cluster_size; }
    uint64_t table_bytes() const { return uint64_t{header.cluster_size} * header.table_size; }
    uint64_t start_of_cluster(uint64_t o) const { return o & ~(uint64_t{header.cluster_size} - 1); }
    uint64_t offset_into_cluster(uint64_t o) const { return o & (uint64_t{header.cluster_size} - 1); }
    // qemu's qed_bytes_to_clusters, divisor (cluster_size - 1) and all: check's cluster numbering
    // depends on it.
    uint64_t bytes_to_clusters(uint64_t bytes) const {
        return start_of_cluster(bytes + (header.cluster_size - 1)) / (header.cluster_size - 1);
    }
    bool check_cluster_offset(uint64_t offset) const {
        if (offset & (uint64_t{header.cluster_size} - 1))
            return false;
        return offset >= uint64_t{header.header_size} * header.cluster_size && offset < file_size;
    }
    // qemu's qed_check_table_offset (a table_size of 1 never passes its overflow test: reproduced).
    bool check_table_offset(uint64_t offset) const {
        const uint64_t end = offset + uint64_t{header.table_size - 1} * header.cluster_size;
        if (end <= offset)
            return false;
        return check_cluster_offset(offset) && check_cluster_offset(end);
    }
};

// The cluster-size, table-size and image-size rules qemu shares between open and create.
bool qed_cluster_size_valid(uint64_t cluster_size);
bool qed_table_size_valid(uint64_t table_size);
uint64_t qed_max_image_size(uint64_t cluster_size, uint64_t table_size);
bool qed_image_size_valid(uint64_t image_size, uint64_t cluster_size, uint64_t table_size);

// bdrv_qed_do_open's checks, in its order. *why gets qemu's words for a refusal.
guest::Status qed_load(guest::BlockDevice& dev, QedImage* out, const char** why);

guest::Status probe(guest::BlockDevice& dev, bool* match);
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::qed
