// The qcow2 reader: status() and read() over the L1/L2 map (qcow2_read.h).
#include "qcow2_read.h"

#include "qcow2_read_compressed.h"
#include "qcow2_read_internal.h"
#include "qcow2_read_map.h"
#include "qcow2_reader.h"

#include <instar/guest/arena_new.h>

namespace instar::qcow2 {
namespace {

using guest::Allocation;
using guest::Extent;

// Lookups one status() call may merge: each costs at most one L2 slice read, so a call's work is
// bounded while a run over many small L2 tables still comes back as one long extent.
constexpr uint32_t QCOW2_STATUS_MAX_LOOKUPS = 1024;

class Qcow2Reader final : public guest::ImageReader {
public:
    Qcow2Reader(const Qcow2ReadSetup& s, Allocator& alloc, const guest::Codecs* codecs, guest::ReasonSink* reasons)
        : alloc_(alloc), data_(*s.data), data_device_(s.data_device), size_(s.virtual_size),
          map_(*s.image, *s.data, alloc, s.geometry, reasons),
          compressed_(*s.image, alloc, codecs, s.compression_type, s.geometry.cluster_bits, reasons),
          cipher_(s.cipher), crypt_physical_(s.crypt_physical_offset) {}

    Status init() { return map_.init(); }

    uint64_t virtual_size() const override { return size_; }

    // "Corrupt" concerns the structure that failed validation (one L2 entry, one L2 table, one
    // compressed cluster): qemu's corruption events are fatal only on images opened read-write,
    // and every instar reader is a read-only open ("further non-fatal corruption events will be
    // suppressed"), so the rest of the image stays readable (convert --salvage relies on it).
    Status status(uint64_t offset, uint64_t length, Extent* out) override { return status_at(offset, length, out); }

    Status read(uint64_t offset, void* buf, size_t len) override { return read_range(offset, buf, len); }

    // qcow2_co_block_status asks for at most INT_MAX bytes, and qcow2_get_host_offset answers within
    // one L2 slice (qemu-img's slices are whole L2 tables: l2-cache-entry-size defaults to the
    // cluster size).
    uint64_t status_boundary(uint64_t offset) const override {
        constexpr uint64_t INT_MAX_BYTES = 0x7fffffff;
        const uint32_t span_bits = map_.geometry().l2_bits + map_.geometry().cluster_bits;
        const uint64_t slice_end = span_bits >= 63 ? UINT64_MAX : ((offset >> span_bits) + 1) << span_bits;
        return slice_end - offset < INT_MAX_BYTES ? slice_end : offset + INT_MAX_BYTES;
    }

    // read_api.h: data clusters are device reads straight into buf; encrypted ones go through a bounce
    // buffer on the stack (read at once, decrypted there, copied in) and compressed ones through the
    // decompression cache; the L1 window and L2 slices are caches of what was read; a failure keeps
    // no state, so made again it fails again with the same reason.
    bool reads_ahead_safe() const override { return true; }

    void close() override {
        luks::delete_wiped(alloc_, cipher_);
        guest::arena_delete(alloc_, this);
    }

private:
    Status status_at(uint64_t offset, uint64_t length, Extent* out) {
        if (offset >= size_ || length == 0 || length > size_ - offset)
            return Status::Invalid;
        Mapping m;
        if (const Status st = map_.lookup(offset, length, &m); st != Status::Ok)
            return st;
        *out = to_extent(m);
        for (uint32_t n = 1; n < QCOW2_STATUS_MAX_LOOKUPS && out->length < length; ++n) {
            Mapping next;
            const uint64_t at = offset + out->length;
            if (map_.lookup(at, length - out->length, &next) != Status::Ok)
                break; // the next call starts there and reports it
            const Extent e = to_extent(next);
            if (e.allocation != out->allocation || e.flags != out->flags ||
                ((e.flags & guest::EXTENT_OFFSET_VALID) && e.offset != out->offset + out->length))
                break;
            out->length += e.length;
        }
        return Status::Ok;
    }

    Status read_range(uint64_t offset, void* buf, size_t len) {
        if (offset > size_ || len > size_ - offset)
            return Status::Invalid;
        auto* dst = static_cast<uint8_t*>(buf);
        const uint64_t cs = map_.geometry().cluster_size();
        while (len > 0) {
            Mapping m;
            if (const Status st = map_.lookup(offset, len, &m); st != Status::Ok)
                return st;
            const size_t n = static_cast<size_t>(m.length); // <= len
            if (m.kind == ClusterKind::Normal && cipher_ != nullptr) {
                if (const Status st = read_encrypted(m.host, offset, dst, n); st != Status::Ok)
                    return st;
            } else if (m.kind == ClusterKind::Normal) {
                // Checked against the file by the lookup; a last, partly written cluster reads zeros past its end.
                if (const Status st = read_zero_padded(data_, m.host, dst, n); st != Status::Ok)
                    return st;
            } else if (m.kind == ClusterKind::Compressed) {
                const uint8_t* cluster = nullptr;
                if (const Status st = compressed_.cluster(m.host, &cluster); st != Status::Ok)
                    return st;
                __builtin_memcpy(dst, cluster + (offset & (cs - 1)), n); // the run stays in one cluster
            } else {
                __builtin_memset(dst, 0, n);
            }
            dst += n;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    // An encrypted data run: whole 512-byte sectors (qemu encrypts per sector) read into a bounce
    // buffer, decrypted with the sector number of the host offset (LUKS) or guest offset (AES).
    Status read_encrypted(uint64_t host, uint64_t guest_offset, uint8_t* dst, size_t n) {
        constexpr size_t SECTOR = 512;
        constexpr size_t CHUNK = 64 * 1024; // bounce buffer on the stack's budget
        alignas(16) uint8_t bounce[CHUNK + SECTOR];
        while (n > 0) {
            const size_t skip = static_cast<size_t>(host % SECTOR);
            size_t take = n < CHUNK ? n : CHUNK;
            const size_t span = (skip + take + SECTOR - 1) / SECTOR * SECTOR;
            if (const Status st = read_zero_padded(data_, host - skip, bounce, span); st != Status::Ok)
                return st;
            const uint64_t first = (crypt_physical_ ? host - skip : guest_offset - skip) / SECTOR;
            cipher_->decrypt(first, bounce, span);
            __builtin_memcpy(dst, bounce + skip, take);
            dst += take;
            host += take;
            guest_offset += take;
            n -= take;
        }
        return Status::Ok;
    }

    Extent to_extent(const Mapping& m) const {
        Extent e{};
        e.length = m.length;
        switch (m.kind) {
        case ClusterKind::Normal:
            e.allocation = Allocation::Data;
            e.flags = guest::EXTENT_OFFSET_VALID;
            break;
        case ClusterKind::Compressed:
            e.allocation = Allocation::Data;
            e.flags = guest::EXTENT_COMPRESSED;
            break;
        case ClusterKind::ZeroAlloc: // qemu reports the preallocated offset with the zeros
            e.allocation = Allocation::Zero;
            e.flags = guest::EXTENT_OFFSET_VALID;
            break;
        case ClusterKind::Zero:
            e.allocation = Allocation::Zero;
            break;
        case ClusterKind::UnallocatedAlloc: // qemu reports the allocated cluster's offset (map prints it)
            e.allocation = Allocation::Unallocated;
            e.flags = guest::EXTENT_OFFSET_VALID;
            break;
        case ClusterKind::Unallocated:
            e.allocation = Allocation::Unallocated;
            break;
        }
        // qcow2_co_block_status: no offset for encrypted images (the bytes there are ciphertext).
        if (cipher_ != nullptr && (e.flags & guest::EXTENT_OFFSET_VALID)) {
            e.flags &= ~guest::EXTENT_OFFSET_VALID;
            if (m.kind == ClusterKind::Normal)
                e.flags |= guest::EXTENT_ENCRYPTED;
        }
        if (e.flags & guest::EXTENT_OFFSET_VALID) {
            e.device = data_device_;
            e.offset = m.host;
        }
        return e;
    }

    Allocator& alloc_;
    BlockDevice& data_;
    uint32_t data_device_;
    uint64_t size_;
    Qcow2Map map_;
    CompressedCache compressed_;
    luks::SectorCipher* cipher_; // encrypted images only (arena memory, freed by close)
    bool crypt_physical_;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    Qcow2ReadSetup setup;
    if (const Status st = qcow2_read_setup(req, &setup); st != Status::Ok)
        return st;
    Qcow2Reader* r = guest::arena_new<Qcow2Reader>(*req.allocator, setup, *req.allocator, req.codecs, req.reasons);
    if (r == nullptr)
        return Status::NoMemory;
    if (const Status st = r->init(); st != Status::Ok) {
        r->close();
        return st;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::qcow2
