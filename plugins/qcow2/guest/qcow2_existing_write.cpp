// convert -n into an existing qcow2 image (qcow2_existing_write.h). Metadata is written through
// entry by entry (8-byte L1/L2 entries, one refcount entry), so nothing is held back at the end and
// memory is one cluster buffer whatever the image's size.
#include "qcow2_existing_write.h"

#include "qcow2_deferred_meta.h"
#include "qcow2_index_set.h"

#include "qcow2_bitmap_dirty.h"
#include "qcow2_bitmap_ranges.h"
#include "qcow2_bytes.h"
#include "qcow2_crypto_window.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_read_compressed.h"
#include "qcow2_read_reason.h"
#include "qcow2_reader.h"
#include "qcow2_snapshot_ranges.h"
#include "qcow2_subcluster.h"
#include "qcow2_unlock.h"

#include "luks_crypto.h"
#include "luks_format.h"

#include <instar/guest/arena_new.h>

namespace instar::qcow2 {

using guest::Status;

namespace {

constexpr uint64_t QCOW_OFLAG_COPIED = uint64_t{1} << 63;
constexpr uint64_t QCOW_OFLAG_COMPRESSED = uint64_t{1} << 62;
constexpr uint64_t QCOW_OFLAG_ZERO = 1;
constexpr uint64_t L1E_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t L2E_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t REFT_OFFSET_MASK = 0xfffffffffffffe00ull;
// qemu's QCOW_MAX_CLUSTER_OFFSET: host offsets must fit the 56-bit L2/refcount-table fields.
constexpr uint64_t MAX_CLUSTER_OFFSET = (uint64_t{1} << 56) - 1;
// A new refcount block may itself fall under a block that does not exist yet; each level covers
// far more than the one below, so two suffice; the bound only stops a hostile table from looping.
constexpr uint32_t MAX_REFBLOCK_DEPTH = 4;
// Encrypted images: bytes encrypted per device write (a bounce buffer from the arena).
constexpr size_t ENCRYPT_CHUNK = 1u << 20;
constexpr uint64_t SECTOR = 512; // qemu encrypts 512-byte sectors
constexpr int ZLIB_WINDOW_BITS = -12; // qcow2's raw deflate with a 4 KiB window
constexpr int ZLIB_DEFAULT_LEVEL = 6; // Z_DEFAULT_COMPRESSION, as qemu
// bdrv_get_default_bitmap_granularity's clamp: qemu-img commit's mirror job copies whole chunks
// of the base's cluster size held to [4 KiB, 64 KiB].
constexpr uint64_t MIRROR_MIN_GRANULARITY = 4096;
constexpr uint64_t MIRROR_MAX_GRANULARITY = 65536;
// qemu's QCOW_MAX_REFTABLE_SIZE: the largest refcount table qemu opens, so the most grown.
constexpr uint64_t QCOW2_EXISTING_MAX_REFTABLE_BYTES = 8u << 20;

class ExistingWriter final : public guest::ImageWriter, private BitmapDirty::Clusters {
public:
    ExistingWriter(guest::BlockDevice& dev, guest::Allocator& alloc, guest::ReasonSink* reasons,
                   const guest::Codecs* codecs, const Qcow2Header& h, uint8_t* buf)
        : meta_(dev, alloc, h.cluster_size()), dev_(meta_), alloc_(alloc), reasons_(reasons), codecs_(codecs), h_(h), cs_(h.cluster_size()), cb_(h.cluster_bits),
          extl2_((h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0), ew_(extl2_ ? 16 : 8),
          scb_(extl2_ ? h.cluster_bits - 5 : h.cluster_bits), l2_entries_(h.cluster_size() / ew_), buf_(buf),
          has_backing_(h.backing_file_offset != 0) {
        file_len_ = dev.size();
        orig_len_ = file_len_;
        next_ = (file_len_ + cs_ - 1) / cs_ * cs_;
        refcount_bits_ = uint32_t{1} << h.refcount_order;
        rb_entries_ = cs_ * 8 / refcount_bits_;
        rt_entries_ = uint64_t{h.refcount_table_clusters} * cs_ / 8;
    }

    uint64_t cluster_size() const override { return cs_; }
    uint64_t subcluster_size() const override { return uint64_t{1} << scb_; }
    bool zero_init() const override { return false; } // an existing image: qemu asks for zeros
    // The image's own backing chain (commit into a base that has one): copy-on-write reads from it.
    void set_backing(guest::ImageReader* backing) override { backing_ = backing; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > h_.size || len > h_.size - offset)
            return Status::Invalid;
        if (has_backing_ && backing_ == nullptr)
            return refuse("into an existing qcow2 image with a backing file");
        if (const Status st = mark_dirty(offset, len); st != Status::Ok)
            return st;
        const auto* src = static_cast<const uint8_t*>(buf);
        // Pieces that go in place into host clusters lying one after the other are written with
        // one request (a base written over its allocated clusters costs one write per run).
        uint64_t run_host = 0, run_guest = 0, run_len = 0;
        const uint8_t* run_src = nullptr;
        while (len > 0) {
            const uint64_t in = offset & (cs_ - 1);
            const uint64_t n = len < cs_ - in ? len : cs_ - in;
            uint64_t at = 0, e = 0, bm = 0, host = 0;
            if (const Status st = entry_ext(offset, false, &at, &e, &bm, &host); st != Status::Ok)
                return st;
            if (mapped(e) && !(e & (QCOW_OFLAG_ZERO | QCOW_OFLAG_COMPRESSED)) && !shared(e) &&
                all_normal(bm, in, n)) {
                if (run_len == 0 || host + in != run_host + run_len) {
                    if (run_len != 0)
                        if (const Status st = data_write(run_host, run_guest, run_src, run_len); st != Status::Ok)
                            return st;
                    run_host = host + in;
                    run_guest = offset;
                    run_src = src;
                    run_len = 0;
                }
                run_len += n;
            } else {
                if (run_len != 0)
                    if (const Status st = data_write(run_host, run_guest, run_src, run_len); st != Status::Ok)
                        return st;
                run_len = 0;
                if (in == 0 && n == cs_ && replaceable(e)) {
                    // Whole new clusters, as many as follow in this L2 table: allocated together.
                    uint64_t k = 0;
                    if (const Status st = append_clusters(offset, src, len / cs_, &k); st != Status::Ok)
                        return st;
                    offset += k * cs_;
                    src += k * cs_;
                    len -= k * cs_;
                    continue;
                }
                if (const Status st = extl2_ ? write_piece_ext(offset, src, n) : write_piece(offset, src, n);
                    st != Status::Ok)
                    return st;
            }
            offset += n;
            src += n;
            len -= n;
        }
        if (run_len != 0)
            return data_write(run_host, run_guest, run_src, run_len);
        return Status::Ok;
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) override {
        if (offset > h_.size || len > h_.size - offset)
            return Status::Invalid;
        if (has_backing_ && backing_ == nullptr)
            return refuse("into an existing qcow2 image with a backing file");
        if (const Status st = mark_dirty(offset, len); st != Status::Ok)
            return st;
        if (extl2_)
            return write_zeroes_ext(offset, len, may_unmap);
        while (len > 0) {
            const uint64_t in = offset & (cs_ - 1);
            const uint64_t n = len < cs_ - in ? len : cs_ - in;
            if (const Status st = zero_piece(offset, n, may_unmap); st != Status::Ok)
                return st;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    // -c: qemu's qcow2_co_pwritev_compressed_task over this writer. Data that does not shrink is
    // written as a normal cluster; a compressed cluster may only go where nothing is allocated
    // (qemu: EIO) and gets a host cluster of its own (qemu packs several into one: not modelled).
    Status write_compressed(uint64_t offset, const void* buf, size_t len) override {
        if (len == 0)
            return Status::Ok; // qemu's end-of-convert call: the file already ends on a cluster
        if (cipher_ != nullptr) // qemu-img refuses -c with an encrypted target before writing
            return refuse("compressed clusters into an encrypted qcow2 image");
        if (data_ != nullptr) // qcow2_co_pwritev_compressed: -ENOTSUP with a data file
            return Status::Unsupported;
        if ((offset & (cs_ - 1)) != 0 || offset > h_.size || len > h_.size - offset || len > cs_ ||
            (len != cs_ && offset + len != h_.size))
            return Status::Invalid;
        // A compressed cluster is written whole, so nothing is copied from the backing chain; the
        // chain must still be known (rebase -c hands it over; convert -n does not).
        if (has_backing_ && backing_ == nullptr)
            return refuse("into an existing qcow2 image with a backing file");
        if (h_.compression_type != QCOW2_COMPRESSION_TYPE_ZLIB)
            return refuse("zstd-compressed clusters into an existing qcow2 image");
        if (codecs_ == nullptr || codecs_->deflate == nullptr)
            return Status::Unsupported;
        if (const Status st = mark_dirty(offset, len); st != Status::Ok)
            return st;
        if (cbuf_ == nullptr) {
            cbuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
            if (cbuf_ == nullptr)
                return Status::NoMemory;
        }
        const uint8_t* src = static_cast<const uint8_t*>(buf);
        if (len != cs_) { // the disk's short last cluster, padded with zeros
            __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            __builtin_memcpy(buf_, src, len);
            src = buf_;
        }
        size_t out_len = 0;
        const Status st = codecs_->deflate(src, static_cast<size_t>(cs_), cbuf_, static_cast<size_t>(cs_ - 1),
                                           &out_len, ZLIB_WINDOW_BITS, ZLIB_DEFAULT_LEVEL);
        if (st == Status::TooLarge)
            return write(offset, buf, len); // does not fit in cluster_size - 1 bytes: a normal cluster
        if (st != Status::Ok)
            return st;
        uint64_t at = 0, e = 0, host = 0;
        if (const Status s2 = entry(offset, true, &at, &e, &host); s2 != Status::Ok)
            return s2;
        if (mapped(e))
            return Status::IoError; // compression can't overwrite anything (qemu)
        if (const Status s2 = allocate(&host); s2 != Status::Ok)
            return s2;
        if (const Status s2 = dev_.write(host, cbuf_, out_len); s2 != Status::Ok)
            return s2;
        if (host + cs_ > file_len_) {
            // The rest of the host cluster is not written; keep the file a whole cluster long.
            __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            if (const Status s2 = dev_.write(host + out_len, buf_, static_cast<size_t>(cs_ - out_len)); s2 != Status::Ok)
                return s2;
            file_len_ = host + cs_;
        }
        const uint64_t nb_csectors = (host + out_len - 1) / 512 - host / 512;
        const uint32_t csize_shift = 62 - (cb_ - 8);
        const uint64_t ce = host | QCOW_OFLAG_COMPRESSED | (nb_csectors << csize_shift);
        return extl2_ ? write_entry_ext(at, ce, 0) : write64(at, ce); // (a compressed cluster's bitmap is 0)
    }
    Status finish() override { return meta_.settle(); } // what waits (qcow2_deferred_meta.h)
    void close() override {
        (void)meta_.settle(); // after a failure too: the metadata of data already written
        meta_.release();
        l1_vetted_.release(alloc_);
        rb_ours_.release(alloc_);
        alloc_.deallocate(buf_, static_cast<size_t>(cs_));
        if (cbuf_ != nullptr)
            alloc_.deallocate(cbuf_, static_cast<size_t>(cs_));
        if (zbuf_ != nullptr)
            alloc_.deallocate(zbuf_, static_cast<size_t>(cs_));
        if (l2c_ != nullptr)
            alloc_.deallocate(l2c_, static_cast<size_t>(cs_));
        if (ebuf_ != nullptr)
            alloc_.deallocate(ebuf_, static_cast<size_t>(cs_));
        if (obuf_ != nullptr)
            alloc_.deallocate(obuf_, static_cast<size_t>(cs_));
        if (xbuf_ != nullptr) {
            __builtin_memset(xbuf_, 0, ENCRYPT_CHUNK);
            alloc_.deallocate(xbuf_, ENCRYPT_CHUNK);
        }
        luks::delete_wiped(alloc_, cipher_);
        luks::delete_wiped(alloc_, dcipher_);
        snapshots_.release(alloc_);
        bitmaps_.release(alloc_);
        dirty_.release(alloc_);
        if (compressed_ != nullptr)
            guest::arena_delete(alloc_, compressed_);
        guest::arena_delete(alloc_, this);
    }
    // Encrypted images: the unlocked cipher (arena memory, owned from here on) and whether sectors
    // count from host offsets (LUKS) or guest offsets (AES).
    // `decrypt`: the same key set up to decrypt (images with internal snapshots: a partial write
    // into a cluster a snapshot shares reads the old sectors to copy them to the new cluster).
    void set_cipher(luks::SectorCipher* cipher, luks::SectorCipher* decrypt, bool physical) {
        cipher_ = cipher;
        dcipher_ = decrypt;
        crypt_physical_ = physical;
    }

    // The sets cluster_in_original's checks keep: every L1 entry, every refcount-table entry up to
    // the largest table qemu opens (QCOW2_EXISTING_MAX_REFTABLE_BYTES: 128 KiB of bits).
    Status init_vetting() {
        if (const Status st = l1_vetted_.init(alloc_, h_.l1_size); st != Status::Ok)
            return st;
        return rb_ours_.init(alloc_, QCOW2_EXISTING_MAX_REFTABLE_BYTES / 8);
    }
    // Internal snapshots: their table and L1 tables join the metadata no write may land on.
    Status load_snapshot_metadata() {
        ReasonText why;
        const Status st = snapshots_.load(h_, dev_, alloc_, &why);
        if (st == Status::Corrupt)
            return corrupt(why);
        return st;
    }
    // Persistent bitmaps: their directory, tables and data clusters join the metadata no write may
    // land on, and the enabled ones record every write (qcow2_bitmap_dirty.h).
    Status load_bitmap_metadata() {
        ReasonText why;
        const Status st = bitmaps_.load(h_, dev_, file_len_, alloc_, &why, &dirty_); // one walk for both
        if (st == Status::Corrupt || st == Status::TooLarge)
            return corrupt(why, st);
        return st;
    }
    // commit's writes: bits are set for whole chunks of qemu's mirror granularity, the cluster
    // size clamped to [MIRROR_MIN_GRANULARITY, MIRROR_MAX_GRANULARITY].
    void set_mirror_chunks() {
        mirror_chunk_ = cs_ < MIRROR_MIN_GRANULARITY ? MIRROR_MIN_GRANULARITY
                        : cs_ > MIRROR_MAX_GRANULARITY ? MIRROR_MAX_GRANULARITY : cs_;
    }
    // An external data file (the image's data_file): data clusters are written there at their guest
    // offsets with no refcounts (qemu's do_alloc_cluster_offset); `raw`: data_file_raw, zeros are
    // written into the data file too.
    void set_data_file(guest::BlockDevice* data, bool raw) {
        data_ = data;
        data_raw_ = raw;
    }

private:
    // A data write: on encrypted images through qcow2_co_encrypt (whole 512-byte sectors numbered
    // from the host or the guest offset, encrypted in a bounce buffer).
    Status data_write(uint64_t host, uint64_t guest, const uint8_t* src, uint64_t len) {
        // The image's own clusters go ahead of the metadata that waits (DeferredMeta::write_data).
        auto out = [&](uint64_t at, const uint8_t* b, size_t n) {
            return data_ != nullptr ? data_->write(at, b, n) : meta_.write_data(at, b, n);
        };
        if (cipher_ == nullptr)
            return out(host, src, static_cast<size_t>(len));
        if ((host | guest | len) % SECTOR != 0)
            return Status::Invalid;
        if (xbuf_ == nullptr) {
            xbuf_ = static_cast<uint8_t*>(alloc_.allocate(ENCRYPT_CHUNK, 16));
            if (xbuf_ == nullptr)
                return Status::NoMemory;
        }
        const uint64_t base = crypt_physical_ ? host : guest;
        for (uint64_t done = 0; done < len;) {
            const size_t n = len - done < ENCRYPT_CHUNK ? static_cast<size_t>(len - done) : ENCRYPT_CHUNK;
            __builtin_memcpy(xbuf_, src + done, n);
            cipher_->encrypt((base + done) / SECTOR, xbuf_, n);
            if (const Status st = out(host + done, xbuf_, n); st != Status::Ok)
                return st;
            done += n;
        }
        return Status::Ok;
    }

    Status refuse(const char* what) {
        ReasonText r;
        r.add("instar cannot write ").add(what).add(" yet");
        r.send(reasons_);
        return Status::Unsupported;
    }
    Status corrupt(ReasonText& r, Status st = Status::Corrupt) {
        r.send(reasons_);
        return st;
    }
    // Guest bytes [offset, offset + len) are about to change: the enabled bitmaps' bits first;
    // under commit, the whole mirror chunks they touch (OpenRequest::mirror_chunks).
    Status mark_dirty(uint64_t offset, uint64_t len) {
        if (!dirty_.active() || len == 0)
            return Status::Ok;
        if (mirror_chunk_ != 0) {
            const uint64_t end = offset + len;
            offset -= offset % mirror_chunk_;
            len = (end % mirror_chunk_ == 0 ? end : end + (mirror_chunk_ - end % mirror_chunk_)) - offset;
            if (len > h_.size - offset)
                len = h_.size - offset;
        }
        ReasonText why;
        const Status st = dirty_.mark(offset, len, *this, &why);
        return st == Status::Corrupt ? corrupt(why) : st;
    }
    // BitmapDirty::Clusters: a bitmap's new data cluster, counted, then written.
    Status append(const uint8_t* data, uint64_t* host) override {
        if (const Status st = allocate(host); st != Status::Ok)
            return st;
        if (const Status st = dev_.write(*host, data, static_cast<size_t>(cs_)); st != Status::Ok)
            return st;
        if (*host + cs_ > file_len_)
            file_len_ = *host + cs_;
        return Status::Ok;
    }
    uint64_t file_length() const override { return file_len_; }
    Status read64(uint64_t offset, uint64_t* v) {
        uint8_t b[8];
        if (dev_.read(offset, b, 8) != Status::Ok)
            return Status::IoError;
        *v = load_be64(b);
        return Status::Ok;
    }
    Status write64(uint64_t offset, uint64_t v) {
        uint8_t b[8];
        store_be64(b, v);
        return l2_write(offset, b, 8);
    }
    // The refcount table's entry `rt_index` (rt_index < rt_entries_), the last one read kept: runs of
    // appended clusters read the same entry again and again, an exit each. This writer is the only
    // one changing the table while it runs (set_refcount names new blocks through set_reftable,
    // grow_reftable moves the table and forgets it).
    Status reftable_entry(uint64_t rt_index, uint64_t* block) {
        if (rt_index != rt_cached_index_) {
            if (const Status st = read64(h_.refcount_table_offset + rt_index * 8, &rt_cached_block_); st != Status::Ok)
                return st;
            rt_cached_index_ = rt_index;
        }
        *block = rt_cached_block_;
        return Status::Ok;
    }
    Status set_reftable(uint64_t rt_index, uint64_t block) {
        rt_cached_index_ = UINT64_MAX;
        if (const Status st = write64(h_.refcount_table_offset + rt_index * 8, block); st != Status::Ok)
            return st;
        rt_cached_index_ = rt_index;
        rt_cached_block_ = block;
        return Status::Ok;
    }
    uint64_t rt_cached_index_ = UINT64_MAX, rt_cached_block_ = 0;
    Status misplaced_refblock(uint64_t rt_index, uint64_t block) {
        ReasonText r;
        r.add("Refblock offset ").hex(block).add(" unaligned or past the end of the image file (reftable index: ")
            .hex(rt_index).add(")");
        return corrupt(r);
    }
    // Bytes written into the image (L2 entries among them): the cached L2 table stays the file's.
    // Metadata bytes: into the cached L2 table when they lie there (written from it later,
    // DeferredMeta::defer_table), else waiting on their own (DeferredMeta::defer_l2).
    Status l2_write(uint64_t offset, const uint8_t* b, uint64_t n) {
        if (l2c_ != nullptr && l2c_off_ != UINT64_MAX && offset >= l2c_off_ && offset - l2c_off_ <= cs_ - n) {
            __builtin_memcpy(l2c_ + (offset - l2c_off_), b, static_cast<size_t>(n));
            return meta_.defer_table(l2c_off_, l2c_, offset - l2c_off_, offset - l2c_off_ + n);
        }
        return meta_.defer_l2(offset, b, static_cast<size_t>(n));
    }
    // An L2 entry at `at` (inside the L2 table cluster the caller checked), through a one-table cache.
    Status l2_read(uint64_t at, uint64_t* v) {
        const uint64_t table = at & ~(cs_ - 1);
        if (l2c_ == nullptr) {
            l2c_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
            if (l2c_ == nullptr)
                return Status::NoMemory;
            l2c_off_ = UINT64_MAX;
        }
        if (l2c_off_ != table) {
            if (dev_.read(table, l2c_, static_cast<size_t>(cs_)) != Status::Ok) {
                l2c_off_ = UINT64_MAX;
                return Status::IoError;
            }
            l2c_off_ = table;
        }
        *v = load_be64(l2c_ + (at - table));
        return Status::Ok;
    }
    // A cluster-aligned host offset whose cluster lies inside the file.
    bool cluster_in_file(uint64_t host) const { return cluster_within(host, file_len_); }
    // ... in a file of `len` bytes.
    bool cluster_within(uint64_t host, uint64_t len) const {
        return (host & (cs_ - 1)) == 0 && host < len && cs_ <= len - host;
    }
    // A data cluster in a file of `len` bytes: it starts inside it. The file may end inside the
    // cluster (qemu writes only the subclusters a request and its copy-on-write cover, and zeroes
    // a hole's with FALLOC_FL_ZERO_RANGE); appends start at the next cluster boundary past the end.
    bool data_cluster_within(uint64_t host, uint64_t len) const { return (host & (cs_ - 1)) == 0 && host < len; }
    // Compressed bytes [at, at + size) within a file of `len` bytes: the last sector may run past
    // its end (qemu's compressed writes leave it so), the cluster holding it may not.
    bool compressed_within(uint64_t at, uint64_t size, uint64_t len) const {
        return at < len && ((at + size - 1) & ~(cs_ - 1)) < len;
    }
    // ... inside the file as it was opened. Every cluster the writer allocates is appended past that
    // end, so a pointer the image held before this run must name a cluster in it: one just past the
    // old end would otherwise, once the writer has appended there, name a cluster it allocated.
    bool cluster_in_original(uint64_t host) const { return cluster_within(host, orig_len_); }
    // A refcount block the refcount table names at `rt_index`: this run's own, or in the original file.
    bool refblock_placed(uint64_t rt_index, uint64_t block) const {
        return cluster_in_file(block) && !overlaps_metadata(block) &&
               (rb_ours_.has(rt_index) || cluster_in_original(block));
    }
    // The first look at the L2 table of L1 entry `l1_index` that this run did not write: the
    // table and every cluster its entries name must lie in the original file (cluster_in_original;
    // the entries this run writes later name appended clusters). Once per table.
    Status vet_l2(uint64_t l1_index, uint64_t l2) {
        ReasonText r;
        if (!cluster_in_original(l2)) {
            r.add("L2 table offset ").hex(l2).add(" past the end of the image file (L1 index: ").hex(l1_index).add(")");
            return corrupt(r);
        }
        for (uint64_t i = 0; i < l2_entries_; ++i) {
            uint64_t e = 0;
            if (const Status st = l2_read(l2 + i * ew_, &e); st != Status::Ok)
                return st;
            bool bad = false;
            uint64_t at = e & L2E_OFFSET_MASK;
            if (e & QCOW_OFLAG_COMPRESSED) {
                uint64_t size = 0;
                qcow2_compressed_extent(e, cb_, &at, &size);
                bad = !compressed_within(at, size, orig_len_);
            } else if (at != 0 && data_ == nullptr) {
                bad = !data_cluster_within(at, orig_len_);
            }
            if (bad) {
                r.add((e & QCOW_OFLAG_COMPRESSED) ? "Compressed cluster data at " : "Cluster allocation offset ")
                    .hex(at).add(" past the end of the image file (L2 offset: ").hex(l2).add(", L2 index: ").hex(i)
                    .add(")");
                return corrupt(r);
            }
        }
        l1_vetted_.add(l1_index);
        return Status::Ok;
    }
    // In-place writes must not land on the header, the L1 table, the refcount table, a snapshot's
    // table or L1 table, or a bitmap's directory, table or data (qemu's metadata overlap check;
    // L2 tables and refcount blocks are not tracked).
    bool overlaps_metadata(uint64_t host) const {
        auto hit = [&](uint64_t start, uint64_t bytes) { return host + cs_ > start && host < start + bytes; };
        return host < cs_ || hit(h_.l1_table_offset, uint64_t{h_.l1_size} * 8) ||
               hit(h_.refcount_table_offset, uint64_t{h_.refcount_table_clusters} * cs_) ||
               snapshots_.hits(host, host + cs_) || bitmaps_.hits(host, host + cs_);
    }
    // A data cluster an internal snapshot shares: mapped without QCOW_OFLAG_COPIED (refcount above
    // 1), so it is never written in place. A data file's clusters have no refcounts (images with
    // one cannot have snapshots: open refuses the pair).
    bool shared(uint64_t e) const {
        return data_ == nullptr && mapped(e) && !(e & (QCOW_OFLAG_COPIED | QCOW_OFLAG_COMPRESSED));
    }

    // Sets the refcount of the host cluster at `host` (qemu's refcount entry layouts: sub-byte
    // widths pack from the low bits, wider ones are big-endian).
    Status set_refcount(uint64_t host, uint64_t value, uint32_t depth) {
        if (depth > MAX_REFBLOCK_DEPTH)
            return Status::Corrupt;
        const uint64_t cluster = host >> cb_;
        const uint64_t rt_index = cluster / rb_entries_;
        if (rt_index >= rt_entries_) {
            if (const Status st = grow_reftable(rt_index, depth); st != Status::Ok)
                return st;
        }
        uint64_t block = 0;
        if (const Status st = reftable_entry(rt_index, &block); st != Status::Ok)
            return st;
        block &= REFT_OFFSET_MASK;
        if (block == 0) {
            // A new refcount block, appended, counted before the table names it (a kill in between
            // leaves a leak, never a referenced cluster with refcount 0): inside itself where it
            // covers itself, else in the block that covers it.
            block = next_;
            if (block > MAX_CLUSTER_OFFSET - cs_)
                return Status::TooLarge;
            next_ += cs_;
            __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            const uint64_t self = block >> cb_;
            const bool covers_itself = self / rb_entries_ == rt_index;
            if (covers_itself) {
                const uint64_t i = self % rb_entries_;
                if (refcount_bits_ < 8)
                    buf_[i * refcount_bits_ / 8] = static_cast<uint8_t>(1u << ((i * refcount_bits_) % 8));
                else
                    buf_[(i + 1) * (refcount_bits_ / 8) - 1] = 1;
            }
            if (const Status st = dev_.write(block, buf_, static_cast<size_t>(cs_)); st != Status::Ok)
                return st;
            file_len_ = next_;
            if (!covers_itself)
                if (const Status st = set_refcount(block, 1, depth + 1); st != Status::Ok)
                    return st;
            if (const Status st = set_reftable(rt_index, block); st != Status::Ok)
                return st;
            rb_ours_.add(rt_index);
        } else if (!refblock_placed(rt_index, block)) {
            return misplaced_refblock(rt_index, block);
        }
        const RefEntry r = ref_entry(block, cluster);
        if (refcount_bits_ < 8) {
            uint8_t b = 0;
            if (dev_.read(r.at, &b, 1) != Status::Ok)
                return Status::IoError;
            const uint32_t mask = ((1u << refcount_bits_) - 1) << r.shift;
            b = static_cast<uint8_t>((b & ~mask) | ((static_cast<uint32_t>(value) << r.shift) & mask));
            return dev_.write(r.at, &b, 1);
        }
        uint8_t b[8];
        for (uint32_t i = 0; i < r.bytes; ++i)
            b[i] = static_cast<uint8_t>(value >> (8 * (r.bytes - 1 - i)));
        return dev_.write(r.at, b, r.bytes);
    }

    // Where the refcount entry of `cluster` lies in the refcount block at `block`: its first byte,
    // its length, and for sub-byte widths (packed from the low bits) its shift in that byte.
    struct RefEntry {
        uint64_t at;
        uint32_t bytes;
        uint32_t shift;
    };
    RefEntry ref_entry(uint64_t block, uint64_t cluster) const {
        const uint64_t index = cluster % rb_entries_;
        if (refcount_bits_ < 8)
            return {block + index * refcount_bits_ / 8, 1,
                    static_cast<uint32_t>(index % (8 / refcount_bits_)) * refcount_bits_};
        return {block + index * (refcount_bits_ / 8), refcount_bits_ / 8, 0};
    }

    // qemu's refcount table growth, simplified: a table at least twice as large (and covering
    // `rt_index`) is appended, the old entries copied into it, the header pointed at it, its own
    // clusters counted, and the old table's clusters freed.
    Status grow_reftable(uint64_t rt_index, uint32_t depth) {
        if (depth > MAX_REFBLOCK_DEPTH)
            return Status::Corrupt;
        const uint64_t per_cluster = cs_ / 8;
        uint64_t want = rt_entries_ * 2 > rt_index + 1 ? rt_entries_ * 2 : rt_index + 1;
        const uint64_t clusters = (want + per_cluster - 1) / per_cluster;
        // qemu caps the table at QCOW_MAX_REFTABLE_SIZE bytes; no larger one is grown.
        uint64_t bytes = 0;
        if (__builtin_mul_overflow(clusters, cs_, &bytes) || bytes > QCOW2_EXISTING_MAX_REFTABLE_BYTES ||
            next_ > MAX_CLUSTER_OFFSET - bytes)
            return Status::TooLarge;
        const uint64_t old_offset = h_.refcount_table_offset;
        const uint64_t old_clusters = h_.refcount_table_clusters;
        const uint64_t table = next_;
        next_ += bytes;
        for (uint64_t i = 0; i < clusters; ++i) {
            if (i < old_clusters) {
                if (const Status st = dev_.read(old_offset + i * cs_, buf_, static_cast<size_t>(cs_)); st != Status::Ok)
                    return st;
            } else {
                __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            }
            if (const Status st = dev_.write(table + i * cs_, buf_, static_cast<size_t>(cs_)); st != Status::Ok)
                return st;
        }
        file_len_ = next_;
        uint8_t field[12];
        store_be64(field, table);
        store_be32(field + 8, static_cast<uint32_t>(clusters));
        if (const Status st = dev_.write(48, field, sizeof field); st != Status::Ok) // refcount_table_offset, _clusters
            return st;
        h_.refcount_table_offset = table;
        h_.refcount_table_clusters = static_cast<uint32_t>(clusters);
        rt_entries_ = clusters * per_cluster;
        rt_cached_index_ = UINT64_MAX;
        for (uint64_t i = 0; i < clusters; ++i)
            if (const Status st = set_refcount(table + i * cs_, 1, depth + 1); st != Status::Ok)
                return st;
        for (uint64_t i = 0; i < old_clusters; ++i)
            if (const Status st = set_refcount(old_offset + i * cs_, 0, depth + 1); st != Status::Ok)
                return st;
        return Status::Ok;
    }

    // A data cluster for `guest`: in the data file, the guest cluster itself (nothing to count);
    // else appended to the image (allocate).
    Status allocate_data(uint64_t guest, uint64_t* host) {
        if (data_ == nullptr)
            return allocate(host);
        *host = guest & ~(cs_ - 1);
        return Status::Ok;
    }
    // Whether the entry maps a cluster (qcow2_get_cluster_type NORMAL or ZERO_ALLOC): host offset
    // 0 is a data file's first cluster, allocated when QCOW_OFLAG_COPIED says so.
    bool mapped(uint64_t e) const {
        if (e & L2E_OFFSET_MASK)
            return true;
        return data_ != nullptr && (e & QCOW_OFLAG_COPIED) != 0 && (e & QCOW_OFLAG_ZERO) == 0;
    }

    // Appends one cluster: refcount first, then (the caller) its data, then the entry naming it.
    Status allocate(uint64_t* host) {
        if (next_ > MAX_CLUSTER_OFFSET - cs_)
            return Status::TooLarge;
        const uint64_t at = next_;
        next_ += cs_;
        if (const Status st = set_refcount(at, 1, 0); st != Status::Ok)
            return st;
        *host = at;
        return Status::Ok;
    }

    // The L2 table for `guest`: its offset, or 0 when there is none and `create` is false.
    Status l2_table(uint64_t guest, bool create, uint64_t* out) {
        const uint64_t l1_index = guest >> (cb_ + cb_ - (extl2_ ? 4 : 3));
        if (l1_index >= h_.l1_size) {
            ReasonText r;
            r.add("L1 table too small for the virtual size (L1 index: ").hex(l1_index).add(")");
            return corrupt(r);
        }
        if (l1_index == l1_index_) {
            *out = l2_offset_;
            if (l2_offset_ != 0 || !create)
                return Status::Ok;
        }
        uint64_t e = 0;
        if (const Status st = read64(h_.l1_table_offset + l1_index * 8, &e); st != Status::Ok)
            return st;
        uint64_t l2 = e & L1E_OFFSET_MASK;
        if (l2 != 0) {
            if (!cluster_in_file(l2) || overlaps_metadata(l2)) {
                ReasonText r;
                r.add("L2 table offset ").hex(l2).add(" unaligned or past the end of the image file (L1 index: ")
                    .hex(l1_index).add(")");
                return corrupt(r);
            }
            if (!l1_vetted_.has(l1_index))
                if (const Status st = vet_l2(l1_index, l2); st != Status::Ok)
                    return st;
            if (!(e & QCOW_OFLAG_COPIED)) {
                if (data_ != nullptr)
                    return refuse("into an L2 table an existing qcow2 image shares (refcount above 1)");
                if (const Status st = copy_l2_table(l1_index, l2, &l2); st != Status::Ok)
                    return st;
            }
        } else if (create) {
            if (const Status st = allocate(&l2); st != Status::Ok)
                return st;
            __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            if (const Status st = dev_.write(l2, buf_, static_cast<size_t>(cs_)); st != Status::Ok)
                return st;
            if (l2c_off_ == l2)
                l2c_off_ = UINT64_MAX;
            file_len_ = next_;
            if (const Status st = write64(h_.l1_table_offset + l1_index * 8, l2 | QCOW_OFLAG_COPIED); st != Status::Ok)
                return st;
            l1_vetted_.add(l1_index); // a new table: nothing in it but what this run writes
        }
        l1_index_ = l1_index;
        l2_offset_ = l2;
        *out = l2;
        return Status::Ok;
    }

    // The L2 entry for `guest` (0 when there is no table), checked: *host is its cluster or 0.
    Status entry(uint64_t guest, bool create, uint64_t* at, uint64_t* e, uint64_t* host) {
        uint64_t l2 = 0;
        if (const Status st = l2_table(guest, create, &l2); st != Status::Ok)
            return st;
        *at = 0;
        *e = 0;
        *host = 0;
        if (l2 == 0)
            return Status::Ok;
        const uint64_t index = (guest >> cb_) & (l2_entries_ - 1);
        *at = l2 + index * ew_;
        if (const Status st = l2_read(*at, e); st != Status::Ok)
            return st;
        if (extl2_ && !(*e & QCOW_OFLAG_COMPRESSED)) // (a compressed descriptor's bit 0 is its offset's)
            *e &= ~QCOW_OFLAG_ZERO; // reserved with extended L2 entries: the bitmap says what is zero
        if (*e & QCOW_OFLAG_COMPRESSED) {
            // Rewritten by write_piece / zero_piece (qemu's copy-on-write of compressed clusters).
            // qemu's writers never make them in an encrypted image or one with a data file.
            if (cipher_ != nullptr || data_ != nullptr)
                return refuse("over compressed clusters of an encrypted qcow2 image or one with a data file");
            // Its clusters (those its bytes touch; the last sector may run past the end of the file,
            // as qemu's compressed writes leave it) must lie in the file and off the header, L1 and
            // refcount tables: their refcounts drop once it is rewritten.
            uint64_t offset = 0, size = 0;
            qcow2_compressed_extent(*e, cb_, &offset, &size);
            bool bad = !compressed_within(offset, size, file_len_);
            for (uint64_t c = offset & ~(cs_ - 1); !bad && c < offset + size; c += cs_)
                bad = overlaps_metadata(c);
            if (bad) {
                ReasonText r;
                r.add("Compressed cluster data at ").hex(offset)
                    .add(" past the end of the image file or on metadata (L2 offset: ").hex(l2).add(", L2 index: ")
                    .hex(index).add(")");
                return corrupt(r);
            }
            return Status::Ok;
        }
        if (h_.version < 3 && (*e & QCOW_OFLAG_ZERO)) {
            ReasonText r;
            r.add("Zero cluster entry found in pre-v3 image (L2 offset: ").hex(l2).add(", L2 index: ").hex(index)
                .add(")");
            return corrupt(r);
        }
        *host = *e & L2E_OFFSET_MASK;
        if (mapped(*e)) {
            // A data file's cluster may lie anywhere in it (its length grows with the writes); an
            // image's must lie in the file, off the metadata.
            const bool bad = data_ != nullptr ? (*host & (cs_ - 1)) != 0 || *host > MAX_CLUSTER_OFFSET - cs_
                                              : !data_cluster_within(*host, file_len_) || overlaps_metadata(*host);
            if (bad) {
                ReasonText r;
                r.add("Cluster allocation offset ").hex(*host)
                    .add(" unaligned, past the end of the image file or on metadata (L2 offset: ").hex(l2)
                    .add(", L2 index: ").hex(index).add(")");
                return corrupt(r);
            }
            if (data_ != nullptr && !(*e & QCOW_OFLAG_COPIED))
                return refuse("into a cluster an existing qcow2 image shares (refcount above 1)");
        }
        return Status::Ok;
    }

    // Copy on write (a compressed cluster, or one a snapshot shares): a new cluster is counted,
    // filled with the old cluster's bytes (`old` fills buf_, called for a partial write only) and the
    // new ones over them, and the entry pointed at it; the caller then drops the old references. A
    // kill before the entry changes leaks the new cluster; after it, at worst the old ones.
    template <class Fill>
    Status copy_on_write(uint64_t guest, uint64_t at, const uint8_t* src, uint64_t n, Fill old) {
        const uint64_t in = guest & (cs_ - 1);
        uint64_t fresh = 0;
        if (const Status st = allocate(&fresh); st != Status::Ok) // (may use buf_: before it is filled)
            return st;
        const uint8_t* data = src;
        if (n != cs_) {
            if (const Status st = old(); st != Status::Ok)
                return st;
            __builtin_memcpy(buf_ + in, src, static_cast<size_t>(n));
            data = buf_;
        }
        if (const Status st = data_write(fresh, guest - in, data, cs_); st != Status::Ok)
            return st;
        if (fresh + cs_ > file_len_)
            file_len_ = fresh + cs_;
        return write64(at, fresh | QCOW_OFLAG_COPIED);
    }

    // A write into a compressed cluster (qemu's handle_copied / handle_alloc: compressed clusters are
    // never written in place): copied on write from its inflated bytes, then the compressed bytes'
    // clusters freed.
    Status replace_compressed(uint64_t guest, uint64_t at, uint64_t e, const uint8_t* src, uint64_t n) {
        const Status st = copy_on_write(guest, at, src, n, [&]() {
            if (compressed_ == nullptr) {
                compressed_ = guest::arena_new<CompressedCache>(alloc_, dev_, alloc_, codecs_, h_.compression_type, cb_,
                                                                reasons_);
                if (compressed_ == nullptr)
                    return Status::NoMemory;
            }
            const uint8_t* inflated = nullptr;
            if (const Status s2 = compressed_->cluster(e, &inflated); s2 != Status::Ok)
                return s2;
            __builtin_memcpy(buf_, inflated, static_cast<size_t>(cs_));
            return Status::Ok;
        });
        return st != Status::Ok ? st : free_compressed(e);
    }

    // qcow2_free_any_cluster for a compressed entry: every host cluster its bytes touch (from the
    // sector holding its first byte) loses one reference; several compressed clusters may share one.
    Status free_compressed(uint64_t e) {
        return each_compressed_cluster(e, [&](uint64_t c) { return drop_refs(c, 1); });
    }
    // Calls fn(c) for each host cluster c a compressed entry's bytes touch, in order.
    template <class Fn>
    Status each_compressed_cluster(uint64_t e, Fn fn) {
        uint64_t offset = 0, size = 0;
        qcow2_compressed_extent(e, cb_, &offset, &size);
        const uint64_t start = offset & ~(QCOW2_COMPRESSED_SECTOR_SIZE - 1);
        const uint64_t end = offset + size; // size is at most 2 clusters: no overflow below 2^56
        for (uint64_t c = start & ~(cs_ - 1); c < end; c += cs_)
            if (const Status st = fn(c); st != Status::Ok)
                return st;
        return Status::Ok;
    }

    // `n` references to the host cluster at `host` are gone (their entries now name other
    // clusters): its refcount drops by n. A referenced cluster whose refcount is already below n
    // is corruption, reported, and nothing is written.
    Status drop_refs(uint64_t host, uint64_t n) {
        uint64_t refs = 0;
        if (const Status st = refcount_of(host, &refs); st != Status::Ok)
            return st;
        if (refs < n) {
            ReasonText r;
            r.add("Referenced cluster ").hex(host).add(" has refcount ").dec(refs).add(", below its references");
            return corrupt(r);
        }
        return set_refcount(host, refs - n, 0);
    }
    // Drops gathered over a run of replaced entries: consecutive ones naming the same host cluster
    // (compressed clusters packed into one) cost one refcount update.
    Status queue_drop(uint64_t host) {
        if (drop_n_ != 0 && host == drop_host_) {
            ++drop_n_;
            return Status::Ok;
        }
        if (const Status st = flush_drops(); st != Status::Ok)
            return st;
        drop_host_ = host;
        drop_n_ = 1;
        return Status::Ok;
    }
    Status flush_drops() {
        if (drop_n_ == 0)
            return Status::Ok;
        const uint64_t n = drop_n_;
        drop_n_ = 0;
        return drop_refs(drop_host_, n);
    }

    // qemu's l2_allocate for an L2 table an internal snapshot shares (L1 entry without
    // QCOW_OFLAG_COPIED): a new cluster is counted, the table copied into it as it is (its entries
    // keep their flags: the data clusters stay shared), the L1 entry pointed at it, and then the old
    // table's refcount dropped. A kill before the L1 entry changes leaks the copy; after it, the old
    // table keeps one reference too many (a leak) until its refcount drops.
    Status copy_l2_table(uint64_t l1_index, uint64_t old, uint64_t* out) {
        uint64_t fresh = 0;
        if (const Status st = allocate(&fresh); st != Status::Ok) // (may use buf_: before it is filled)
            return st;
        if (const Status st = dev_.read(old, buf_, static_cast<size_t>(cs_)); st != Status::Ok)
            return st;
        if (const Status st = dev_.write(fresh, buf_, static_cast<size_t>(cs_)); st != Status::Ok)
            return st;
        if (fresh + cs_ > file_len_)
            file_len_ = fresh + cs_;
        if (const Status st = write64(h_.l1_table_offset + l1_index * 8, fresh | QCOW_OFLAG_COPIED); st != Status::Ok)
            return st;
        *out = fresh;
        return drop_refs(old, 1);
    }

    // A write into a data cluster an internal snapshot shares (qemu's handle_alloc for an entry
    // without QCOW_OFLAG_COPIED): copied on write from its bytes (zeros for a zero-flagged one;
    // encrypted ones decrypted here and encrypted again at the new offset), then the old cluster's
    // refcount dropped by one.
    Status replace_shared(uint64_t guest, uint64_t at, uint64_t e, uint64_t host, const uint8_t* src, uint64_t n) {
        const Status st = copy_on_write(guest, at, src, n, [&]() {
            if (e & QCOW_OFLAG_ZERO) {
                __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
                return Status::Ok;
            }
            if (const Status s2 = dev_.read(host, buf_, static_cast<size_t>(cs_)); s2 != Status::Ok)
                return s2;
            if (cipher_ != nullptr) {
                if (dcipher_ == nullptr)
                    return Status::Invalid; // open sets both up for an image with snapshots
                const uint64_t first = crypt_physical_ ? host : guest & ~(cs_ - 1);
                dcipher_->decrypt(first / SECTOR, buf_, static_cast<size_t>(cs_));
            }
            return Status::Ok;
        });
        return st != Status::Ok ? st : drop_refs(host, 1);
    }

    // The refcount of the host cluster at `host` (a cluster an entry names: its refcount block exists).
    Status refcount_of(uint64_t host, uint64_t* refs) {
        const uint64_t cluster = host >> cb_;
        const uint64_t rt_index = cluster / rb_entries_;
        uint64_t block = 0;
        if (rt_index < rt_entries_)
            if (const Status st = reftable_entry(rt_index, &block); st != Status::Ok)
                return st;
        block &= REFT_OFFSET_MASK;
        if (block == 0 || !refblock_placed(rt_index, block)) {
            ReasonText r;
            r.add("Refcount block for the referenced cluster ").hex(host).add(" missing or misplaced (reftable index: ")
                .hex(rt_index).add(")");
            return corrupt(r);
        }
        const RefEntry r = ref_entry(block, cluster);
        uint8_t b[8];
        if (dev_.read(r.at, b, r.bytes) != Status::Ok)
            return Status::IoError;
        if (refcount_bits_ < 8) {
            *refs = (b[0] >> r.shift) & ((1u << refcount_bits_) - 1);
            return Status::Ok;
        }
        *refs = 0;
        for (uint32_t i = 0; i < r.bytes; ++i)
            *refs = (*refs << 8) | b[i];
        return Status::Ok;
    }

    Status write_piece(uint64_t guest, const uint8_t* src, uint64_t n) {
        uint64_t at = 0, e = 0, host = 0;
        if (const Status st = entry(guest, true, &at, &e, &host); st != Status::Ok)
            return st;
        const uint64_t in = guest & (cs_ - 1);
        if (e & QCOW_OFLAG_COMPRESSED)
            return replace_compressed(guest, at, e, src, n);
        if (shared(e))
            return replace_shared(guest, at, e, host, src, n);
        if (mapped(e) && !(e & QCOW_OFLAG_ZERO))
            return data_write(host + in, guest, src, n); // allocated: in place
        // A zero-flagged cluster reads as zeros, an unallocated one as the backing file (zeros
        // without one): the whole cluster is written, the request's bytes over that.
        const bool fresh = !mapped(e);
        if (fresh) {
            if (const Status st = allocate_data(guest, &host); st != Status::Ok)
                return st;
        }
        const uint8_t* data = src;
        if (n != cs_) {
            __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            if (fresh && !(e & QCOW_OFLAG_ZERO) && backing_ != nullptr) {
                const uint64_t start = guest - in, bsize = backing_->virtual_size();
                if (start < bsize) {
                    const uint64_t len = bsize - start < cs_ ? bsize - start : cs_;
                    if (const Status st = backing_->read(start, buf_, static_cast<size_t>(len)); st != Status::Ok)
                        return st;
                }
            }
            __builtin_memcpy(buf_ + in, src, static_cast<size_t>(n));
            data = buf_;
        }
        if (const Status st = data_write(host, guest - in, data, cs_); st != Status::Ok)
            return st;
        if (fresh && data_ == nullptr && host + cs_ > file_len_)
            file_len_ = host + cs_;
        return write64(at, host | QCOW_OFLAG_COPIED);
    }

    // Whether a whole-cluster write gives the entry a new cluster: unallocated (not zero-flagged),
    // or in the image itself compressed or shared with a snapshot (copied on write, and nothing of
    // the old cluster is kept when the write covers it).
    bool replaceable(uint64_t e) const {
        if (e & QCOW_OFLAG_COMPRESSED)
            return data_ == nullptr;
        return (!mapped(e) && !(e & QCOW_OFLAG_ZERO)) || shared(e); // (extended L2: no zero flag)
    }

    // Up to `max` whole clusters from `guest` on whose entries are replaceable, in one L2 table,
    // appended as one run: their refcounts first, then the data (one request), then their L2 entries
    // (one request), then the references the old entries held are dropped (compressed or shared
    // clusters). A kill between the steps leaves leaked clusters at worst. *done >= 1.
    Status append_clusters(uint64_t guest, const uint8_t* src, uint64_t max, uint64_t* done) {
        uint64_t at0 = 0, e = 0, host = 0;
        if (const Status st = entry(guest, true, &at0, &e, &host); st != Status::Ok)
            return st;
        if (!replaceable(e) || at0 == 0)
            return Status::Invalid; // the caller saw it replaceable
        if (obuf_ == nullptr) {
            obuf_ = static_cast<uint64_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
            if (obuf_ == nullptr)
                return Status::NoMemory;
        }
        obuf_[0] = e;
        const uint64_t room = l2_entries_ - ((guest >> cb_) & (l2_entries_ - 1));
        uint64_t k = 1;
        while (k < max && k < room) {
            uint64_t at = 0;
            if (const Status st = entry(guest + k * cs_, false, &at, &e, &host); st != Status::Ok)
                return st;
            if (!replaceable(e) || at != at0 + k * ew_)
                break;
            obuf_[k++] = e;
        }
        uint64_t bytes = 0;
        if (__builtin_mul_overflow(k, cs_, &bytes))
            return Status::TooLarge;
        uint64_t first = guest; // a data file's clusters: the guest's own, uncounted
        if (data_ == nullptr) {
            if (next_ > MAX_CLUSTER_OFFSET - bytes)
                return Status::TooLarge;
            first = next_;
            next_ += bytes;
            for (uint64_t i = 0; i < k;) {
                uint64_t m = 0;
                if (const Status st = set_refcounts_one(first + i * cs_, k - i, &m); st != Status::Ok)
                    return st;
                i += m;
            }
        }
        if (const Status st = data_write(first, guest, src, bytes); st != Status::Ok)
            return st;
        if (data_ == nullptr && first + bytes > file_len_)
            file_len_ = first + bytes;
        if (ebuf_ == nullptr) {
            ebuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
            if (ebuf_ == nullptr)
                return Status::NoMemory;
        }
        for (uint64_t i = 0; i < k; ++i) { // extended L2: every subcluster allocated (link_l2's range)
            store_be64(ebuf_ + i * ew_, (first + i * cs_) | QCOW_OFLAG_COPIED);
            if (extl2_)
                store_be64(ebuf_ + i * ew_ + 8, QCOW2_L2_BITMAP_ALL_ALLOC);
        }
        if (const Status st = l2_write(at0, ebuf_, k * ew_); st != Status::Ok)
            return st;
        *done = k;
        for (uint64_t i = 0; i < k; ++i) {
            const uint64_t old = obuf_[i];
            Status st = Status::Ok;
            if (old & QCOW_OFLAG_COMPRESSED)
                st = each_compressed_cluster(old, [&](uint64_t c) { return queue_drop(c); });
            else if (shared(old))
                st = queue_drop(old & L2E_OFFSET_MASK);
            if (st != Status::Ok)
                return st;
        }
        return flush_drops();
    }

    // Refcount 1 for up to `count` clusters from `host` on that share one refcount block: the first
    // through set_refcount (which makes the block, or grows the table, when needed), the rest with one
    // read and one write of their entries. *done: how many.
    Status set_refcounts_one(uint64_t host, uint64_t count, uint64_t* done) {
        const uint64_t cluster = host >> cb_;
        const uint64_t index = cluster % rb_entries_;
        const uint64_t m = count < rb_entries_ - index ? count : rb_entries_ - index;
        // The first through set_refcount when its block must be made (or the table grown); then,
        // or at once when the block exists, the rest in one read and one write of their bytes.
        uint64_t first = index;
        uint64_t block = 0;
        if (cluster / rb_entries_ < rt_entries_)
            if (const Status st = reftable_entry(cluster / rb_entries_, &block); st != Status::Ok)
                return st;
        if ((block & REFT_OFFSET_MASK) == 0) {
            if (const Status st = set_refcount(host, 1, 0); st != Status::Ok)
                return st;
            first = index + 1;
            if (const Status st = reftable_entry(cluster / rb_entries_, &block); st != Status::Ok)
                return st;
        }
        *done = m;
        if (first == index + m)
            return Status::Ok;
        block &= REFT_OFFSET_MASK;
        if (!refblock_placed(cluster / rb_entries_, block))
            return misplaced_refblock(cluster / rb_entries_, block);
        // Entries first .. index+m-1, as whole bytes (sub-byte widths: the bytes that hold them, read
        // first for their neighbours' bits; whole-byte entries are written without a read).
        const uint64_t lo = first * refcount_bits_ / 8, hi = ((index + m) * refcount_bits_ + 7) / 8;
        if (refcount_bits_ < 8 && dev_.read(block + lo, buf_, static_cast<size_t>(hi - lo)) != Status::Ok)
            return Status::IoError;
        for (uint64_t i = first; i < index + m; ++i) {
            if (refcount_bits_ >= 8) {
                const uint32_t b = refcount_bits_ / 8;
                uint8_t* p = buf_ + i * b - lo;
                __builtin_memset(p, 0, b);
                p[b - 1] = 1;
            } else {
                const uint64_t bit = i * refcount_bits_;
                uint8_t& byte = buf_[bit / 8 - lo];
                const uint32_t shift = static_cast<uint32_t>(bit % 8);
                const uint32_t mask = ((1u << refcount_bits_) - 1) << shift;
                byte = static_cast<uint8_t>((byte & ~mask) | ((1u << shift) & mask));
            }
        }
        return meta_.defer_refcounts(block + lo, buf_, static_cast<size_t>(hi - lo));
    }

    // zbuf_, made on first use: one cluster of zeros.
    Status zeros() {
        if (zbuf_ != nullptr)
            return Status::Ok;
        zbuf_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
        if (zbuf_ == nullptr)
            return Status::NoMemory;
        __builtin_memset(zbuf_, 0, static_cast<size_t>(cs_));
        return Status::Ok;
    }

    // Whether the rest of the cluster around [guest, guest + n) reads as zeros through the backing
    // file by its block status (qemu's is_zero: zero clusters, holes of the whole chain, past a
    // shorter backing file's end; data that happens to be zeros does not count).
    Status rest_reads_zero(uint64_t guest, uint64_t n, bool* zero) {
        const uint64_t c0 = guest & ~(cs_ - 1);
        const uint64_t c1 = h_.size - c0 < cs_ ? h_.size : c0 + cs_;
        const uint64_t bsize = backing_->virtual_size();
        const uint64_t parts[2][2] = {{c0, guest}, {guest + n, c1}};
        *zero = false;
        for (const auto& p : parts) {
            for (uint64_t at = p[0], end = p[1] < bsize ? p[1] : bsize; at < end;) {
                guest::Extent x{};
                if (const Status st = backing_->status(at, end - at, &x); st != Status::Ok)
                    return st;
                if (x.length == 0 || x.length > end - at)
                    return Status::Invalid;
                if (x.allocation != guest::Allocation::Zero)
                    return Status::Ok;
                at += x.length;
            }
        }
        *zero = true;
        return Status::Ok;
    }

    Status zero_piece(uint64_t guest, uint64_t n, bool may_unmap) {
        uint64_t at = 0, e = 0, host = 0;
        if (const Status st = entry(guest, false, &at, &e, &host); st != Status::Ok)
            return st;
        // data_file_raw: the data file is the disk as a raw image, so it reads as zeros there too
        // (qcow2_subcluster_zeroize writes them before changing the entries).
        if (data_raw_ && data_ != nullptr) {
            if (const Status st = zeros(); st != Status::Ok)
                return st;
            if (const Status st = data_->write(guest, zbuf_, static_cast<size_t>(n)); st != Status::Ok)
                return st;
        }
        if (e & QCOW_OFLAG_COMPRESSED) {
            // zero_in_l2_slice: a whole compressed cluster becomes a plain zero cluster (v3),
            // whatever may_unmap says, and its bytes' clusters are freed; a partial one, or any in a
            // v2 image, is copied on write as any partial write.
            if (n == cs_ && h_.version >= 3) {
                if (const Status st = write64(at, QCOW_OFLAG_ZERO); st != Status::Ok)
                    return st;
                return free_compressed(e);
            }
            if (const Status st = zeros(); st != Status::Ok)
                return st;
            return write_piece(guest, zbuf_, n);
        }
        if (e & QCOW_OFLAG_ZERO)
            return Status::Ok; // reads as zeros already
        if (!mapped(e) && backing_ == nullptr)
            return Status::Ok; // unallocated without a backing file: zeros already
        if (!mapped(e)) {
            // Unallocated over a backing file: a zero cluster (v3, whole clusters, or part of one
            // whose rest reads as zeros through the backing file: qcow2_co_pwrite_zeroes' head and
            // tail check), else zeros written over the backing file's data (copy-on-write as any
            // partial write).
            bool whole = n == cs_;
            if (!whole && h_.version >= 3)
                if (const Status st = rest_reads_zero(guest, n, &whole); st != Status::Ok)
                    return st;
            if (whole && h_.version >= 3) {
                if (const Status st = entry(guest, true, &at, &e, &host); st != Status::Ok)
                    return st;
                return write64(at, QCOW_OFLAG_ZERO);
            }
            if (const Status st = zeros(); st != Status::Ok)
                return st;
            return write_piece(guest, zbuf_, n);
        }
        if (n == cs_ && h_.version >= 3 && may_unmap && !data_raw_) {
            // qemu's zero_in_l2_slice with unmap: the entry becomes a plain zero cluster, then the
            // host cluster is freed (a kill in between leaks it) and discarded in the file. (A raw
            // data file keeps every cluster mapped to itself.)
            // A cluster a snapshot shares loses one reference and stays (qemu discards a cluster
            // only when its refcount reaches 0).
            if (const Status st = write64(at, QCOW_OFLAG_ZERO); st != Status::Ok)
                return st;
            return release_unmapped(e, host);
        }
        if (n == cs_ && h_.version >= 3) // qemu keeps the entry's offset and flags (a shared one stays so)
            return write64(at, e | QCOW_OFLAG_ZERO);
        if (shared(e)) { // partial zeros into a shared cluster: copied on write as any partial write
            if (const Status st = zeros(); st != Status::Ok)
                return st;
            return write_piece(guest, zbuf_, n);
        }
        __builtin_memset(buf_, 0, static_cast<size_t>(n));
        return data_write(host + (guest & (cs_ - 1)), guest, buf_, n);
    }

    // ---- extended L2 entries (qcow2_subcluster.h): qemu's subcluster paths ----

    // entry() and, with extended L2 entries, the subcluster bitmap after it (0 without them or
    // without a table). A bitmap with an Invalid subcluster is refused: qemu fails any request
    // that meets one, and the writer does not guess which.
    Status entry_ext(uint64_t guest, bool create, uint64_t* at, uint64_t* e, uint64_t* bm, uint64_t* host) {
        *bm = 0;
        if (const Status st = entry(guest, create, at, e, host); st != Status::Ok)
            return st;
        if (!extl2_ || *at == 0)
            return Status::Ok;
        if (const Status st = l2_read(*at + 8, bm); st != Status::Ok)
            return st;
        const bool compressed = (*e & QCOW_OFLAG_COMPRESSED) != 0;
        if (qcow2_sc_bitmap_invalid(compressed, mapped(*e) && !compressed, *bm)) {
            ReasonText r;
            r.add("Invalid subcluster bitmap ").hex(*bm).add(" (L2 entry at ").hex(*at).add(")");
            return corrupt(r);
        }
        return Status::Ok;
    }
    // Whether every subcluster [in, in + n) of the cluster touches is allocated (always, without
    // extended L2 entries): a write there changes no metadata (calculate_l2_meta's skip_cow).
    bool all_normal(uint64_t bm, uint64_t in, uint64_t n) const {
        if (!extl2_)
            return true;
        const uint64_t r = qcow2_sc_range(in >> scb_, (in + n - 1) >> scb_);
        return (bm & r) == r;
    }
    // One 16-byte extended L2 entry: descriptor and bitmap in one write (the switch a kill sees
    // whole or not at all).
    Status write_entry_ext(uint64_t at, uint64_t e, uint64_t bm) {
        uint8_t b[16];
        store_be64(b, e);
        store_be64(b + 8, bm);
        return l2_write(at, b, 16);
    }

    // The guest's bytes [from, to) of the cluster at guest offset `gc` as they read before a write
    // (perform_cow's source, qemu reading the regions through the image itself): subcluster by
    // subcluster, a compressed cluster's inflated bytes, an allocated subcluster's data
    // (decrypted), zeros, or the backing chain's bytes (zeros past its end or without one).
    Status old_view(uint64_t gc, uint64_t e, uint64_t bm, uint64_t host, uint64_t from, uint64_t to, uint8_t* dst) {
        const bool compressed = (e & QCOW_OFLAG_COMPRESSED) != 0;
        const uint64_t scs = uint64_t{1} << scb_;
        for (uint64_t a = from; a < to;) {
            const uint64_t b = (a | (scs - 1)) + 1 < to ? (a | (scs - 1)) + 1 : to;
            const uint64_t n = b - a;
            switch (qcow2_sc_type(compressed, mapped(e) && !compressed, bm, a >> scb_)) {
            case Qcow2Sc::Compressed: {
                if (compressed_ == nullptr) {
                    compressed_ = guest::arena_new<CompressedCache>(alloc_, dev_, alloc_, codecs_, h_.compression_type,
                                                                    cb_, reasons_);
                    if (compressed_ == nullptr)
                        return Status::NoMemory;
                }
                const uint8_t* inflated = nullptr;
                if (const Status st = compressed_->cluster(e, &inflated); st != Status::Ok)
                    return st;
                __builtin_memcpy(dst + a, inflated + a, static_cast<size_t>(n));
                break;
            }
            case Qcow2Sc::Normal: {
                if (const Status st = (data_ != nullptr ? *data_ : dev_).read(host + a, dst + a, static_cast<size_t>(n));
                    st != Status::Ok)
                    return st;
                if (cipher_ != nullptr) {
                    if (dcipher_ == nullptr)
                        return Status::Invalid; // open sets both up for an image with snapshots
                    dcipher_->decrypt((crypt_physical_ ? host + a : gc + a) / SECTOR, dst + a, static_cast<size_t>(n));
                }
                break;
            }
            case Qcow2Sc::UnallocPlain:
            case Qcow2Sc::UnallocAlloc: {
                __builtin_memset(dst + a, 0, static_cast<size_t>(n));
                const uint64_t bsize = backing_ != nullptr ? backing_->virtual_size() : 0;
                if (gc + a < bsize) {
                    const uint64_t len = bsize - (gc + a) < n ? bsize - (gc + a) : n;
                    if (const Status st = backing_->read(gc + a, dst + a, static_cast<size_t>(len)); st != Status::Ok)
                        return st;
                }
                break;
            }
            case Qcow2Sc::ZeroPlain:
            case Qcow2Sc::ZeroAlloc: __builtin_memset(dst + a, 0, static_cast<size_t>(n)); break;
            default: return Status::Corrupt; // entry_ext refused Invalid bitmaps
            }
            a = b;
        }
        return Status::Ok;
    }

    // A write inside one cluster with extended L2 entries that changes metadata (qemu's
    // handle_copied / handle_alloc with calculate_l2_meta, perform_cow, link_l2): in place into
    // an allocated cluster of this image, its partial unallocated or zero subclusters completed
    // from their old bytes, then the bitmap; else a new cluster holding the request and the copy-
    // on-write regions around it (only those bytes of it are written, as qemu's), its entry and
    // bitmap switched in one write, then the old cluster's references dropped (compressed, or
    // shared with a snapshot).
    Status write_piece_ext(uint64_t guest, const uint8_t* src, uint64_t n) {
        uint64_t at = 0, e = 0, bm = 0, host = 0;
        if (const Status st = entry_ext(guest, true, &at, &e, &bm, &host); st != Status::Ok)
            return st;
        const uint64_t gc = guest & ~(cs_ - 1), in = guest - gc;
        const bool compressed = (e & QCOW_OFLAG_COMPRESSED) != 0;
        if (compressed && data_ != nullptr)
            return Status::Invalid; // entry() refused it
        const bool keep_old = mapped(e) && !compressed && !shared(e);
        Qcow2Cow cow{};
        if (!qcow2_cow_bounds(compressed, mapped(e) && !compressed, bm, in, n, keep_old, scb_, cs_, &cow))
            return Status::Corrupt;
        uint64_t dst = host;
        if (!keep_old)
            if (const Status st = allocate_data(guest, &dst); st != Status::Ok) // (may use buf_: before it is filled)
                return st;
        if (const Status st = old_view(gc, e, bm, host, cow.from, in, buf_); st != Status::Ok)
            return st;
        __builtin_memcpy(buf_ + in, src, static_cast<size_t>(n));
        if (const Status st = old_view(gc, e, bm, host, in + n, cow.to, buf_); st != Status::Ok)
            return st;
        if (const Status st = data_write(dst + cow.from, gc + cow.from, buf_ + cow.from, cow.to - cow.from);
            st != Status::Ok)
            return st;
        const uint64_t nbm = qcow2_sc_written(compressed ? 0 : bm, cow.from >> scb_, (cow.to - 1) >> scb_);
        if (keep_old)
            return nbm == bm ? Status::Ok : write64(at + 8, nbm);
        if (data_ == nullptr && dst + cs_ > file_len_)
            file_len_ = dst + cs_; // (the file itself may end inside it, as qemu's does)
        if (const Status st = write_entry_ext(at, dst | QCOW_OFLAG_COPIED, nbm); st != Status::Ok)
            return st;
        if (compressed)
            return free_compressed(e);
        return shared(e) ? drop_refs(host, 1) : Status::Ok;
    }

    // write_zeroes with extended L2 entries: bdrv_co_do_pwrite_zeroes' split at the subcluster
    // (qcow2's pwrite_zeroes_alignment), qcow2_co_pwrite_zeroes on each piece, and the block
    // layer's fallback to writing zeros where that is -ENOTSUP.
    Status write_zeroes_ext(uint64_t offset, uint64_t len, bool may_unmap) {
        const uint64_t scs = uint64_t{1} << scb_;
        uint64_t head = offset & (scs - 1);
        const uint64_t tail = (offset + len) & (scs - 1);
        while (len > 0) {
            uint64_t num = len;
            if (head != 0) {
                num = len < scs - head ? len : scs - head;
                head = (head + num) & (scs - 1);
            } else if (tail != 0 && num > scs) {
                num -= tail;
            }
            bool notsup = false;
            if (const Status st = pwrite_zeroes_ext(offset, num, may_unmap, &notsup); st != Status::Ok)
                return st;
            if (notsup) {
                if (const Status st = zeros(); st != Status::Ok)
                    return st;
                for (uint64_t done = 0; done < num;) {
                    const uint64_t at = offset + done, piece = cs_ - (at & (cs_ - 1));
                    const uint64_t k = piece < num - done ? piece : num - done;
                    if (const Status st = write(at, zbuf_, static_cast<size_t>(k)); st != Status::Ok)
                        return st;
                    done += k;
                }
            }
            offset += num;
            len -= num;
        }
        return Status::Ok;
    }
    // qcow2_co_pwrite_zeroes: a piece that is not whole subclusters proceeds only when the rest of
    // its subcluster reads as zeros and the subcluster holds no data, as a whole subcluster.
    Status pwrite_zeroes_ext(uint64_t offset, uint64_t bytes, bool may_unmap, bool* notsup) {
        const uint64_t scs = uint64_t{1} << scb_;
        const uint64_t head = offset & (scs - 1);
        uint64_t tail = ((offset + bytes + scs - 1) & ~(scs - 1)) - (offset + bytes);
        if (offset + bytes == h_.size)
            tail = 0;
        if (head != 0 || tail != 0) {
            bool z1 = false, z2 = false;
            if (const Status st = is_zero_ext(offset - head, head, &z1); st != Status::Ok)
                return st;
            if (const Status st = is_zero_ext(offset + bytes, tail, &z2); st != Status::Ok)
                return st;
            offset -= head;
            bytes = scs;
            uint64_t at = 0, e = 0, bm = 0, host = 0;
            if (z1 && z2)
                if (const Status st = entry_ext(offset, false, &at, &e, &bm, &host); st != Status::Ok)
                    return st;
            const Qcow2Sc t = qcow2_sc_type((e & QCOW_OFLAG_COMPRESSED) != 0,
                                            mapped(e) && !(e & QCOW_OFLAG_COMPRESSED), bm,
                                            (offset & (cs_ - 1)) >> scb_);
            if (!z1 || !z2 || (t != Qcow2Sc::UnallocPlain && t != Qcow2Sc::UnallocAlloc && t != Qcow2Sc::ZeroPlain &&
                               t != Qcow2Sc::ZeroAlloc)) {
                *notsup = true;
                return Status::Ok;
            }
        }
        return zeroize_ext(offset, bytes, may_unmap, notsup);
    }
    // bdrv_co_is_zero_fast for a range inside one subcluster: one block-status run says zero (a
    // zero subcluster; an unallocated one without a backing file, past its end, or over a
    // backing range that holds no data).
    Status is_zero_ext(uint64_t offset, uint64_t bytes, bool* zero) {
        *zero = true;
        if (bytes == 0)
            return Status::Ok;
        *zero = false;
        uint64_t at = 0, e = 0, bm = 0, host = 0;
        if (const Status st = entry_ext(offset, false, &at, &e, &bm, &host); st != Status::Ok)
            return st;
        const bool compressed = (e & QCOW_OFLAG_COMPRESSED) != 0;
        switch (qcow2_sc_type(compressed, mapped(e) && !compressed, bm, (offset & (cs_ - 1)) >> scb_)) {
        case Qcow2Sc::ZeroPlain:
        case Qcow2Sc::ZeroAlloc: *zero = true; return Status::Ok;
        case Qcow2Sc::UnallocPlain:
        case Qcow2Sc::UnallocAlloc: break;
        default: return Status::Ok;
        }
        const uint64_t bsize = backing_ != nullptr ? backing_->virtual_size() : 0;
        if (!has_backing_ || offset >= bsize) {
            *zero = true;
            return Status::Ok;
        }
        guest::Extent x{};
        const uint64_t want = bytes < bsize - offset ? bytes : bsize - offset;
        if (const Status st = backing_->status(offset, want, &x); st != Status::Ok)
            return st;
        *zero = x.allocation != guest::Allocation::Data && x.length == bytes;
        return Status::Ok;
    }
    // qcow2_subcluster_zeroize: partial clusters at either end get their subclusters' zero bits
    // (zero_l2_subclusters), whole clusters an all-zero bitmap (zero_in_l2_slice).
    Status zeroize_ext(uint64_t offset, uint64_t bytes, bool may_unmap, bool* notsup) {
        if (data_raw_ && data_ != nullptr) { // the raw data file reads as zeros there too
            if (const Status st = zeros(); st != Status::Ok)
                return st;
            for (uint64_t done = 0; done < bytes;) {
                const uint64_t k = bytes - done < cs_ ? bytes - done : cs_;
                if (const Status st = data_->write(offset + done, zbuf_, static_cast<size_t>(k)); st != Status::Ok)
                    return st;
                done += k;
            }
        }
        const uint64_t scs = uint64_t{1} << scb_;
        uint64_t end = offset + bytes;
        const uint64_t next = (offset + cs_ - 1) & ~(cs_ - 1);
        const uint64_t head = (end < next ? end : next) - offset;
        offset += head;
        const uint64_t tail = end >= h_.size ? 0 : end - (offset > (end & ~(cs_ - 1)) ? offset : end & ~(cs_ - 1));
        end -= tail;
        if (head != 0) {
            if (const Status st = zero_subclusters(offset - head, (head + scs - 1) >> scb_, notsup);
                st != Status::Ok || *notsup)
                return st;
        }
        for (uint64_t c = offset; c < end; c += cs_)
            if (const Status st = zero_cluster_ext(c, may_unmap); st != Status::Ok)
                return st;
        if (tail != 0)
            return zero_subclusters(end, (tail + scs - 1) >> scb_, notsup);
        return Status::Ok;
    }
    // zero_l2_subclusters: `count` subclusters from `offset` read as zeros (their data, if any,
    // stays in the cluster); a compressed cluster cannot be partly zeroed (-ENOTSUP).
    Status zero_subclusters(uint64_t offset, uint64_t count, bool* notsup) {
        uint64_t at = 0, e = 0, bm = 0, host = 0;
        if (const Status st = entry_ext(offset, true, &at, &e, &bm, &host); st != Status::Ok)
            return st;
        if (e & QCOW_OFLAG_COMPRESSED) {
            *notsup = true;
            return Status::Ok;
        }
        const uint64_t sc = (offset & (cs_ - 1)) >> scb_;
        const uint64_t nbm = qcow2_sc_zeroed(bm, sc, sc + count - 1);
        return nbm == bm ? Status::Ok : write64(at + 8, nbm);
    }
    // zero_in_l2_slice for one cluster: an all-zero bitmap; with may_unmap an allocated cluster
    // (and always a compressed one) is unmapped, its entry cleared first and then its references
    // dropped (a kill in between leaks it); a raw data file keeps every cluster mapped to itself.
    Status zero_cluster_ext(uint64_t c, bool may_unmap) {
        uint64_t at = 0, e = 0, bm = 0, host = 0;
        if (const Status st = entry_ext(c, true, &at, &e, &bm, &host); st != Status::Ok)
            return st;
        const bool compressed = (e & QCOW_OFLAG_COMPRESSED) != 0;
        const bool unmap = compressed || (may_unmap && mapped(e) && !data_raw_);
        const uint64_t ne = unmap ? 0 : e;
        if (ne == e && bm == QCOW2_L2_BITMAP_ALL_ZEROES)
            return Status::Ok;
        if (const Status st = write_entry_ext(at, ne, QCOW2_L2_BITMAP_ALL_ZEROES); st != Status::Ok)
            return st;
        if (!unmap)
            return Status::Ok;
        return compressed ? free_compressed(e) : release_unmapped(e, host);
    }

    // The allocated cluster at `host` that entry `e` named and no longer does (zero_in_l2_slice with
    // unmap, after the entry was written): a cluster a snapshot shares loses one reference and
    // stays; any other gets refcount 0 (a data file's clusters have none) and is discarded.
    Status release_unmapped(uint64_t e, uint64_t host) {
        if (shared(e))
            return drop_refs(host, 1);
        if (data_ == nullptr)
            if (const Status st = set_refcount(host, 0, 0); st != Status::Ok)
                return st;
        const Status st = (data_ != nullptr ? *data_ : dev_).discard(host, cs_);
        return st == Status::Unsupported ? Status::Ok : st;
    }

    DeferredMeta meta_;      // the image's device, appended runs' metadata waiting (qcow2_deferred_meta.h)
    guest::BlockDevice& dev_; // meta_: every request through it keeps the writer's order
    guest::Allocator& alloc_;
    guest::ReasonSink* reasons_;
    const guest::Codecs* codecs_;
    Qcow2Header h_;
    uint64_t cs_;
    uint32_t cb_;
    bool extl2_;   // extended L2 entries: 16 bytes each, a subcluster bitmap after the descriptor
    uint64_t ew_;  // bytes per L2 entry
    uint32_t scb_; // subcluster bits (the cluster's without extended L2 entries)
    uint64_t l2_entries_;
    uint8_t* buf_;            // one cluster
    uint8_t* cbuf_ = nullptr; // -c: compressed output, one cluster
    uint8_t* zbuf_ = nullptr; // zeros, one cluster (zeroing over a backing file)
    uint8_t* ebuf_ = nullptr; // a run of new L2 entries, one cluster
    uint64_t* obuf_ = nullptr; // the entries that run replaces (append_clusters), one cluster
    uint64_t drop_host_ = 0;   // references gathered to drop from one host cluster (queue_drop)
    uint64_t drop_n_ = 0;
    CompressedCache* compressed_ = nullptr; // inflates compressed clusters a partial write replaces
    uint8_t* xbuf_ = nullptr; // encrypted images: the encryption bounce buffer (ENCRYPT_CHUNK)
    luks::SectorCipher* cipher_ = nullptr;
    luks::SectorCipher* dcipher_ = nullptr; // images with snapshots: decrypts a shared cluster's sectors
    bool crypt_physical_ = false;
    SnapshotRanges snapshots_; // internal snapshots' table and L1 tables (load_snapshot_metadata)
    BitmapRanges bitmaps_;     // persistent bitmaps' directory, tables and data (load_bitmap_metadata)
    BitmapDirty dirty_;        // the enabled bitmaps writes are recorded in
    uint64_t mirror_chunk_ = 0; // commit: bits recorded in whole chunks of this size (0: exact)
    guest::BlockDevice* data_ = nullptr; // the external data file, or nullptr
    bool data_raw_ = false;
    uint8_t* l2c_ = nullptr;  // the last L2 table read, one cluster, kept equal to the file's
    uint64_t l2c_off_ = UINT64_MAX;
    bool has_backing_;
    guest::ImageReader* backing_ = nullptr;
    uint64_t file_len_ = 0;
    uint64_t orig_len_ = 0; // the file's length when opened (cluster_in_original)
    Qcow2IndexSet l1_vetted_; // L1 entries whose table vet_l2 checked or this run made
    Qcow2IndexSet rb_ours_;   // refcount-table entries whose block this run appended
    uint64_t next_ = 0; // where the next appended cluster goes
    uint32_t refcount_bits_ = 16;
    uint64_t rb_entries_ = 0;
    uint64_t rt_entries_ = 0;
    uint64_t l1_index_ = UINT64_MAX; // the last L1 entry looked up, and its L2 table
    uint64_t l2_offset_ = 0;
};

Status refuse_open(guest::ReasonSink* reasons, const char* what) {
    ReasonText r;
    r.add("instar cannot write into an existing qcow2 image with ").add(what).add(" yet");
    r.send(reasons);
    return Status::Unsupported;
}

Status refuse_open_text(guest::ReasonSink* reasons, const char* text) {
    ReasonText r;
    r.add(text).send(reasons);
    return Status::Unsupported;
}

} // namespace

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    guest::BlockDevice& dev = *req.image;
    Qcow2HeaderDisk disk{};
    const uint64_t file = dev.size();
    const size_t have = file < sizeof disk ? static_cast<size_t>(file) : sizeof disk;
    if (have > 0 && dev.read(0, &disk, have) != Status::Ok)
        return Status::IoError;
    Qcow2Header h;
    HeaderProblem why;
    if (const Status st = qcow2_header_parse(disk, &h, &why); st != Status::Ok) {
        if (req.reasons != nullptr && why.len > 0)
            req.reasons->reason(why.text, why.len);
        return st;
    }
    // A backing file: the writer needs it for copy-on-write (ImageWriter::set_backing, commit into
    // a base that has one); without it, the first write is refused.
    if (h.crypt_method != 0 && req.secret == nullptr) // what qemu-img says when no secret is given
        return refuse_open_text(req.reasons, "Parameter 'encrypt.key-secret' is required for cipher");
    // An external data file: the host opened it through the path policy (OpenRequest::files).
    guest::BlockDevice* data = nullptr;
    if (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
        if (req.files == nullptr || req.file_count < 1 || req.files[0] == nullptr)
            return Status::Invalid;
        data = req.files[0];
    }
    if (data != nullptr && h.nb_snapshots != 0) // qemu never makes snapshots of such an image
        return refuse_open(req.reasons, "internal snapshots and an external data file");
    // qcow2_open's own refusal (Corrupt: the callers word it as qemu's failed open); a dirty image is
    // repaired by the host's commands before they get here (docs/amend.md, "Dirty images").
    if (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
        refuse_open_text(req.reasons, "qcow2: Image is corrupt; cannot be opened read/write");
        return Status::Corrupt;
    }
    if (h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return refuse_open(req.reasons, "the dirty bit set");
    const uint64_t cs = h.cluster_size();
    auto in_file = [&](uint64_t offset, uint64_t bytes) { return qcow2_placed_in_file(offset, bytes, cs, file); };
    ReasonText r;
    if (!qcow2_table_offset_valid(h, h.l1_table_offset, h.l1_size, 8) ||
        !in_file(h.l1_table_offset, uint64_t{h.l1_size} * 8)) {
        r.add("L1 table offset ").hex(h.l1_table_offset).add(" invalid or past the end of the image file");
        r.send(req.reasons);
        return Status::Corrupt;
    }
    if (h.refcount_table_clusters == 0 ||
        !qcow2_table_offset_valid(h, h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs / 8, 8) ||
        !in_file(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs)) {
        r.add("Refcount table offset ").hex(h.refcount_table_offset).add(" invalid or past the end of the image file");
        r.send(req.reasons);
        return Status::Corrupt;
    }
    // The L1 table must map the whole virtual disk (qemu checks the same at open).
    const uint64_t span = cs * (cs / ((h.incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 16 : 8));
    if (h.size > 0 && (h.size - 1) / span >= h.l1_size) {
        r.add("L1 table is too small");
        r.send(req.reasons);
        return Status::Corrupt;
    }
    auto* buf = static_cast<uint8_t*>(req.allocator->allocate(static_cast<size_t>(cs), 64));
    if (buf == nullptr)
        return Status::NoMemory;
    luks::SectorCipher* cipher = nullptr;
    luks::SectorCipher* dcipher = nullptr;
    bool physical = false;
    if (h.crypt_method != 0) {
        if (const Status st = qcow2_unlock(*req.image, h, *req.allocator, req.secret, req.secret_len, req.reasons,
                                           req.qemu_version, &cipher, h.nb_snapshots != 0 ? &dcipher : nullptr,
                                           &physical);
            st != Status::Ok) {
            req.allocator->deallocate(buf, static_cast<size_t>(cs));
            return st;
        }
    }
    ExistingWriter* w = guest::arena_new<ExistingWriter>(*req.allocator, dev, *req.allocator, req.reasons, req.codecs, h, buf);
    if (w == nullptr) {
        req.allocator->deallocate(buf, static_cast<size_t>(cs));
        luks::delete_wiped(*req.allocator, cipher);
        luks::delete_wiped(*req.allocator, dcipher);
        return Status::NoMemory;
    }
    w->set_cipher(cipher, dcipher, physical);
    w->set_data_file(data, (h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0);
    if (req.mirror_chunks)
        w->set_mirror_chunks();
    Status st = w->init_vetting();
    if (st == Status::Ok)
        st = w->load_snapshot_metadata();
    if (st == Status::Ok)
        st = w->load_bitmap_metadata();
    if (st != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

} // namespace instar::qcow2
