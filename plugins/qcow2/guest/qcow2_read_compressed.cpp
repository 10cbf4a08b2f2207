// Compressed cluster reads for the qcow2 reader (qcow2_read_compressed.h).
#include "qcow2_read_compressed.h"

#include "qcow2_bytes.h"
#include "qcow2_header.h"
#include "qcow2_read_map.h"
#include "qcow2_reader.h"

namespace instar::qcow2 {

using guest::Status;

void qcow2_compressed_extent(uint64_t descriptor, uint32_t cluster_bits, uint64_t* offset, uint64_t* size) {
    const uint32_t csize_shift = 62 - (cluster_bits - 8);
    const uint64_t csize_mask = (uint64_t{1} << (cluster_bits - 8)) - 1;
    *offset = descriptor & ((uint64_t{1} << csize_shift) - 1);
    const uint64_t sectors = ((descriptor >> csize_shift) & csize_mask) + 1;
    *size = sectors * QCOW2_COMPRESSED_SECTOR_SIZE - (*offset & (QCOW2_COMPRESSED_SECTOR_SIZE - 1));
}

namespace {

constexpr uint32_t ZSTD_MAGIC = 0xFD2FB528;
constexpr uint32_t ZSTD_SKIPPABLE_MAGIC = 0x184D2A50; // low 4 bits free
constexpr uint32_t ZSTD_BLOCK_HEADER = 3;

uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

} // namespace

size_t zstd_frame_length(const uint8_t* src, size_t len, bool* skippable) {
    *skippable = false;
    if (len < 8)
        return 0;
    const uint32_t magic = load_le32(src);
    if ((magic & 0xFFFFFFF0u) == ZSTD_SKIPPABLE_MAGIC) {
        const uint64_t total = 8 + uint64_t{load_le32(src + 4)};
        *skippable = true;
        return total <= len ? static_cast<size_t>(total) : 0;
    }
    if (magic != ZSTD_MAGIC)
        return 0;
    // Frame header (RFC 8878 3.1.1.1): descriptor, window descriptor, dictionary id, content size.
    const uint8_t fhd = src[4];
    if (fhd & 0x08)
        return 0; // reserved bit
    const bool single_segment = (fhd >> 5) & 1;
    static constexpr uint8_t DID_BYTES[4] = {0, 1, 2, 4};
    static constexpr uint8_t FCS_BYTES[4] = {0, 2, 4, 8};
    const uint32_t fcs_flag = fhd >> 6;
    const size_t fcs = fcs_flag == 0 ? (single_segment ? 1 : 0) : FCS_BYTES[fcs_flag];
    size_t pos = 5 + (single_segment ? 0 : 1) + DID_BYTES[fhd & 3] + fcs;
    // Blocks: each advances pos by at least 3 bytes, so the walk ends within len / 3 steps.
    for (;;) {
        if (pos > len || len - pos < ZSTD_BLOCK_HEADER)
            return 0;
        const uint32_t bh = uint32_t{src[pos]} | (uint32_t{src[pos + 1]} << 8) | (uint32_t{src[pos + 2]} << 16);
        pos += ZSTD_BLOCK_HEADER;
        const uint32_t type = (bh >> 1) & 3;
        const size_t body = type == 1 ? 1 : type == 3 ? SIZE_MAX : bh >> 3;
        if (body == SIZE_MAX || body > len - pos)
            return 0;
        pos += body;
        if (bh & 1)
            break;
    }
    if (fhd & 0x04) { // content checksum
        if (len - pos < 4)
            return 0;
        pos += 4;
    }
    return pos;
}

Status qcow2_decompress_cluster(const guest::Codecs* codecs, uint8_t compression_type, const uint8_t* src,
                                size_t src_len, uint8_t* dst, size_t cluster_size) {
    if (compression_type == QCOW2_COMPRESSION_TYPE_ZLIB) {
        if (codecs == nullptr || codecs->inflate == nullptr)
            return Status::Unsupported;
        size_t n = 0;
        const Status st = codecs->inflate(src, src_len, dst, cluster_size, &n, -12);
        // qemu's qcow2_zlib_decompress: success means a full cluster (Z_STREAM_END or Z_BUF_ERROR
        // with no output space left); the input may hold more (it is sector-granular).
        if ((st == Status::Ok || st == Status::TooLarge) && n == cluster_size)
            return Status::Ok;
        return st == Status::NoMemory ? st : Status::Corrupt;
    }
    if (codecs == nullptr || codecs->zstd_decompress == nullptr)
        return Status::Unsupported;
    // qemu's qcow2_zstd_decompress streams frames until the cluster is full and wants the last
    // frame fully flushed there; each frame here must therefore fit the space left.
    size_t in = 0;
    size_t out = 0;
    while (out < cluster_size) {
        bool skippable = false;
        const size_t frame = zstd_frame_length(src + in, src_len - in, &skippable);
        if (frame == 0)
            return Status::Corrupt;
        if (!skippable) {
            size_t n = 0;
            const Status st = codecs->zstd_decompress(src + in, frame, dst + out, cluster_size - out, &n);
            if (st == Status::NoMemory)
                return st;
            if (st != Status::Ok)
                return Status::Corrupt;
            out += n;
        }
        in += frame;
    }
    return Status::Ok;
}

CompressedCache::~CompressedCache() {
    const size_t cs = size_t{1} << cluster_bits_;
    if (in_ != nullptr)
        alloc_.deallocate(in_, 2 * cs);
    if (out_ != nullptr)
        alloc_.deallocate(out_, cs);
}

Status CompressedCache::cluster(uint64_t descriptor, const uint8_t** out) {
    const size_t cs = size_t{1} << cluster_bits_;
    if (valid_ && descriptor_ == descriptor) {
        *out = out_;
        return Status::Ok;
    }
    if (in_ == nullptr) {
        in_ = static_cast<uint8_t*>(alloc_.allocate(2 * cs, 16));
        out_ = static_cast<uint8_t*>(alloc_.allocate(cs, 16));
        if (in_ == nullptr || out_ == nullptr)
            return Status::NoMemory;
    }
    valid_ = false;
    uint64_t offset = 0;
    uint64_t size = 0;
    qcow2_compressed_extent(descriptor, cluster_bits_, &offset, &size); // size <= 2 * cs
    ReasonText r;
    if (!qcow2_region_in_file(image_.size(), offset, size, cs)) {
        r.add("Compressed cluster at offset ").hex(offset).add(" size ").hex(size)
            .add(" exceeds the end of the file by one cluster or more").send(reasons_);
        return Status::Corrupt;
    }
    Status st = read_zero_padded(image_, offset, in_, static_cast<size_t>(size));
    if (st != Status::Ok)
        return st;
    st = qcow2_decompress_cluster(codecs_, type_, in_, static_cast<size_t>(size), out_, cs);
    if (st == Status::Unsupported) {
        r.add(type_ == QCOW2_COMPRESSION_TYPE_ZLIB ? "zlib" : "zstd").add(" decompression is not available").send(reasons_);
        return st;
    }
    if (st != Status::Ok) {
        if (st == Status::Corrupt)
            r.add("Compressed cluster at offset ").hex(offset).add(" size ").hex(size)
                .add(" does not decompress to one cluster").send(reasons_);
        return st;
    }
    valid_ = true;
    descriptor_ = descriptor;
    *out = out_;
    return Status::Ok;
}

} // namespace instar::qcow2
