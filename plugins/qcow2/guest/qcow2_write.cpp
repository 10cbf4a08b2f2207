// The qcow2 writer (qcow2_write.h): ports of qcow2_co_pwritev_part / qcow2_alloc_host_offset
// (handle_copied, handle_alloc, calculate_l2_meta, count_single_write_clusters),
// qcow2_alloc_cluster_link_l2, qcow2_co_pwrite_zeroes / qcow2_subcluster_zeroize, and
// qcow2_co_pwritev_compressed_task / qcow2_alloc_compressed_cluster_offset / qcow2_alloc_bytes, over
// the create emitter's allocator replay (qcow2_create_alloc.h) and L2 slots (qcow2_create_tables.h).
#include "qcow2_write.h"

#include "qcow2_bytes.h"
#include "qcow2_create.h"
#include "qcow2_header.h"
#include "qcow2_subcluster.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

namespace instar::qcow2 {

using guest::Status;

namespace {

constexpr uint64_t INV = UINT64_MAX;
constexpr uint64_t QCOW_OFLAG_COPIED = uint64_t{1} << 63;
constexpr uint64_t QCOW_OFLAG_COMPRESSED = uint64_t{1} << 62;
constexpr uint64_t QCOW_OFLAG_ZERO = 1;
constexpr uint64_t L1E_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t L2E_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t INT_MAX_U = 0x7fffffff;
// qemu's BDRV_REQUEST_MAX_BYTES: the most one request (and one allocation) covers.
constexpr uint64_t BDRV_REQUEST_MAX_BYTES = (INT_MAX_U >> 9) << 9;
// qemu's MAX_BOUNCE_BUFFER: the largest zero buffer a write_zeroes fallback writes at once.
constexpr uint64_t MAX_BOUNCE_BUFFER = 32768ull * 512;
constexpr uint64_t COMPRESSED_SECTOR = 512; // QCOW2_COMPRESSED_SECTOR_SIZE
constexpr int64_t ENOTSUP_ = -95;
constexpr int ZLIB_WINDOW_BITS = -12; // qcow2's raw deflate with a 4 KiB window
constexpr int ZLIB_DEFAULT_LEVEL = 6; // Z_DEFAULT_COMPRESSION

// L2 mappings one alloc_host_offset call collects before linking: contiguity breaks at the next
// L2 table or refcount block, so two or three in practice.
constexpr size_t MAX_METAS = 8;

using Sc = Qcow2Sc;

struct CowRegion {
    uint64_t offset; // from the start of the first cluster
    uint64_t nb_bytes;
};

struct L2Meta {
    uint64_t alloc_offset; // host offset of the first cluster
    uint64_t offset;       // guest offset of the first cluster
    uint64_t nb_clusters;
    bool keep_old;
    CowRegion cow_start;
    CowRegion cow_end;
    bool skip_cow; // handle_alloc_space zeroed the clusters: no copy-on-write
};

uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

Status errno_status(int64_t r) {
    switch (r) {
    case QCOW2_ENOMEM: return Status::NoMemory;
    case QCOW2_EFBIG: return Status::TooLarge;
    case ENOTSUP_: return Status::Unsupported;
    case QCOW2_EINVAL: return Status::Invalid;
    default: return Status::IoError;
    }
}

// Batched compression (-c): clusters handed to the host's cores at once. 4 MiB of input keeps every
// core busy (64 clusters of 64 KiB) while costing the guest 8 MiB of buffers; at most 256 clusters
// (the host's per-call job limit, INSTAR_MAX_COMPRESS_JOBS).
constexpr uint64_t QCOW2_COMPRESS_BATCH_BYTES = 4u << 20;
constexpr uint64_t QCOW2_COMPRESS_BATCH_MAX = 256;
// qemu's QCOW_MAX_CRYPT_CLUSTERS: an encrypted image's writes are split into requests of this many clusters.
constexpr uint64_t QCOW_MAX_CRYPT_CLUSTERS = 32;
// Encrypted images: bytes encrypted per write (a bounce buffer from the arena).
constexpr size_t QCOW2_ENCRYPT_CHUNK = 1u << 20;

} // namespace

class Qcow2Writer final : public guest::ImageWriter {
public:
    Qcow2Writer(Qcow2NewImage* img, guest::CreateTarget& target, guest::Allocator& alloc, const guest::Codecs* codecs,
                bool has_backing)
        : img_(img), a_(img->a), t_(img->t), target_(target), alloc_(alloc), codecs_(codecs),
          has_backing_(has_backing), cs_(img->a.cluster_size()), cluster_bits_(img->a.cluster_bits()),
          extl2_(img->s.extended_l2), entries_(uint64_t{1} << img->t.l2_bits_),
          sc_size_(img->t.subcluster_size_), spc_(img->s.extended_l2 ? 32 : 1), size_(img->s.size),
          data_(img->s.data_device), data_raw_(img->s.data_file_raw) {
        sc_bits_ = 0;
        while ((uint64_t{1} << sc_bits_) < sc_size_)
            ++sc_bits_;
        csize_shift_ = 62 - (cluster_bits_ - 8);
        csize_mask_ = (uint64_t{1} << (cluster_bits_ - 8)) - 1;
    }

    uint64_t cluster_size() const override { return cs_; }
    // qcow2_has_zero_init: a new image reads as zeros (preallocated ones through their file, but
    // an encrypted image's preallocated clusters hold plaintext zeros: they read as noise).
    bool zero_init() const override { return img_->cipher == nullptr || img_->s.prealloc == guest::Prealloc::Off; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (closed_ || offset > size_ || len > size_ - offset)
            return Status::Invalid;
        if (const Status st = flush_batch(); st != Status::Ok)
            return st;
        const int64_t r = pwritev(offset, static_cast<const uint8_t*>(buf), len);
        return r < 0 ? errno_status(r) : Status::Ok;
    }
    Status write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) override {
        if (closed_ || offset > size_ || len > size_ - offset)
            return Status::Invalid;
        if (const Status st = flush_batch(); st != Status::Ok)
            return st;
        const int64_t r = do_pwrite_zeroes(offset, len, may_unmap);
        return r < 0 ? errno_status(r) : Status::Ok;
    }
    Status write_compressed(uint64_t offset, const void* buf, size_t len) override;
    void set_backing(guest::ImageReader* backing) override { backing_ = backing; }
    Status finish() override {
        if (closed_)
            return Status::Invalid;
        if (const Status st = flush_batch(); st != Status::Ok)
            return st;
        return create_end(*img_, target_, alloc_);
    }
    void close() override;

private:
    // The compressed cluster is placed as qcow2_co_pwritev_compressed_task places it (cdata: st Ok
    // with out_len bytes; TooLarge: `data` is written as a normal cluster instead).
    Status store_compressed(uint64_t offset, const uint8_t* data, size_t len, Status st, const uint8_t* cdata,
                            size_t out_len);
    // Compresses the clusters queued for the host's cores (Codecs::compress_batch) and places them,
    // in the order they came: the image is what one-by-one compression makes.
    Status flush_batch();
    using Slot = Qcow2Tables::Slot;

    uint64_t l2_entry(const Slot* s, uint64_t i) const { return load_be64(s->buf + i * (extl2_ ? 16 : 8)); }
    uint64_t l2_bitmap(const Slot* s, uint64_t i) const { return extl2_ ? load_be64(s->buf + i * 16 + 8) : 0; }
    void set_l2_entry(Slot* s, uint64_t i, uint64_t v) {
        store_be64(s->buf + i * (extl2_ ? 16 : 8), v);
        s->dirty = true;
    }
    void set_l2_bitmap(Slot* s, uint64_t i, uint64_t v) {
        store_be64(s->buf + i * 16 + 8, v);
        s->dirty = true;
    }
    uint64_t l2_index(uint64_t guest) const { return (guest >> cluster_bits_) & (entries_ - 1); }
    uint64_t sc_index(uint64_t off) const { return (off >> sc_bits_) & (spc_ - 1); }

    // qcow2_get_cluster_type says NORMAL or ZERO_ALLOC. Host offset 0 is a data file's first
    // cluster: there QCOW_OFLAG_COPIED (always set, every data-file cluster has refcount 1) tells an
    // allocated cluster from an unallocated one.
    bool cluster_allocated(uint64_t entry) const {
        if (entry & QCOW_OFLAG_COMPRESSED)
            return false;
        if (entry & L2E_OFFSET_MASK)
            return true;
        if (!extl2_ && (entry & QCOW_OFLAG_ZERO))
            return false; // ZERO_PLAIN
        return data_ != nullptr && (entry & QCOW_OFLAG_COPIED) != 0;
    }
    bool needs_new_alloc(uint64_t entry) const {
        return !cluster_allocated(entry) || (entry & QCOW_OFLAG_COPIED) == 0;
    }
    Sc subcluster_type(uint64_t entry, uint64_t bitmap, uint64_t sc) const;
    uint64_t subcluster_range(uint64_t entry, uint64_t bitmap, uint64_t sc_from, Sc* type) const;

    int64_t get_table(uint64_t guest, Slot** out);
    int64_t count_single_write_clusters(Slot* s, uint64_t nb, uint64_t idx, bool new_alloc) const;
    int64_t calculate_l2_meta(uint64_t host_cluster, uint64_t guest, uint64_t bytes, Slot* s, bool keep_old);
    int64_t handle_copied(uint64_t guest, uint64_t* host, uint64_t* bytes);
    int64_t handle_alloc(uint64_t guest, uint64_t* host, uint64_t* bytes);
    int64_t alloc_host_offset(uint64_t offset, uint64_t* bytes, uint64_t* host);
    int64_t cow_fill(uint64_t host, uint64_t guest, uint64_t len);
    int64_t handle_alloc_space();
    int64_t link_l2(const L2Meta& m);
    int64_t pwritev(uint64_t offset, const uint8_t* buf, uint64_t bytes);
    // The bytes of data clusters at `host`: into the image, or into the external data file.
    int64_t store(uint64_t host, const uint8_t* buf, uint64_t len);
    // The data write, through qcow2_co_encrypt on encrypted images (buf nullptr: zeros).
    int64_t write_data(uint64_t host, uint64_t guest, const uint8_t* buf, uint64_t len);

    bool is_zero(uint64_t offset, uint64_t bytes);
    int64_t qcow2_pwrite_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap);
    int64_t subcluster_zeroize(uint64_t offset, uint64_t bytes, bool may_unmap);
    int64_t zero_in_l2_slice(uint64_t offset, uint64_t nb_clusters, bool may_unmap, uint64_t* cleared);
    int64_t zero_l2_subclusters(uint64_t offset, uint64_t nb_subclusters);
    int64_t discard_v2(uint64_t offset, uint64_t bytes);
    int64_t do_pwrite_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap);
    int64_t zero_buffer();

    int64_t alloc_bytes(uint64_t size);

    Qcow2NewImage* img_;
    Qcow2Alloc& a_;
    Qcow2Tables& t_;
    guest::CreateTarget& target_;
    guest::Allocator& alloc_;
    const guest::Codecs* codecs_;
    bool has_backing_;
    guest::ImageReader* backing_ = nullptr; // the -B chain as one disk, when the host gave it
    bool closed_ = false;
    uint64_t cs_;
    uint32_t cluster_bits_;
    bool extl2_;
    uint64_t entries_;
    uint64_t sc_size_;
    uint64_t spc_;
    uint32_t sc_bits_;
    uint64_t size_;
    // An external data file (-o data_file): data clusters live there at their guest offsets, with no
    // refcounts (do_alloc_cluster_offset); the image holds metadata only. data_raw_: data_file_raw.
    guest::BlockDevice* data_;
    bool data_raw_;
    uint32_t csize_shift_;
    uint64_t csize_mask_;
    uint64_t free_byte_offset_ = 0;
    uint8_t* ebuf_ = nullptr; // encrypted images: the encryption bounce buffer (QCOW2_ENCRYPT_CHUNK)
    L2Meta metas_[MAX_METAS];
    size_t meta_count_ = 0;
    uint8_t* cbuf_ = nullptr; // compressed output, one cluster
    uint8_t* pbuf_ = nullptr; // a short last cluster padded with zeros
    // Batched compression: up to batch_cap_ clusters (inputs padded to a cluster, outputs of at most
    // cluster_size - 1 bytes) wait in these buffers until flush_batch().
    uint8_t* bin_ = nullptr;
    uint8_t* bout_ = nullptr;
    guest::CompressJob* jobs_ = nullptr;
    uint64_t* boff_ = nullptr;
    uint64_t* blen_ = nullptr;
    uint32_t batch_cap_ = 0;
    uint32_t batch_n_ = 0;
    uint8_t* zbuf_ = nullptr; // zeros for the write_zeroes fallback, one cluster
    uint8_t* rbuf_ = nullptr; // backing data for copy-on-write, one cluster
};

Sc Qcow2Writer::subcluster_type(uint64_t entry, uint64_t bitmap, uint64_t sc) const {
    const bool allocated = cluster_allocated(entry);
    if (!extl2_) // one "subcluster": the zero flag as its zero bit, an allocated entry's as its allocation bit
        return qcow2_sc_type((entry & QCOW_OFLAG_COMPRESSED) != 0, allocated,
                             (entry & QCOW_OFLAG_ZERO) ? uint64_t{1} << 32 : allocated ? 1 : 0, 0);
    return qcow2_sc_type((entry & QCOW_OFLAG_COMPRESSED) != 0, allocated, bitmap, sc);
}

uint64_t Qcow2Writer::subcluster_range(uint64_t entry, uint64_t bitmap, uint64_t sc_from, Sc* type) const {
    *type = subcluster_type(entry, bitmap, sc_from);
    uint64_t n = 1;
    while (sc_from + n < spc_ && subcluster_type(entry, bitmap, sc_from + n) == *type)
        ++n;
    return n;
}

int64_t Qcow2Writer::get_table(uint64_t guest, Slot** out) {
    const uint64_t l1_index = guest >> (cluster_bits_ + t_.l2_bits_);
    if (l1_index >= t_.l1_size_)
        return QCOW2_EIO;
    for (Slot& s : t_.slots_)
        if (s.l1_index == l1_index) {
            *out = &s;
            return 0;
        }
    uint8_t raw[8];
    if (target_.image().read(t_.l1_offset_ + l1_index * 8, raw, 8) != Status::Ok)
        return QCOW2_EIO;
    const uint64_t l2_offset = load_be64(raw) & L1E_OFFSET_MASK;
    if (l2_offset == 0)
        return t_.l2_allocate(l1_index, out);
    // A table written out earlier (preallocation, or evicted): bring it back as qemu's cache does.
    Slot* victim = &t_.slots_[0];
    for (Slot& s : t_.slots_)
        if (s.l1_index == UINT64_MAX || (victim->l1_index != UINT64_MAX && s.l1_index < victim->l1_index))
            victim = &s;
    int64_t r = t_.write_slot(*victim);
    if (r < 0)
        return r;
    victim->l1_index = l1_index;
    victim->offset = l2_offset;
    victim->dirty = false;
    if (target_.image().read(l2_offset, victim->buf, static_cast<size_t>(cs_)) != Status::Ok) {
        victim->l1_index = UINT64_MAX;
        return QCOW2_EIO;
    }
    *out = victim;
    return 0;
}

int64_t Qcow2Writer::count_single_write_clusters(Slot* s, uint64_t nb, uint64_t idx, bool new_alloc) const {
    uint64_t expected = l2_entry(s, idx) & L2E_OFFSET_MASK;
    uint64_t i = 0;
    for (; i < nb; ++i) {
        const uint64_t e = l2_entry(s, idx + i);
        if (needs_new_alloc(e) != new_alloc)
            break;
        if (!new_alloc) {
            if (expected != (e & L2E_OFFSET_MASK))
                break;
            expected += cs_;
        }
    }
    return static_cast<int64_t>(i);
}

int64_t Qcow2Writer::calculate_l2_meta(uint64_t host_cluster, uint64_t guest, uint64_t bytes, Slot* s,
                                       bool keep_old) {
    uint64_t idx = l2_index(guest);
    const uint64_t cow_start_to = guest & (cs_ - 1);
    const uint64_t cow_end_from = cow_start_to + bytes;
    const uint64_t nb = (cow_end_from + cs_ - 1) >> cluster_bits_;
    bool skip_cow = keep_old;
    for (uint64_t i = 0; i < nb; ++i) {
        const uint64_t e = l2_entry(s, idx + i);
        const uint64_t bm = l2_bitmap(s, idx + i);
        Sc type;
        if (skip_cow) {
            const uint64_t from = max_u64(cow_start_to, i << cluster_bits_);
            const uint64_t to = min_u64(cow_end_from, (i + 1) << cluster_bits_);
            const uint64_t first_sc = sc_index(from);
            const uint64_t last_sc = sc_index(to - 1);
            const uint64_t cnt = subcluster_range(e, bm, first_sc, &type);
            if (type != Sc::Normal || first_sc + cnt <= last_sc)
                skip_cow = false;
        } else {
            type = subcluster_type(e, bm, 0);
        }
        if (type == Sc::Invalid)
            return QCOW2_EIO;
    }
    if (skip_cow)
        return 0;

    uint64_t e = l2_entry(s, idx);
    uint64_t bm = l2_bitmap(s, idx);
    uint64_t sc = sc_index(guest);
    Sc type = subcluster_type(e, bm, sc);
    uint64_t cow_start_from = 0;
    if (!keep_old) {
        switch (type) {
        case Sc::Compressed: cow_start_from = 0; break;
        case Sc::Normal:
        case Sc::ZeroAlloc:
        case Sc::UnallocAlloc:
            if (extl2_) {
                const uint32_t alloc_bm = static_cast<uint32_t>(bm & QCOW2_L2_BITMAP_ALL_ALLOC);
                const uint64_t ctz = alloc_bm == 0 ? 32 : static_cast<uint64_t>(__builtin_ctz(alloc_bm));
                cow_start_from = min_u64(sc, ctz) << sc_bits_;
            } else {
                cow_start_from = 0;
            }
            break;
        case Sc::ZeroPlain:
        case Sc::UnallocPlain: cow_start_from = sc << sc_bits_; break;
        default: return QCOW2_EIO;
        }
    } else {
        switch (type) {
        case Sc::Normal: cow_start_from = cow_start_to; break;
        case Sc::ZeroAlloc:
        case Sc::UnallocAlloc: cow_start_from = sc << sc_bits_; break;
        default: return QCOW2_EIO;
        }
    }

    idx += nb - 1;
    e = l2_entry(s, idx);
    bm = l2_bitmap(s, idx);
    sc = sc_index(guest + bytes - 1);
    type = subcluster_type(e, bm, sc);
    uint64_t cow_end_to = 0;
    if (!keep_old) {
        switch (type) {
        case Sc::Compressed: cow_end_to = round_up(cow_end_from, cs_); break;
        case Sc::Normal:
        case Sc::ZeroAlloc:
        case Sc::UnallocAlloc:
            cow_end_to = round_up(cow_end_from, cs_);
            if (extl2_) {
                const uint32_t alloc_bm = static_cast<uint32_t>(bm & QCOW2_L2_BITMAP_ALL_ALLOC);
                const uint64_t clz = alloc_bm == 0 ? 32 : static_cast<uint64_t>(__builtin_clz(alloc_bm));
                cow_end_to -= min_u64(spc_ - sc - 1, clz) << sc_bits_;
            }
            break;
        case Sc::ZeroPlain:
        case Sc::UnallocPlain: cow_end_to = round_up(cow_end_from, sc_size_); break;
        default: return QCOW2_EIO;
        }
    } else {
        switch (type) {
        case Sc::Normal: cow_end_to = cow_end_from; break;
        case Sc::ZeroAlloc:
        case Sc::UnallocAlloc: cow_end_to = round_up(cow_end_from, sc_size_); break;
        default: return QCOW2_EIO;
        }
    }
    if (meta_count_ == MAX_METAS)
        return QCOW2_EIO;
    metas_[meta_count_++] = L2Meta{host_cluster,
                                   guest & ~(cs_ - 1),
                                   nb,
                                   keep_old,
                                   {cow_start_from, cow_start_to - cow_start_from},
                                   {cow_end_from, cow_end_to - cow_end_from},
                                   false};
    return 0;
}

int64_t Qcow2Writer::handle_copied(uint64_t guest, uint64_t* host, uint64_t* bytes) {
    Slot* s = nullptr;
    int64_t r = get_table(guest, &s);
    if (r < 0)
        return r;
    const uint64_t idx = l2_index(guest);
    const uint64_t in_cluster = guest & (cs_ - 1);
    uint64_t nb = min_u64((in_cluster + *bytes + cs_ - 1) >> cluster_bits_, entries_ - idx);
    nb = min_u64(nb, BDRV_REQUEST_MAX_BYTES >> cluster_bits_);
    const uint64_t e = l2_entry(s, idx);
    const uint64_t cluster_offset = e & L2E_OFFSET_MASK;
    if (needs_new_alloc(e))
        return 0;
    if (*host != INV && (*host & ~(cs_ - 1)) != cluster_offset) {
        *bytes = 0;
        return 0;
    }
    const int64_t keep = count_single_write_clusters(s, nb, idx, false);
    *bytes = min_u64(*bytes, static_cast<uint64_t>(keep) * cs_ - in_cluster);
    r = calculate_l2_meta(cluster_offset, guest, *bytes, s, true);
    if (r < 0)
        return r;
    *host = cluster_offset + in_cluster;
    return 1;
}

int64_t Qcow2Writer::handle_alloc(uint64_t guest, uint64_t* host, uint64_t* bytes) {
    Slot* s = nullptr;
    int64_t r = get_table(guest, &s);
    if (r < 0)
        return r;
    const uint64_t idx = l2_index(guest);
    const uint64_t in_cluster = guest & (cs_ - 1);
    uint64_t nb = min_u64((in_cluster + *bytes + cs_ - 1) >> cluster_bits_, entries_ - idx);
    nb = min_u64(nb, BDRV_REQUEST_MAX_BYTES >> cluster_bits_);
    nb = static_cast<uint64_t>(count_single_write_clusters(s, nb, idx, true));
    if (nb == 0)
        return QCOW2_EIO; // qemu asserts: handle_copied took every cluster that needs none
    uint64_t alloc_offset = 0;
    if (data_ != nullptr) {
        // do_alloc_cluster_offset with a data file: the host cluster is the guest cluster.
        alloc_offset = guest & ~(cs_ - 1);
        if (*host != INV && (*host & ~(cs_ - 1)) != alloc_offset)
            return QCOW2_EIO; // qemu asserts: a contiguous run continues at the next guest cluster
    } else if (*host == INV) {
        r = a_.alloc_clusters(nb * cs_);
        if (r < 0)
            return r;
        alloc_offset = static_cast<uint64_t>(r);
    } else {
        alloc_offset = *host & ~(cs_ - 1);
        r = a_.alloc_clusters_at(alloc_offset, nb);
        if (r < 0)
            return r;
        if (r == 0) { // can't extend the contiguous allocation
            *bytes = 0;
            return 0;
        }
        nb = static_cast<uint64_t>(r);
    }
    // The allocation may have placed a refcount block; the table is still in its slot (the
    // allocator writes no L2 tables), but look it up again as qemu does after the allocation.
    r = get_table(guest, &s);
    if (r < 0)
        return r;
    const uint64_t nb_bytes = min_u64(*bytes + in_cluster, nb * cs_);
    *host = alloc_offset + in_cluster;
    *bytes = min_u64(*bytes, nb_bytes - in_cluster);
    r = calculate_l2_meta(alloc_offset, guest, *bytes, s, false);
    if (r < 0)
        return r;
    return 1;
}

int64_t Qcow2Writer::alloc_host_offset(uint64_t offset, uint64_t* bytes, uint64_t* host) {
    uint64_t start = offset;
    uint64_t remaining = *bytes;
    uint64_t cluster_offset = INV;
    uint64_t cur = 0;
    *host = INV;
    meta_count_ = 0;
    for (;;) {
        if (*host == INV && cluster_offset != INV)
            *host = cluster_offset;
        start += cur;
        remaining -= cur;
        if (cluster_offset != INV)
            cluster_offset += cur;
        if (remaining == 0)
            break;
        cur = remaining;
        int64_t r = handle_copied(start, &cluster_offset, &cur);
        if (r < 0)
            return r;
        if (r == 1)
            continue;
        if (cur == 0)
            break;
        r = handle_alloc(start, &cluster_offset, &cur);
        if (r < 0)
            return r;
        if (r == 1)
            continue;
        break;
    }
    *bytes -= remaining;
    return 0;
}

int64_t Qcow2Writer::cow_fill(uint64_t host, uint64_t guest, uint64_t len) {
    // The guest disk's bytes before the write: the backing file's where the (sub)cluster is
    // unallocated, zeros elsewhere (a new image has no data of its own there yet).
    while (len > 0) {
        const uint64_t n = min_u64(len, sc_size_ - (guest & (sc_size_ - 1)));
        Slot* s = nullptr;
        int64_t r = get_table(guest, &s);
        if (r < 0)
            return r;
        const uint64_t idx = l2_index(guest);
        const Sc type = subcluster_type(l2_entry(s, idx), l2_bitmap(s, idx), sc_index(guest));
        if ((type == Sc::UnallocPlain || type == Sc::UnallocAlloc) && backing_ != nullptr &&
            guest < backing_->virtual_size()) {
            if (rbuf_ == nullptr) {
                rbuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
                if (rbuf_ == nullptr)
                    return QCOW2_ENOMEM;
            }
            const uint64_t in = min_u64(n, backing_->virtual_size() - guest);
            if (backing_->read(guest, rbuf_, static_cast<size_t>(in)) != Status::Ok)
                return QCOW2_EIO;
            for (uint64_t i = in; i < n; ++i)
                rbuf_[i] = 0;
            r = write_data(host, guest, rbuf_, n);
        } else if (img_->cipher != nullptr) {
            r = write_data(host, guest, nullptr, n); // encrypted zeros, as qemu's COW writes them
        } else {
            r = t_.write_zeros(host, n, data_);
        }
        if (r < 0)
            return r;
        host += n;
        guest += n;
        len -= n;
    }
    return 0;
}

int64_t Qcow2Writer::store(uint64_t host, const uint8_t* buf, uint64_t len) {
    if (data_ == nullptr)
        return a_.write(host, buf, static_cast<size_t>(len));
    return data_->write(host, buf, static_cast<size_t>(len)) == Status::Ok ? 0 : QCOW2_EIO;
}

int64_t Qcow2Writer::write_data(uint64_t host, uint64_t guest, const uint8_t* buf, uint64_t len) {
    if (img_->cipher == nullptr)
        return store(host, buf, len);
    // qcow2_co_encrypt: whole 512-byte sectors, numbered from the host offset (LUKS) or the guest
    // offset (AES), encrypted in a bounce buffer.
    if ((host | guest | len) % QCOW2_SECTOR != 0)
        return QCOW2_EIO;
    if (ebuf_ == nullptr) {
        ebuf_ = static_cast<uint8_t*>(alloc_.allocate(QCOW2_ENCRYPT_CHUNK, 16));
        if (ebuf_ == nullptr)
            return QCOW2_ENOMEM;
    }
    const uint64_t sector_base = img_->crypt_physical_offset ? host : guest;
    for (uint64_t done = 0; done < len;) {
        const size_t n = len - done < QCOW2_ENCRYPT_CHUNK ? static_cast<size_t>(len - done) : QCOW2_ENCRYPT_CHUNK;
        if (buf != nullptr)
            __builtin_memcpy(ebuf_, buf + done, n);
        else
            __builtin_memset(ebuf_, 0, n);
        img_->cipher->encrypt((sector_base + done) / QCOW2_SECTOR, ebuf_, n);
        if (const int64_t r = store(host + done, ebuf_, n); r < 0)
            return r;
        done += n;
    }
    return 0;
}

int64_t Qcow2Writer::handle_alloc_space() {
    // qemu's handle_alloc_space: where both copy-on-write regions of a new allocation read as zeros,
    // the host clusters are zeroed with the file's write_zeroes (BDRV_REQ_NO_FALLBACK: file-posix's
    // FALLOC_FL_ZERO_RANGE) instead of zeros being written, so they stay holes. Not on encrypted
    // images. Here: past what the file holds, nothing to do but count it in the file's length (the
    // end's set_length extends it); inside, a punched hole. A device that cannot punch copies.
    if (img_->cipher != nullptr)
        return 0;
    for (size_t i = 0; i < meta_count_; ++i) {
        L2Meta& m = metas_[i];
        if (m.cow_start.nb_bytes == 0 && m.cow_end.nb_bytes == 0)
            continue;
        if (!is_zero(m.offset + m.cow_start.offset, m.cow_start.nb_bytes) ||
            !is_zero(m.offset + m.cow_end.offset, m.cow_end.nb_bytes))
            continue;
        const uint64_t start = m.alloc_offset + m.cow_start.offset;
        const uint64_t end = m.alloc_offset + m.cow_end.offset + m.cow_end.nb_bytes;
        guest::BlockDevice& dev = data_ != nullptr ? *data_ : target_.image();
        const uint64_t held = data_ != nullptr ? dev.size() : a_.written_length();
        if (data_ != nullptr && end > held)
            continue; // the data file is made as long as the disk; never past it
        if (start < held) {
            const Status st = dev.discard(start, min_u64(end, held) - start);
            if (st == Status::Unsupported)
                continue;
            if (st != Status::Ok)
                return QCOW2_EIO;
        }
        if (data_ == nullptr)
            a_.note_write(end);
        m.skip_cow = true;
    }
    return 0;
}

int64_t Qcow2Writer::link_l2(const L2Meta& m) {
    // perform_cow: the parts of the new (sub)clusters the request does not cover keep the guest
    // disk's bytes from before the write (unless handle_alloc_space zeroed them).
    if (m.cow_start.nb_bytes != 0 && !m.skip_cow) {
        const int64_t r = cow_fill(m.alloc_offset + m.cow_start.offset, m.offset + m.cow_start.offset,
                                   m.cow_start.nb_bytes);
        if (r < 0)
            return r;
    }
    if (m.cow_end.nb_bytes != 0 && !m.skip_cow) {
        const int64_t r =
            cow_fill(m.alloc_offset + m.cow_end.offset, m.offset + m.cow_end.offset, m.cow_end.nb_bytes);
        if (r < 0)
            return r;
    }
    Slot* s = nullptr;
    const int64_t r = get_table(m.offset, &s);
    if (r < 0)
        return r;
    const uint64_t idx = l2_index(m.offset);
    if (idx + m.nb_clusters > entries_)
        return QCOW2_EIO;
    for (uint64_t i = 0; i < m.nb_clusters; ++i) {
        set_l2_entry(s, idx + i, (m.alloc_offset + (i << cluster_bits_)) | QCOW_OFLAG_COPIED);
        if (extl2_) {
            const uint64_t bm = l2_bitmap(s, idx + i);
            const uint64_t from = max_u64(m.cow_start.offset, i << cluster_bits_);
            const uint64_t to = min_u64(m.cow_end.offset + m.cow_end.nb_bytes, (i + 1) << cluster_bits_);
            if (from >= to)
                return QCOW2_EIO;
            set_l2_bitmap(s, idx + i, qcow2_sc_written(bm, sc_index(from), sc_index(to - 1)));
        }
    }
    return 0;
}

int64_t Qcow2Writer::pwritev(uint64_t offset, const uint8_t* buf, uint64_t bytes) {
    while (bytes != 0) {
        uint64_t cur = min_u64(bytes, INT_MAX_U);
        if (img_->cipher != nullptr) // encrypted: QCOW_MAX_CRYPT_CLUSTERS per request
            cur = min_u64(cur, QCOW_MAX_CRYPT_CLUSTERS * cs_ - (offset & (cs_ - 1)));
        uint64_t host = INV;
        int64_t r = alloc_host_offset(offset, &cur, &host);
        if (r < 0)
            return r;
        if (cur == 0 || host == INV)
            return QCOW2_EIO;
        r = handle_alloc_space();
        if (r < 0)
            return r;
        r = write_data(host, offset, buf, cur);
        if (r < 0)
            return r;
        for (size_t i = meta_count_; i > 0; --i) { // qemu's l2meta list is newest first
            r = link_l2(metas_[i - 1]);
            if (r < 0)
                return r;
        }
        meta_count_ = 0;
        offset += cur;
        buf += cur;
        bytes -= cur;
    }
    return 0;
}

// ---- write_zeroes ----

bool Qcow2Writer::is_zero(uint64_t offset, uint64_t bytes) {
    // bdrv_co_is_zero_fast: one block-status run of the image (and, where that is unallocated, of
    // its backing chain) must cover the range and say zero. The ranges asked about lie inside one
    // subcluster.
    if (bytes == 0)
        return true;
    Slot* s = nullptr;
    if (get_table(offset, &s) < 0)
        return false;
    const uint64_t idx = l2_index(offset);
    const uint64_t in_cluster = offset & (cs_ - 1);
    if (in_cluster + bytes > cs_)
        return false;
    const Sc type = subcluster_type(l2_entry(s, idx), l2_bitmap(s, idx), sc_index(in_cluster));
    for (uint64_t sc = sc_index(in_cluster) + 1; sc <= sc_index(in_cluster + bytes - 1); ++sc)
        if (subcluster_type(l2_entry(s, idx), l2_bitmap(s, idx), sc) != type)
            return false;
    if (type == Sc::ZeroPlain || type == Sc::ZeroAlloc)
        return true;
    if (type != Sc::UnallocPlain && type != Sc::UnallocAlloc)
        return false;
    if (!has_backing_)
        return true;
    if (backing_ == nullptr)
        return false; // not told what the backing holds: qemu would look; take it as data
    if (offset >= backing_->virtual_size())
        return true;
    guest::Extent e{};
    if (backing_->status(offset, min_u64(bytes, backing_->virtual_size() - offset), &e) != Status::Ok)
        return false;
    return e.allocation != guest::Allocation::Data && e.length == bytes;
}

int64_t Qcow2Writer::zero_l2_subclusters(uint64_t offset, uint64_t nb_subclusters) {
    Slot* s = nullptr;
    const int64_t r = get_table(offset, &s);
    if (r < 0)
        return r;
    const uint64_t idx = l2_index(offset);
    const uint64_t e = l2_entry(s, idx);
    if (e & QCOW_OFLAG_COMPRESSED)
        return ENOTSUP_;
    const uint64_t sc = sc_index(offset);
    const uint64_t old = l2_bitmap(s, idx);
    const uint64_t bm = qcow2_sc_zeroed(old, sc, sc + nb_subclusters - 1);
    if (bm != old)
        set_l2_bitmap(s, idx, bm);
    return 0;
}

int64_t Qcow2Writer::zero_in_l2_slice(uint64_t offset, uint64_t nb_clusters, bool may_unmap, uint64_t* cleared) {
    Slot* s = nullptr;
    const int64_t r = get_table(offset, &s);
    if (r < 0)
        return r;
    const uint64_t idx = l2_index(offset);
    nb_clusters = min_u64(nb_clusters, entries_ - idx);
    for (uint64_t i = 0; i < nb_clusters; ++i) {
        const uint64_t old = l2_entry(s, idx + i);
        const uint64_t old_bm = l2_bitmap(s, idx + i);
        const bool compressed = (old & QCOW_OFLAG_COMPRESSED) != 0;
        const bool allocated = cluster_allocated(old);
        const bool unmap = compressed || (may_unmap && allocated);
        uint64_t e = unmap ? 0 : old;
        uint64_t bm = old_bm;
        if (extl2_)
            bm = QCOW2_L2_BITMAP_ALL_ZEROES;
        else
            e |= QCOW_OFLAG_ZERO;
        if (old == e && old_bm == bm)
            continue;
        set_l2_entry(s, idx + i, e);
        if (extl2_)
            set_l2_bitmap(s, idx + i, bm);
        if (unmap) {
            if (compressed)
                return ENOTSUP_; // never happens in convert's in-order writes
            // qcow2_free_any_cluster: a data file's clusters have no refcounts to drop.
            const int64_t f = data_ != nullptr ? 0 : a_.free_clusters(old & L2E_OFFSET_MASK, cs_);
            if (f < 0)
                return f;
        }
    }
    *cleared = nb_clusters;
    return 0;
}

int64_t Qcow2Writer::discard_v2(uint64_t offset, uint64_t bytes) {
    // qcow2_cluster_discard (full_discard = false) on a version 2 image without a backing file:
    // whole clusters only; each L2 table is looked up (allocated) and its entries cleared.
    uint64_t end = offset + bytes;
    offset = round_up(offset, cs_);
    if (end != size_)
        end &= ~(cs_ - 1);
    if (end <= offset)
        return 0;
    uint64_t nb = (end - offset + cs_ - 1) >> cluster_bits_;
    while (nb > 0) {
        Slot* s = nullptr;
        const int64_t r = get_table(offset, &s);
        if (r < 0)
            return r;
        const uint64_t idx = l2_index(offset);
        const uint64_t n = min_u64(nb, entries_ - idx);
        for (uint64_t i = 0; i < n; ++i) {
            const uint64_t old = l2_entry(s, idx + i);
            if (old == 0)
                continue;
            set_l2_entry(s, idx + i, 0);
            if ((old & L2E_OFFSET_MASK) != 0 && !(old & QCOW_OFLAG_COMPRESSED)) {
                const int64_t f = a_.free_clusters(old & L2E_OFFSET_MASK, cs_);
                if (f < 0)
                    return f;
            }
        }
        nb -= n;
        offset += n * cs_;
    }
    return 0;
}

int64_t Qcow2Writer::subcluster_zeroize(uint64_t offset, uint64_t bytes, bool may_unmap) {
    // data_file_raw: the data file is a raw image of the disk, so its bytes are zeroed too.
    if (data_raw_ && data_ != nullptr) {
        const int64_t r = t_.write_zeros(offset, bytes, data_);
        if (r < 0)
            return r;
    }
    uint64_t end = offset + bytes;
    if (img_->s.version < 3)
        return has_backing_ ? ENOTSUP_ : discard_v2(offset, bytes);
    const uint64_t head = min_u64(end, round_up(offset, cs_)) - offset;
    offset += head;
    const uint64_t tail = end >= size_ ? 0 : end - max_u64(offset, end & ~(cs_ - 1));
    end -= tail;
    int64_t r = 0;
    if (head != 0) {
        r = zero_l2_subclusters(offset - head, (head + sc_size_ - 1) >> sc_bits_);
        if (r < 0)
            return r;
    }
    uint64_t nb = end > offset ? (end - offset + cs_ - 1) >> cluster_bits_ : 0;
    while (nb > 0) {
        uint64_t cleared = 0;
        r = zero_in_l2_slice(offset, nb, may_unmap, &cleared);
        if (r < 0)
            return r;
        nb -= cleared;
        offset += cleared * cs_;
    }
    if (tail != 0) {
        r = zero_l2_subclusters(end, (tail + sc_size_ - 1) >> sc_bits_);
        if (r < 0)
            return r;
    }
    return 0;
}

int64_t Qcow2Writer::qcow2_pwrite_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) {
    const uint64_t head = offset & (sc_size_ - 1);
    uint64_t tail = round_up(offset + bytes, sc_size_) - (offset + bytes);
    if (offset + bytes == size_)
        tail = 0;
    if (head != 0 || tail != 0) {
        if (!(is_zero(offset - head, head) && is_zero(offset + bytes, tail)))
            return ENOTSUP_;
        offset -= head;
        bytes = sc_size_;
        Slot* s = nullptr;
        const int64_t r = get_table(offset, &s);
        if (r < 0)
            return r;
        const uint64_t idx = l2_index(offset);
        const Sc type = subcluster_type(l2_entry(s, idx), l2_bitmap(s, idx), sc_index(offset));
        if (type != Sc::UnallocPlain && type != Sc::UnallocAlloc && type != Sc::ZeroPlain && type != Sc::ZeroAlloc)
            return ENOTSUP_;
    }
    return subcluster_zeroize(offset, bytes, may_unmap);
}

int64_t Qcow2Writer::zero_buffer() {
    if (zbuf_ != nullptr)
        return 0;
    zbuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
    if (zbuf_ == nullptr)
        return QCOW2_ENOMEM;
    for (uint64_t i = 0; i < cs_; ++i)
        zbuf_[i] = 0;
    return 0;
}

int64_t Qcow2Writer::do_pwrite_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) {
    // bdrv_co_do_pwrite_zeroes: split at the zero-write alignment (the subcluster), fall back to
    // writing zeros where the driver says -ENOTSUP (version 2 with a backing file, partial ranges).
    const uint64_t alignment = sc_size_;
    const uint64_t max_write_zeroes = INT_MAX_U - INT_MAX_U % alignment;
    uint64_t head = offset % alignment;
    const uint64_t tail = (offset + bytes) % alignment;
    while (bytes > 0) {
        uint64_t num = bytes;
        if (head != 0) {
            num = min_u64(bytes, alignment - head);
            head = (head + num) % alignment;
        } else if (tail != 0 && num > alignment) {
            num -= tail;
        }
        if (num > max_write_zeroes)
            num = max_write_zeroes;
        int64_t r = qcow2_pwrite_zeroes(offset, num, may_unmap);
        if (r == ENOTSUP_) {
            num = min_u64(num, MAX_BOUNCE_BUFFER);
            r = zero_buffer();
            // One request of `num` zero bytes, issued in cluster-aligned pieces, allocates as the
            // single request does: each piece continues the previous allocation.
            for (uint64_t done = 0; r >= 0 && done < num;) {
                const uint64_t piece = min_u64(num - done, cs_ - ((offset + done) & (cs_ - 1)));
                r = pwritev(offset + done, zbuf_, piece);
                done += piece;
            }
        }
        if (r < 0)
            return r;
        offset += num;
        bytes -= num;
    }
    return 0;
}

// ---- compressed clusters ----

int64_t Qcow2Writer::alloc_bytes(uint64_t size) {
    // qcow2_alloc_bytes: pack compressed data into the partly used host cluster, continuing into the
    // next cluster when that is the next one allocated.
    uint64_t offset = free_byte_offset_;
    if (offset != 0 && a_.refcount(offset >> cluster_bits_) == a_.refcount_max())
        offset = 0;
    uint64_t free_in_cluster = cs_ - (offset & (cs_ - 1));
    int64_t r = 0;
    do {
        if (offset == 0 || free_in_cluster < size) {
            const uint64_t max = min_u64((uint64_t{1} << csize_shift_) - 1, QCOW_MAX_CLUSTER_OFFSET);
            const int64_t nc = a_.alloc_noref(cs_, max);
            if (nc < 0)
                return nc;
            if (nc == 0)
                return QCOW2_EIO; // qemu: "Preventing invalid allocation of compressed cluster at offset 0"
            const uint64_t new_cluster = static_cast<uint64_t>(nc);
            if (offset == 0 || round_up(offset, cs_) != new_cluster) {
                offset = new_cluster;
                free_in_cluster = cs_;
            } else {
                free_in_cluster += cs_;
            }
        }
        r = a_.update_refcount(offset, size, false);
        if (r < 0)
            offset = 0;
    } while (r == QCOW2_EAGAIN);
    if (r < 0)
        return r;
    free_byte_offset_ = offset + size;
    if ((free_byte_offset_ & (cs_ - 1)) == 0)
        free_byte_offset_ = 0;
    return static_cast<int64_t>(offset);
}

Status Qcow2Writer::write_compressed(uint64_t offset, const void* buf, size_t len) {
    if (closed_)
        return Status::Invalid;
    if (img_->cipher != nullptr) // qemu-img refuses -c with encryption before it gets here
        return Status::Unsupported;
    if (data_ != nullptr) // qcow2_co_pwritev_compressed: -ENOTSUP with a data file
        return Status::Unsupported;
    if (len == 0) { // qemu's end-of-convert call: the file is truncated to its length in sectors
        if (const Status st = flush_batch(); st != Status::Ok)
            return st;
        a_.note_write(round_up(a_.file_length(), COMPRESSED_SECTOR));
        return Status::Ok;
    }
    if ((offset & (cs_ - 1)) != 0 || offset > size_ || len > size_ - offset || len > cs_ ||
        (len != cs_ && offset + len != size_))
        return Status::Invalid;
    if (codecs_ == nullptr)
        return Status::Unsupported;
    const bool zlib = img_->s.compression_type == QCOW2_COMPRESSION_TYPE_ZLIB;
    if (codecs_->compress_batch != nullptr) {
        if (bin_ == nullptr) {
            const uint64_t n = QCOW2_COMPRESS_BATCH_BYTES / cs_;
            batch_cap_ = static_cast<uint32_t>(n < 1 ? 1 : n > QCOW2_COMPRESS_BATCH_MAX ? QCOW2_COMPRESS_BATCH_MAX : n);
            bin_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_ * batch_cap_), 64));
            bout_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_ * batch_cap_), 64));
            jobs_ = static_cast<guest::CompressJob*>(
                alloc_.allocate(sizeof(guest::CompressJob) * batch_cap_, alignof(guest::CompressJob)));
            boff_ = static_cast<uint64_t*>(alloc_.allocate(sizeof(uint64_t) * batch_cap_, 8));
            blen_ = static_cast<uint64_t*>(alloc_.allocate(sizeof(uint64_t) * batch_cap_, 8));
            if (bin_ == nullptr || bout_ == nullptr || jobs_ == nullptr || boff_ == nullptr || blen_ == nullptr)
                return Status::NoMemory;
        }
        uint8_t* slot = bin_ + batch_n_ * cs_;
        __builtin_memcpy(slot, buf, len);
        if (len != cs_)
            __builtin_memset(slot + len, 0, cs_ - len);
        boff_[batch_n_] = offset;
        blen_[batch_n_] = len;
        if (++batch_n_ == batch_cap_)
            return flush_batch();
        return Status::Ok;
    }
    if (cbuf_ == nullptr) {
        cbuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
        pbuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
        if (cbuf_ == nullptr || pbuf_ == nullptr)
            return Status::NoMemory;
    }
    const uint8_t* src = static_cast<const uint8_t*>(buf);
    if (len != cs_) {
        __builtin_memcpy(pbuf_, src, len);
        __builtin_memset(pbuf_ + len, 0, cs_ - len);
        src = pbuf_;
    }
    size_t out_len = 0;
    Status st = Status::Ok;
    const size_t cap = static_cast<size_t>(cs_ - 1);
    if (zlib) {
        if (codecs_->deflate == nullptr)
            return Status::Unsupported;
        st = codecs_->deflate(src, static_cast<size_t>(cs_), cbuf_, cap, &out_len, ZLIB_WINDOW_BITS, ZLIB_DEFAULT_LEVEL);
    } else {
        if (codecs_->zstd_compress == nullptr)
            return Status::Unsupported;
        st = codecs_->zstd_compress(src, static_cast<size_t>(cs_), cbuf_, cap, &out_len);
    }
    return store_compressed(offset, static_cast<const uint8_t*>(buf), len, st, cbuf_, out_len);
}

Status Qcow2Writer::flush_batch() {
    if (batch_n_ == 0)
        return Status::Ok;
    const uint32_t n = batch_n_;
    batch_n_ = 0;
    for (uint32_t i = 0; i < n; ++i)
        jobs_[i] = guest::CompressJob{bin_ + i * cs_, static_cast<size_t>(cs_), bout_ + i * cs_,
                                      static_cast<size_t>(cs_ - 1), 0, Status::Ok};
    const guest::CompressKind kind = img_->s.compression_type == QCOW2_COMPRESSION_TYPE_ZLIB
                                         ? guest::CompressKind::Qcow2Zlib
                                         : guest::CompressKind::Qcow2Zstd;
    if (const Status st = codecs_->compress_batch(kind, jobs_, n); st != Status::Ok)
        return st;
    for (uint32_t i = 0; i < n; ++i) {
        const Status st = store_compressed(boff_[i], bin_ + i * cs_, static_cast<size_t>(blen_[i]), jobs_[i].status,
                                           bout_ + i * cs_, jobs_[i].out_len);
        if (st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

Status Qcow2Writer::store_compressed(uint64_t offset, const uint8_t* data, size_t len, Status st,
                                     const uint8_t* cdata, size_t out_len) {
    if (st == Status::TooLarge) { // does not fit in cluster_size - 1 bytes: a normal cluster
        const int64_t r = pwritev(offset, data, len);
        return r < 0 ? errno_status(r) : Status::Ok;
    }
    if (st != Status::Ok)
        return st;
    if (out_len > cs_ - 1)
        return Status::IoError;

    // qcow2_alloc_compressed_cluster_offset
    Slot* s = nullptr;
    int64_t r = get_table(offset, &s);
    if (r < 0)
        return errno_status(r);
    const uint64_t idx = l2_index(offset);
    if ((l2_entry(s, idx) & L2E_OFFSET_MASK) != 0)
        return Status::IoError; // compression can't overwrite anything
    r = alloc_bytes(out_len);
    if (r < 0)
        return errno_status(r);
    const uint64_t host = static_cast<uint64_t>(r);
    const uint64_t nb_csectors = (host + out_len - 1) / COMPRESSED_SECTOR - host / COMPRESSED_SECTOR;
    if (nb_csectors > csize_mask_)
        return Status::IoError;
    r = get_table(offset, &s);
    if (r < 0)
        return errno_status(r);
    set_l2_entry(s, idx, host | QCOW_OFLAG_COMPRESSED | (nb_csectors << csize_shift_));
    if (extl2_)
        set_l2_bitmap(s, idx, 0);
    r = a_.write(host, cdata, out_len);
    return r < 0 ? errno_status(r) : Status::Ok;
}

void Qcow2Writer::close() {
    if (cbuf_ != nullptr)
        alloc_.deallocate(cbuf_, static_cast<size_t>(cs_));
    if (pbuf_ != nullptr)
        alloc_.deallocate(pbuf_, static_cast<size_t>(cs_));
    if (bin_ != nullptr)
        alloc_.deallocate(bin_, static_cast<size_t>(cs_ * batch_cap_));
    if (bout_ != nullptr)
        alloc_.deallocate(bout_, static_cast<size_t>(cs_ * batch_cap_));
    if (jobs_ != nullptr)
        alloc_.deallocate(jobs_, sizeof(guest::CompressJob) * batch_cap_);
    if (boff_ != nullptr)
        alloc_.deallocate(boff_, sizeof(uint64_t) * batch_cap_);
    if (blen_ != nullptr)
        alloc_.deallocate(blen_, sizeof(uint64_t) * batch_cap_);
    if (zbuf_ != nullptr)
        alloc_.deallocate(zbuf_, static_cast<size_t>(cs_));
    if (rbuf_ != nullptr)
        alloc_.deallocate(rbuf_, static_cast<size_t>(cs_));
    if (ebuf_ != nullptr) {
        __builtin_memset(ebuf_, 0, QCOW2_ENCRYPT_CHUNK);
        alloc_.deallocate(ebuf_, QCOW2_ENCRYPT_CHUNK);
    }
    create_release(img_, alloc_);
    guest::Allocator& alloc = alloc_;
    guest::arena_delete(alloc, this);
}

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr)
        return Status::Invalid;
    Qcow2NewImage* img = nullptr;
    const Status st = create_begin(req, target, &img);
    if (st != Status::Ok)
        return st;
    img->a.allow_shared();
    Qcow2Writer* w = guest::arena_new<Qcow2Writer>(*req.allocator, img, target, *req.allocator, req.codecs,
                                                   req.backing_file != nullptr);
    if (w == nullptr) {
        create_release(img, *req.allocator);
        return Status::NoMemory;
    }
    target.resolved_unit_size(img->a.cluster_size());
    *out = w;
    return Status::Ok;
}

} // namespace instar::qcow2
