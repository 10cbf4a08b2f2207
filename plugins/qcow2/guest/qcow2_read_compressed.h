// Compressed qcow2 clusters: the L2 descriptor, the bounded read of the compressed bytes, and
// decompression (zlib raw deflate or zstd frames) of exactly one cluster, as qemu accepts them.
#pragma once

#include "qcow2_read_reason.h"

#include <instar/guest/format_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// qemu's QCOW2_COMPRESSED_SECTOR_SIZE: the descriptor counts 512-byte sectors.
inline constexpr uint64_t QCOW2_COMPRESSED_SECTOR_SIZE = 512;

// Where a compressed cluster's bytes lie (qemu's qcow2_parse_compressed_l2_entry). The size is at
// most 2 clusters (the sector count field has cluster_bits - 8 bits).
void qcow2_compressed_extent(uint64_t descriptor, uint32_t cluster_bits, uint64_t* offset, uint64_t* size);

// Length of the zstd frame (or skippable frame) at the start of src, from its header and block
// headers; 0 when src does not hold one whole frame.
size_t zstd_frame_length(const uint8_t* src, size_t len, bool* skippable);

// Decompresses one cluster (dst holds exactly cluster_size bytes) as qemu does: zlib must fill the
// cluster (the rest of the input is ignored); zstd frames are decoded one after another until the
// cluster is full, each frame ending inside it. Corrupt otherwise.
guest::Status qcow2_decompress_cluster(const guest::Codecs* codecs, uint8_t compression_type, const uint8_t* src,
                                size_t src_len, uint8_t* dst, size_t cluster_size);

// The last decompressed cluster, kept so that reads smaller than a cluster decompress it once.
class CompressedCache {
public:
    CompressedCache(guest::BlockDevice& image, guest::Allocator& alloc, const guest::Codecs* codecs,
                    uint8_t compression_type, uint32_t cluster_bits, guest::ReasonSink* reasons)
        : image_(image), alloc_(alloc), codecs_(codecs), type_(compression_type), cluster_bits_(cluster_bits),
          reasons_(reasons) {}
    ~CompressedCache();
    CompressedCache(const CompressedCache&) = delete;
    CompressedCache& operator=(const CompressedCache&) = delete;

    // The cluster's decompressed bytes (cluster_size of them), valid until the next call.
    guest::Status cluster(uint64_t descriptor, const uint8_t** out);

private:
    guest::BlockDevice& image_;
    guest::Allocator& alloc_;
    const guest::Codecs* codecs_;
    uint8_t type_;
    uint32_t cluster_bits_;
    guest::ReasonSink* reasons_;
    uint8_t* in_ = nullptr;  // 2 clusters: the largest compressed size a descriptor can give
    uint8_t* out_ = nullptr; // 1 cluster
    bool valid_ = false;
    uint64_t descriptor_ = 0;
};

} // namespace instar::qcow2
