// The VMDK writer (vmdk_write.h): qemu's vmdk_pwritev, vmdk_write_extent and vmdk_co_pwrite_zeroes
// over the extents create() just made.
#include "vmdk_write.h"

#include "vmdk_bytes.h"
#include "vmdk_create.h"
#include "vmdk_create_descriptor.h"
#include "vmdk_create_extent.h"
#include "vmdk_write_cid.h"
#include "vmdk_write_tables.h"

#include <instar/guest/arena_new.h>
#include <instar/guest_abi.h>

namespace instar::vmdk {

using guest::BlockDevice;
using guest::Status;

namespace {

constexpr uint64_t GRAIN = VMDK_CREATE_GRAIN_SECTORS * 512;
// The compressed grain buffer: qemu's (cluster_sectors << 9) * 2 behind the marker.
constexpr size_t DEFLATE_CAP = 2 * GRAIN;
// Grains partly written over a backing file, tracked until the rest of each is written: in-order
// convert finishes a grain before it moves on, so a few are enough.
constexpr size_t OPEN_GRAINS = 16;
constexpr uint64_t GRAIN_SECTORS = VMDK_CREATE_GRAIN_SECTORS;
// Grains handed to the host's cores in one batch (streamOptimized): 32 keep every core busy and
// cost the guest 32 * (64 KiB + 128 KiB) of buffers.
constexpr uint32_t VMDK_COMPRESS_BATCH = 32;
static_assert(GRAIN_SECTORS == 128, "a grain's sectors are two 64-bit masks");

// A new grain qemu would have filled from the backing file around the first write into it
// (get_whole_cluster). The writer has only the backing's header, so it writes zeros there and
// vouches for the grain once the writes have covered every sector the backing would have
// supplied; convert of a fully allocated source (raw) writes every byte, data or zeros.
struct OpenGrain {
    bool used;
    uint64_t start;      // virtual offset of the grain
    uint64_t covered[2]; // one bit per sector
};

// One extent file as qemu's VmdkExtent tracks it while writing.
struct ExtentState {
    BlockDevice* dev;
    uint64_t next_sector; // qemu's next_cluster_sector: where the next grain goes
    uint64_t data_end;    // bytes this writer has put in the file reach here
    uint64_t file_bytes;  // the file's length after qemu's writes (a grain's zero fill included)
};

// Forwards to the host's target, remembering the extent files create adds, in order.
class RecordingTarget final : public guest::CreateTarget {
public:
    RecordingTarget(guest::CreateTarget& inner, ExtentState* extents, uint64_t cap)
        : inner_(inner), extents_(extents), cap_(cap) {}
    BlockDevice& image() override { return inner_.image(); }
    Status set_length(BlockDevice& file, uint64_t length, guest::Prealloc mode) override {
        return inner_.set_length(file, length, mode);
    }
    Status add_file(const char* name, BlockDevice** out) override {
        const Status st = inner_.add_file(name, out);
        if (st == Status::Ok && count_ < cap_)
            extents_[count_++].dev = *out;
        return st;
    }
    void reason(const char* text, size_t len) override { inner_.reason(text, len); }
    void resolved_unit_size(uint64_t bytes) override { inner_.resolved_unit_size(bytes); }
    uint64_t count() const { return count_; }

private:
    guest::CreateTarget& inner_;
    ExtentState* extents_;
    uint64_t cap_;
    uint64_t count_ = 0;
};

uint64_t round_up_sector(uint64_t bytes) { return (bytes + 511) / 512 * 512; }
uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

class VmdkWriter final : public guest::ImageWriter {
public:
    VmdkWriter(guest::Allocator& alloc, const CreatedImage& made, ExtentState* extents, uint64_t count,
               BlockDevice* desc_dev, const guest::Codecs* codecs, uint32_t new_cid, bool backing,
               uint64_t backing_size)
        : alloc_(alloc), s_(made.settings), plan_(made.settings), extents_(extents), count_(count), codecs_(codecs),
          new_cid_(new_cid), backing_(backing), backing_size_(backing_size), desc_dev_(desc_dev),
          desc_bytes_(made.descriptor_bytes) {}

    Status init() {
        if (!tables_.init(alloc_))
            return Status::NoMemory;
        zeros_ = static_cast<uint8_t*>(alloc_.allocate(GRAIN, 8));
        if (zeros_ == nullptr)
            return Status::NoMemory;
        __builtin_memset(zeros_, 0, GRAIN);
        if (s_.compress) {
            deflated_ = static_cast<uint8_t*>(alloc_.allocate(VMDK_GRAIN_MARKER_BYTES + DEFLATE_CAP, 8));
            pending_ = static_cast<uint8_t*>(alloc_.allocate(GRAIN, 8));
            if (deflated_ == nullptr || pending_ == nullptr)
                return Status::NoMemory;
        }
        return Status::Ok;
    }

    uint64_t cluster_size() const override { return s_.flat ? 0 : GRAIN; }
    // -B: the target's backing chain, for get_whole_cluster's copy of a new grain's rest.
    void set_backing(guest::ImageReader* backing) override { backing_reader_ = backing; }
    // vmdk_has_zero_init: sparse extents read as zeros, and so do the new sparse flat files.
    bool zero_init() const override { return true; }
    // vmdk_get_info: a streamOptimized extent takes only compressed grains.
    bool needs_compressed_writes() const override { return s_.compress; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (!in_range(offset, len))
            return Status::Invalid;
        const auto* src = static_cast<const uint8_t*>(buf);
        Status st = flush_batch();
        if (st == Status::Ok)
            st = s_.compress ? stream_write(offset, src, len) : data_write(offset, src, len);
        return finish_request(st, len);
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (!in_range(offset, len))
            return Status::Invalid;
        Status st = flush_batch();
        if (st == Status::Ok)
            st = zero_write(offset, len);
        return finish_request(st, len);
    }

    // qemu's vmdk_co_pwritev_compressed is its plain write: streamOptimized compresses every grain
    // anyway and the other subformats store -c data uncompressed. What -c adds is the end: each
    // extent file is rounded up to a sector (finish).
    Status write_compressed(uint64_t offset, const void* buf, size_t len) override {
        if (!in_range(offset, len))
            return Status::Invalid;
        compressed_mode_ = true;
        const auto* src = static_cast<const uint8_t*>(buf);
        Status st = Status::Ok;
        if (s_.compress) {
            if (has_pending_) {
                st = flush_batch(); // the queued grains come before the gathered one
                if (st == Status::Ok)
                    st = emit_pending();
            }
            const bool batch = codecs_ != nullptr && codecs_->compress_batch != nullptr && !backing_;
            for (uint64_t done = 0; st == Status::Ok && done < len;) {
                const Piece p = piece_at(offset + done, len - done);
                st = batch ? queue_grain(p, src + done) : compressed_grain(p, src + done);
                done += p.n;
            }
        } else {
            st = data_write(offset, src, len);
        }
        return finish_request(st, len);
    }

    Status finish() override {
        Status st = flush_batch();
        if (st == Status::Ok)
            st = emit_pending();
        if (st == Status::Ok)
            st = flush_run();
        if (st == Status::Ok)
            st = tables_.flush();
        for (const OpenGrain& g : open_)
            if (st == Status::Ok && g.used)
                st = Status::Unsupported; // part of a grain would be the backing file's data
        // qemu-img signals the end of a compressed convert (streamOptimized always is one) with an
        // empty compressed write, which rounds every extent file up to a sector.
        const bool align = s_.compress || compressed_mode_;
        for (uint64_t i = 0; st == Status::Ok && !s_.flat && i < count_; ++i) {
            ExtentState& e = extents_[i];
            const uint64_t end = align ? round_up_sector(e.file_bytes) : e.file_bytes;
            st = write_zeros_at(*e.dev, e.data_end, end > e.data_end ? end - e.data_end : 0);
            e.data_end = e.file_bytes = max_u64(e.data_end, end);
        }
        return st;
    }

    void close() override {
        tables_.release(alloc_);
        if (zeros_ != nullptr)
            alloc_.deallocate(zeros_, GRAIN);
        if (deflated_ != nullptr)
            alloc_.deallocate(deflated_, VMDK_GRAIN_MARKER_BYTES + DEFLATE_CAP);
        if (pending_ != nullptr)
            alloc_.deallocate(pending_, GRAIN);
        if (bin_ != nullptr)
            alloc_.deallocate(bin_, static_cast<size_t>(GRAIN * VMDK_COMPRESS_BATCH));
        if (bout_ != nullptr)
            alloc_.deallocate(bout_, static_cast<size_t>(DEFLATE_CAP * VMDK_COMPRESS_BATCH));
        if (jobs_ != nullptr)
            alloc_.deallocate(jobs_, sizeof(guest::CompressJob) * VMDK_COMPRESS_BATCH);
        if (bpieces_ != nullptr)
            alloc_.deallocate(bpieces_, sizeof(Piece) * VMDK_COMPRESS_BATCH);
        if (cow_ != nullptr)
            alloc_.deallocate(cow_, GRAIN);
        if (extents_ != nullptr)
            alloc_.deallocate(extents_, (count_ == 0 ? 1 : count_) * sizeof(ExtentState));
        guest::Allocator& a = alloc_;
        guest::arena_delete(a, this);
    }

private:
    // One piece of a request inside one extent and, for sparse extents, one grain.
    struct Piece {
        uint64_t extent;
        uint64_t rel;    // offset inside the extent
        uint64_t bytes;  // the extent's size
        uint64_t n;      // bytes of the request in this piece
        uint64_t virt;   // the piece's virtual offset
    };

    bool in_range(uint64_t offset, uint64_t len) const { return offset <= s_.size && len <= s_.size - offset; }

    Piece piece_at(uint64_t offset, uint64_t left) const {
        Piece p{};
        p.virt = offset;
        if (s_.split) {
            p.extent = offset / static_cast<uint64_t>(VMDK_SPLIT_BYTES);
            p.rel = offset % static_cast<uint64_t>(VMDK_SPLIT_BYTES);
            p.bytes = static_cast<uint64_t>(plan_.size_of(p.extent));
        } else {
            p.rel = offset;
            p.bytes = s_.size;
        }
        uint64_t n = p.bytes - p.rel;
        if (!s_.flat && GRAIN - p.rel % GRAIN < n)
            n = GRAIN - p.rel % GRAIN;
        p.n = left < n ? left : n;
        return p;
    }

    // The table holding grain `grain` of a sparse extent of `bytes`, where create put it.
    Status table_of(const Piece& p, uint64_t grain, TableRef* ref, uint32_t* index) const {
        const SparseLayout l = sparse_layout(p.bytes, s_.compress, s_.zeroed_grain);
        const uint64_t table = grain / VMDK_WRITE_GTES;
        if (table >= l.gt_count)
            return Status::Invalid; // qemu: l1_index >= l1_size is VMDK_ERROR
        const uint64_t tables = static_cast<uint64_t>(l.gd_sectors) + table * l.gt_sectors;
        *ref = TableRef{extents_[p.extent].dev, p.extent, table, (l.header.gd_offset + tables) * 512,
                        (l.header.rgd_offset + tables) * 512};
        *index = static_cast<uint32_t>(grain % VMDK_WRITE_GTES);
        return Status::Ok;
    }

    // The CID rewrite rides on the first request that stored something, as in vmdk_pwritev.
    Status finish_request(Status st, uint64_t len) {
        if (st == Status::Ok)
            st = flush_run();
        if (st == Status::Ok && len > 0 && !cid_updated_) {
            st = update_cid();
            cid_updated_ = st == Status::Ok;
        }
        return st;
    }

    Status update_cid() {
        Buffer buf(alloc_, 2 * VMDK_DESC_WINDOW);
        if (buf.p == nullptr)
            return Status::NoMemory;
        const bool embedded = !s_.split && !s_.flat;
        BlockDevice& dev = embedded ? *extents_[0].dev : *desc_dev_;
        const uint64_t at = embedded ? VMDK_EMBEDDED_DESC_OFFSET : 0;
        const uint64_t file_bytes = embedded ? extents_[0].file_bytes : desc_bytes_;
        __builtin_memset(buf.p, 0, VMDK_DESC_WINDOW);
        const uint64_t have = file_bytes > at ? file_bytes - at : 0;
        const size_t n = have < VMDK_DESC_WINDOW ? static_cast<size_t>(have) : VMDK_DESC_WINDOW;
        Status st = dev.read(at, buf.p, n);
        if (st != Status::Ok)
            return st;
        if (!rewrite_cid(buf.p, buf.p + VMDK_DESC_WINDOW, new_cid_))
            return Status::Invalid;
        return dev.write(at, buf.p, cid_write_bytes(at, file_bytes));
    }

    // ---- Flat extents and uncompressed grains: data goes out in runs as long as they stay contiguous.

    Status queue(BlockDevice& dev, uint64_t at, const uint8_t* src, uint64_t n) {
        if (run_len_ > 0 && run_dev_ == &dev && run_at_ + run_len_ == at && run_src_ + run_len_ == src) {
            run_len_ += n;
            return Status::Ok;
        }
        if (const Status st = flush_run(); st != Status::Ok)
            return st;
        run_dev_ = &dev;
        run_at_ = at;
        run_src_ = src;
        run_len_ = n;
        return Status::Ok;
    }

    Status flush_run() {
        if (run_len_ == 0)
            return Status::Ok;
        const uint64_t n = run_len_;
        run_len_ = 0;
        return run_dev_->write(run_at_, run_src_, static_cast<size_t>(n));
    }

    Status write_zeros_at(BlockDevice& dev, uint64_t at, uint64_t n) {
        while (n > 0) {
            const uint64_t k = n < GRAIN ? n : GRAIN;
            if (const Status st = dev.write(at, zeros_, static_cast<size_t>(k)); st != Status::Ok)
                return st;
            at += k;
            n -= k;
        }
        return Status::Ok;
    }

    // `src` nullptr: zeros (qemu's write_zeroes falling back to a write).
    Status data_write(uint64_t offset, const uint8_t* src, uint64_t len) {
        for (uint64_t done = 0; done < len;) {
            const Piece p = piece_at(offset + done, len - done);
            const uint8_t* from = src == nullptr ? nullptr : src + done;
            Status st = s_.flat ? flat_piece(p, from) : grain_piece(p, from);
            if (st != Status::Ok)
                return st;
            done += p.n;
        }
        return Status::Ok;
    }

    Status flat_piece(const Piece& p, const uint8_t* src) {
        BlockDevice& dev = *extents_[p.extent].dev;
        if (src == nullptr) {
            if (const Status st = flush_run(); st != Status::Ok)
                return st;
            return write_zeros_at(dev, p.rel, p.n);
        }
        return queue(dev, p.rel, src, p.n);
    }

    // get_cluster_offset with allocation, then vmdk_write_extent, for one uncompressed grain.
    Status grain_piece(const Piece& p, const uint8_t* src) {
        ExtentState& e = extents_[p.extent];
        TableRef ref{};
        uint32_t index = 0;
        uint32_t gte = 0;
        Status st = table_of(p, p.rel / GRAIN, &ref, &index);
        if (st == Status::Ok)
            st = tables_.get(ref, index, &gte);
        if (st != Status::Ok)
            return st;
        const uint64_t in_grain = p.rel % GRAIN;
        const bool zeroed = s_.zeroed_grain && gte == VMDK_GTE_ZEROED;
        uint64_t grain_at = static_cast<uint64_t>(gte) * 512;
        if (gte == 0 || zeroed) {
            const bool cow = backing_ && !zeroed && (in_grain != 0 || p.n != GRAIN);
            if (cow && backing_reader_ == nullptr && (st = open_grain(p, p.virt - in_grain)) != Status::Ok)
                return st;
            if (e.next_sector >= VMDK_WRITE_MAX_SECTOR)
                return Status::Invalid;
            grain_at = e.next_sector * 512;
            e.next_sector += VMDK_CREATE_GRAIN_SECTORS;
            // get_whole_cluster: the backing's bytes (or zeros) around the request's part of the grain.
            if ((st = flush_run()) != Status::Ok)
                return st;
            if (cow && backing_reader_ != nullptr) {
                const uint64_t from = p.rel - in_grain; // qemu reads the backing at the extent-relative offset
                const uint64_t tail = in_grain + p.n;
                if ((st = copy_backing(*e.dev, grain_at, from, in_grain)) != Status::Ok ||
                    (st = copy_backing(*e.dev, grain_at + tail, from + tail, GRAIN - tail)) != Status::Ok)
                    return st;
            } else if ((st = write_zeros_at(*e.dev, grain_at, in_grain)) != Status::Ok ||
                       (st = write_zeros_at(*e.dev, grain_at + in_grain + p.n, GRAIN - in_grain - p.n)) != Status::Ok) {
                return st;
            }
            if ((st = tables_.set(ref, index, static_cast<uint32_t>(grain_at / 512))) != Status::Ok)
                return st;
            e.file_bytes = max_u64(e.file_bytes, grain_at + GRAIN);
            e.data_end = max_u64(e.data_end, grain_at + GRAIN);
        }
        cover(p.virt, p.n);
        const uint64_t at = grain_at + in_grain;
        e.next_sector = max_u64(e.next_sector, (at + p.n + 511) / 512);
        e.file_bytes = max_u64(e.file_bytes, at + p.n);
        e.data_end = max_u64(e.data_end, at + p.n);
        if (src == nullptr) {
            if ((st = flush_run()) != Status::Ok)
                return st;
            return write_zeros_at(*e.dev, at, p.n);
        }
        return queue(*e.dev, at, src, p.n);
    }

    // Starts tracking a new grain over the backing file. Sectors past the disk's end count as
    // covered when the backing file ends before them too (qemu reads zeros there).
    Status open_grain(const Piece& p, uint64_t start) {
        for (OpenGrain& g : open_) {
            if (g.used)
                continue;
            g = OpenGrain{true, start, {0, 0}};
            const uint64_t in_disk = p.bytes - (p.rel - p.rel % GRAIN); // bytes of the extent from the grain on
            if (in_disk < GRAIN && backing_size_ != 0 && backing_size_ <= start + in_disk)
                for (uint64_t sec = in_disk / 512; sec < GRAIN_SECTORS; ++sec)
                    g.covered[sec / 64] |= 1ull << (sec % 64);
            return Status::Ok;
        }
        return Status::Unsupported; // more half-written grains than the writer can vouch for
    }

    void cover(uint64_t virt, uint64_t n) {
        if (!backing_)
            return;
        for (OpenGrain& g : open_) {
            if (!g.used || virt + n <= g.start || virt >= g.start + GRAIN)
                continue;
            const uint64_t from = (virt > g.start ? virt - g.start : 0) / 512;
            const uint64_t end = virt + n - g.start;
            const uint64_t to = ((end < GRAIN ? end : GRAIN) + 511) / 512;
            for (uint64_t sec = from; sec < to; ++sec)
                g.covered[sec / 64] |= 1ull << (sec % 64);
            if (g.covered[0] == ~0ull && g.covered[1] == ~0ull)
                g.used = false;
        }
    }

    // Writes the backing chain's bytes [from, from + n) at `at` of `dev`, zeros past its end (qemu's
    // block layer reads zeros there).
    Status copy_backing(BlockDevice& dev, uint64_t at, uint64_t from, uint64_t n) {
        if (n == 0)
            return Status::Ok;
        if (cow_ == nullptr && (cow_ = static_cast<uint8_t*>(alloc_.allocate(GRAIN, 8))) == nullptr)
            return Status::NoMemory;
        const uint64_t size = backing_reader_->virtual_size();
        const uint64_t have = from >= size ? 0 : (size - from < n ? size - from : n);
        __builtin_memset(cow_ + have, 0, static_cast<size_t>(n - have));
        if (have > 0) {
            if (const Status st = backing_reader_->read(from, cow_, static_cast<size_t>(have)); st != Status::Ok)
                return st;
        }
        return dev.write(at, cow_, static_cast<size_t>(n));
    }

    // ---- streamOptimized: every grain deflated behind a grain marker.

    // One whole grain (or the disk's last, shorter one): qemu's vmdk_pwritev on a compressed extent.
    // Batched compression: whole grains from write_compressed wait (inputs copied) until the batch
    // is full or another request comes, then go to the host's cores at once and are placed in order.
    Status queue_grain(const Piece& p, const uint8_t* src) {
        if (bin_ == nullptr) {
            bin_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(GRAIN * VMDK_COMPRESS_BATCH), 64));
            bout_ = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(DEFLATE_CAP * VMDK_COMPRESS_BATCH), 64));
            jobs_ = static_cast<guest::CompressJob*>(
                alloc_.allocate(sizeof(guest::CompressJob) * VMDK_COMPRESS_BATCH, alignof(guest::CompressJob)));
            bpieces_ = static_cast<Piece*>(alloc_.allocate(sizeof(Piece) * VMDK_COMPRESS_BATCH, alignof(Piece)));
            if (bin_ == nullptr || bout_ == nullptr || jobs_ == nullptr || bpieces_ == nullptr)
                return Status::NoMemory;
        }
        if (p.n > GRAIN || p.rel % GRAIN != 0 || (p.n != GRAIN && p.rel + p.n != p.bytes))
            return Status::Invalid; // vmdk_write_extent: only whole clusters (checked before queueing)
        __builtin_memcpy(bin_ + batch_n_ * GRAIN, src, static_cast<size_t>(p.n));
        bpieces_[batch_n_] = p;
        if (++batch_n_ == VMDK_COMPRESS_BATCH)
            return flush_batch();
        return Status::Ok;
    }

    Status flush_batch() {
        if (batch_n_ == 0)
            return Status::Ok;
        const uint32_t n = batch_n_;
        batch_n_ = 0;
        for (uint32_t i = 0; i < n; ++i)
            jobs_[i] = guest::CompressJob{bin_ + i * GRAIN, static_cast<size_t>(bpieces_[i].n), bout_ + i * DEFLATE_CAP,
                                          DEFLATE_CAP, 0, Status::Ok};
        if (const Status st = codecs_->compress_batch(guest::CompressKind::Zlib, jobs_, n); st != Status::Ok)
            return st;
        for (uint32_t i = 0; i < n; ++i) {
            if (jobs_[i].status != Status::Ok || jobs_[i].out_len == 0 || jobs_[i].out_len > DEFLATE_CAP)
                return Status::Invalid;
            const Status st = compressed_grain(bpieces_[i], bin_ + i * GRAIN, bout_ + i * DEFLATE_CAP, jobs_[i].out_len);
            if (st != Status::Ok)
                return st;
        }
        return Status::Ok;
    }

    // `packed_data` (packed_len bytes): the grain already deflated (flush_batch); nullptr: deflate here.
    Status compressed_grain(const Piece& p, const uint8_t* src, const uint8_t* packed_data = nullptr,
                            size_t packed_len = 0) {
        if (p.rel % GRAIN != 0 || (p.n != GRAIN && p.rel + p.n != p.bytes))
            return Status::Invalid; // vmdk_write_extent: only whole clusters
        ExtentState& e = extents_[p.extent];
        TableRef ref{};
        uint32_t index = 0;
        uint32_t gte = 0;
        Status st = table_of(p, p.rel / GRAIN, &ref, &index);
        if (st == Status::Ok)
            st = tables_.get(ref, index, &gte);
        if (st != Status::Ok)
            return st;
        if (gte != 0 && !(s_.zeroed_grain && gte == VMDK_GTE_ZEROED))
            return Status::IoError; // "Could not write to allocated cluster for streamOptimized"
        if (e.next_sector >= VMDK_WRITE_MAX_SECTOR)
            return Status::Invalid;
        // qemu fills the new grain from the backing file first (get_whole_cluster), and the bytes
        // after the compressed data keep what it read there.
        const bool cow = backing_ && !(s_.zeroed_grain && gte == VMDK_GTE_ZEROED);
        if ((cow && backing_reader_ == nullptr) || codecs_ == nullptr || codecs_->deflate_mem == nullptr)
            return Status::Unsupported;
        size_t packed = 0;
        if (packed_data != nullptr) {
            __builtin_memcpy(deflated_ + VMDK_GRAIN_MARKER_BYTES, packed_data, packed_len);
            packed = packed_len;
        } else {
            st = codecs_->deflate_mem(src == nullptr ? zeros_ : src, static_cast<size_t>(p.n),
                                      deflated_ + VMDK_GRAIN_MARKER_BYTES, DEFLATE_CAP, &packed, VMDK_DEFLATE_WINDOW,
                                      VMDK_DEFLATE_LEVEL, VMDK_DEFLATE_MEM_LEVEL);
        }
        if (st != Status::Ok || packed == 0)
            return Status::Invalid;
        const uint64_t lba = p.virt / 512;
        for (int i = 0; i < 8; ++i)
            deflated_[i] = static_cast<uint8_t>(lba >> (8 * i));
        for (int i = 0; i < 4; ++i)
            deflated_[8 + i] = static_cast<uint8_t>(static_cast<uint64_t>(packed) >> (8 * i));
        const uint64_t at = e.next_sector * 512;
        const uint64_t n = VMDK_GRAIN_MARKER_BYTES + packed;
        if (cow) {
            if ((st = copy_backing(*e.dev, at, p.rel, GRAIN)) != Status::Ok)
                return st;
            e.data_end = max_u64(e.data_end, at + GRAIN);
        }
        if ((st = e.dev->write(at, deflated_, static_cast<size_t>(n))) != Status::Ok)
            return st;
        if ((st = tables_.set(ref, index, static_cast<uint32_t>(e.next_sector))) != Status::Ok)
            return st;
        // get_whole_cluster zero-filled the grain first, so the file reaches at least its end;
        // the next grain starts at the sector after the compressed data.
        e.file_bytes = max_u64(e.file_bytes, max_u64(at + GRAIN, at + n));
        e.data_end = max_u64(e.data_end, at + n);
        e.next_sector = (at + n + 511) / 512;
        return Status::Ok;
    }

    // Plain writes to a streamOptimized image: whole grains go out at once; pieces of one gather
    // until the writes move on, so a caller that splits grains at zero runs gets what qemu-img's
    // compressed convert (one whole grain per write, all-zero grains skipped) makes.
    Status stream_write(uint64_t offset, const uint8_t* src, uint64_t len) {
        for (uint64_t done = 0; done < len;) {
            const Piece p = piece_at(offset + done, len - done);
            const uint64_t grain = p.virt / GRAIN;
            Status st = Status::Ok;
            if (has_pending_ && pending_grain_ != grain)
                st = emit_pending();
            if (st != Status::Ok)
                return st;
            const bool whole = p.rel % GRAIN == 0 && (p.n == GRAIN || p.rel + p.n == p.bytes);
            if (whole && !has_pending_) {
                st = compressed_grain(p, src + done);
            } else {
                start_pending(grain);
                pending_data_ = true;
                __builtin_memcpy(pending_ + p.rel % GRAIN, src + done, static_cast<size_t>(p.n));
            }
            if (st != Status::Ok)
                return st;
            done += p.n;
        }
        return Status::Ok;
    }

    void start_pending(uint64_t grain) {
        if (has_pending_)
            return;
        __builtin_memset(pending_, 0, GRAIN);
        has_pending_ = true;
        pending_data_ = false;
        pending_grain_ = grain;
    }

    // A gathered grain goes out as qemu's compressed convert would send it: data when any write
    // put data in it, else as a zero write of the whole grain.
    Status emit_pending() {
        if (!has_pending_)
            return Status::Ok;
        has_pending_ = false;
        const Piece p = piece_at(pending_grain_ * GRAIN, GRAIN);
        return pending_data_ ? compressed_grain(p, pending_) : stream_zero_grain(p);
    }

    // Zero writes to a streamOptimized image (convert with -B, whose zero runs are written): whole
    // grains are qemu's zero write of a grain, pieces gather like data.
    Status stream_zero(uint64_t offset, uint64_t len) {
        for (uint64_t done = 0; done < len;) {
            const Piece p = piece_at(offset + done, len - done);
            const uint64_t grain = p.virt / GRAIN;
            Status st = Status::Ok;
            if (has_pending_ && pending_grain_ != grain)
                st = emit_pending();
            if (st != Status::Ok)
                return st;
            const bool whole = p.rel % GRAIN == 0 && (p.n == GRAIN || p.rel + p.n == p.bytes);
            if (whole && !has_pending_) {
                st = stream_zero_grain(p);
            } else {
                start_pending(grain);
                __builtin_memset(pending_ + p.rel % GRAIN, 0, static_cast<size_t>(p.n));
            }
            if (st != Status::Ok)
                return st;
            done += p.n;
        }
        return Status::Ok;
    }

    // vmdk_pwritev(zeroed) on a compressed extent: a written grain is refused, a zeroed-grain
    // image marks the grain, otherwise the block layer writes a grain of zeros (compressed).
    Status stream_zero_grain(const Piece& p) {
        uint32_t gte = 0;
        TableRef ref{};
        uint32_t index = 0;
        Status st = table_of(p, p.rel / GRAIN, &ref, &index);
        if (st == Status::Ok)
            st = tables_.get(ref, index, &gte);
        if (st != Status::Ok)
            return st;
        if (gte != 0 && gte != VMDK_GTE_ZEROED)
            return Status::IoError; // "Could not write to allocated cluster for streamOptimized"
        if (!s_.zeroed_grain || p.n != GRAIN)
            return compressed_grain(p, nullptr);
        return gte == VMDK_GTE_ZEROED ? Status::Ok : tables_.set(ref, index, VMDK_GTE_ZEROED);
    }

    // ---- write_zeroes: the block layer's split around grain alignment, then vmdk_co_pwrite_zeroes.

    Status zero_write(uint64_t offset, uint64_t len) {
        if (s_.flat)
            return data_write(offset, nullptr, len);
        if (s_.compress)
            return stream_zero(offset, len);
        Status st = Status::Ok;
        // bdrv_co_do_pwrite_zeroes: an unaligned head and tail go to the driver alone; the driver
        // refuses anything but whole grains (-ENOTSUP), and the block layer writes zeros instead.
        const uint64_t end = offset + len;
        const uint64_t head_end = (offset + GRAIN - 1) / GRAIN * GRAIN;
        const uint64_t body_end = end / GRAIN * GRAIN;
        if (head_end >= body_end || !s_.zeroed_grain) {
            if (st == Status::Ok)
                st = zero_fallback(offset, len);
            return st;
        }
        if (st == Status::Ok && head_end > offset)
            st = zero_fallback(offset, head_end - offset);
        for (uint64_t at = head_end; st == Status::Ok && at < body_end; at += GRAIN) {
            TableRef ref{};
            uint32_t index = 0;
            uint32_t gte = 0;
            st = grain_entry(at, &ref, &index, &gte);
            if (st == Status::Ok && gte != VMDK_GTE_ZEROED)
                st = tables_.set(ref, index, VMDK_GTE_ZEROED);
            cover(at, GRAIN); // a zeroed grain reads no backing data
        }
        if (st == Status::Ok && end > body_end)
            st = zero_fallback(body_end, end - body_end);
        return st;
    }

    Status grain_entry(uint64_t virt, TableRef* ref_out, uint32_t* index_out, uint32_t* gte) {
        const Piece p = piece_at(virt, GRAIN);
        TableRef ref{};
        uint32_t index = 0;
        Status st = table_of(p, p.rel / GRAIN, &ref, &index);
        if (st == Status::Ok)
            st = tables_.get(ref, index, gte);
        if (ref_out != nullptr)
            *ref_out = ref;
        if (index_out != nullptr)
            *index_out = index;
        return st;
    }

    Status zero_fallback(uint64_t offset, uint64_t len) { return data_write(offset, nullptr, len); }

    guest::Allocator& alloc_;
    CreateSettings s_; // its strings point into the request: not used after create
    ExtentPlan plan_;
    ExtentState* extents_;
    uint64_t count_;
    const guest::Codecs* codecs_;
    uint32_t new_cid_;
    bool backing_;
    uint64_t backing_size_; // 0 when unknown: then no sector past the disk's end is taken as zeros
    BlockDevice* desc_dev_; // the descriptor file of split and flat subformats
    uint64_t desc_bytes_;
    GrainTableCache tables_;
    uint8_t* zeros_ = nullptr;
    uint8_t* deflated_ = nullptr;
    uint8_t* pending_ = nullptr;
    bool has_pending_ = false;
    // Batched compression (queue_grain / flush_batch): inputs, outputs, jobs and their pieces.
    uint8_t* bin_ = nullptr;
    uint8_t* bout_ = nullptr;
    guest::CompressJob* jobs_ = nullptr;
    Piece* bpieces_ = nullptr;
    uint32_t batch_n_ = 0;
    bool pending_data_ = false; // some write put data in the gathered grain
    uint64_t pending_grain_ = 0;
    bool compressed_mode_ = false;
    bool cid_updated_ = false;
    OpenGrain open_[OPEN_GRAINS] = {};
    guest::ImageReader* backing_reader_ = nullptr;
    uint8_t* cow_ = nullptr; // the backing's bytes for one grain
    BlockDevice* run_dev_ = nullptr;
    uint64_t run_at_ = 0;
    const uint8_t* run_src_ = nullptr;
    uint64_t run_len_ = 0;
};

} // namespace

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr || req.random == nullptr || req.file_name == nullptr)
        return Status::Invalid;
    CreateSettings s;
    CreateError err;
    Status st = read_create_settings(req, &s, &err);
    if (st != Status::Ok) {
        target.reason(err.text, err.len);
        return st;
    }
    if (s.compress && (req.codecs == nullptr || req.codecs->deflate_mem == nullptr))
        return guest::create_fail(target, Status::Unsupported, "streamOptimized needs zlib's deflate, which is missing");
    const bool monolithic = !s.split && !s.flat;
    const ExtentPlan plan(s);
    // create refuses more than INSTAR_MAX_ADDED_FILES extents itself, with its message.
    uint64_t count = monolithic ? 1 : plan.count();
    if (count > INSTAR_MAX_ADDED_FILES)
        count = INSTAR_MAX_ADDED_FILES;
    const size_t table_bytes = (count == 0 ? 1 : count) * sizeof(ExtentState);
    auto* extents = static_cast<ExtentState*>(req.allocator->allocate(table_bytes, alignof(ExtentState)));
    if (extents == nullptr)
        return Status::NoMemory;
    __builtin_memset(static_cast<void*>(extents), 0, table_bytes);
    RecordingTarget rec(target, extents, count);
    CreatedImage made{};
    st = create_image(req, rec, &made);
    if (st == Status::Ok && !monolithic && rec.count() != count)
        st = Status::Invalid;
    if (st != Status::Ok) {
        req.allocator->deallocate(extents, table_bytes);
        return st;
    }
    if (monolithic)
        extents[0].dev = &target.image();
    for (uint64_t i = 0; i < count && !s.flat; ++i) {
        const uint64_t bytes = monolithic ? s.size : static_cast<uint64_t>(plan.size_of(i));
        const uint64_t grains_at = sparse_layout(bytes, s.compress, s.zeroed_grain).header.grain_offset;
        // qemu's next_cluster_sector: the file's length (grain_offset sectors) rounded to a grain.
        extents[i].next_sector = grains_at;
        extents[i].data_end = extents[i].file_bytes = grains_at * 512;
    }
    const uint32_t new_cid = load_le32(req.random + 4); // qemu's g_random_int() in vmdk_write_cid
    BlockDevice* desc_dev = monolithic ? nullptr : &target.image();
    VmdkWriter* w = guest::arena_new<VmdkWriter>(*req.allocator, *req.allocator, made, extents, count, desc_dev,
                                                 req.codecs, new_cid, s.backing_file != nullptr, req.backing_size);
    if (w == nullptr) {
        req.allocator->deallocate(extents, table_bytes);
        return Status::NoMemory;
    }
    if ((st = w->init()) != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

} // namespace instar::vmdk
