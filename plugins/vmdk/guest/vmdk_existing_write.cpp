// Writing into an existing monolithicSparse vmdk in place (write_api.h's OpenWriterFn: commit's
// base, convert -n). Everything read from the image is untrusted: the header is opened as the reader
// opens it, every grain directory and grain table offset is checked against the file before use.
//
// As qemu's vmdk driver (block/vmdk.c vmdk_pwritev) does for an extent it did not create: an
// allocated grain is written in place; an unallocated or zeroed one gets a new grain at the end of
// the file (qemu's next_cluster_sector), filled with the backing chain's bytes (unallocated, when
// set_backing gave one) or zeros, then the request's bytes; then its entry in the grain table and in
// the redundant one. Whole zeroed grains become zeroed-grain entries where the header allows them.
// On the first write the descriptor gets a new CID, as qemu's vmdk_write_cid does (qemu's is random;
// instar derives one from the file, which differs from the old one but is not random).
// Images with a descriptor file (monolithicFlat, twoGbMaxExtentFlat, twoGbMaxExtentSparse, vmfs):
// every extent file is one of req.files; flat extents are written in place, sparse ones as above, and
// the CID is renewed in the descriptor file, as qemu's vmdk_pwritev does per extent.
// COWD (vmfsSparse) files, alone or as extents, are written the same way (4096-entry tables, no
// redundant directory, no zeroed grains); a grain table missing from the directory is allocated at
// the end of the file. streamOptimized extents (alone or behind a descriptor file) take compressed
// grains. Refused with a reason: seSparse (qemu opens it read-only), a missing table in a
// streamOptimized extent.
#include "vmdk_existing_write.h"

#include "vmdk_bytes.h"
#include "vmdk_descriptor.h"
#include "vmdk_read.h"
#include "vmdk_sparse_header.h"
#include "vmdk_write.h"
#include "vmdk_write_cid.h"

#include <instar/guest/arena_new.h>

namespace instar::vmdk {

using guest::BlockDevice;
using guest::Status;

namespace {

// One grain is buffered whole (copy-on-write); qemu's default is 64 KiB, its largest 1 GiB: instar
// writes into grains of at most 2 MiB.
constexpr uint64_t EXISTING_MAX_GRAIN = 2u << 20;
// Room for one deflated grain of a streamOptimized image: deflate grows incompressible input by a
// few bytes per 16 KiB block, far below doubling.
constexpr size_t STREAM_DEFLATE_CAP = 2 * EXISTING_MAX_GRAIN;

void say_text(guest::ReasonSink* sink, const char* text) { guest::say_reason(sink, text); }

// qemu's vmdk_write_cid on the first write: the descriptor window at `at` of `dev` (a file of
// `file_len` bytes) gets a new CID. qemu's is random; instar derives one from `seed`, which differs
// from the old one but is not random.
Status renew_cid(BlockDevice& dev, guest::Allocator& alloc, uint64_t at, uint64_t file_len, uint64_t seed) {
    auto* w = static_cast<uint8_t*>(alloc.allocate(2 * VMDK_DESC_WINDOW, 8));
    if (w == nullptr)
        return Status::NoMemory;
    __builtin_memset(w, 0, VMDK_DESC_WINDOW);
    const uint64_t have = file_len > at ? file_len - at : 0;
    const size_t n = have < VMDK_DESC_WINDOW ? static_cast<size_t>(have) : VMDK_DESC_WINDOW;
    Status st = dev.read(at, w, n);
    const uint32_t cid = static_cast<uint32_t>(seed * 2654435761u) | 1u;
    if (st == Status::Ok && !rewrite_cid(w, w + VMDK_DESC_WINDOW, cid))
        st = Status::Invalid;
    if (st == Status::Ok)
        st = dev.write(at, w, cid_write_bytes(at, file_len));
    alloc.deallocate(w, 2 * VMDK_DESC_WINDOW);
    return st;
}

// qemu's vmdk_write_cid after the first piece a write puts in place (vmdk_pwritev), once per open:
// the descriptor window at `at` of `dev` (the image at 0x200, or the descriptor file at 0), a file of
// `file_len` bytes when opened. A failed first piece (e.g. the parentCID check) leaves the CID alone.
struct CidRenewal {
    BlockDevice* dev;
    uint64_t at;
    uint64_t file_len;
    uint64_t seed;
    bool done;

    Status renew(guest::Allocator& alloc) {
        if (done)
            return Status::Ok;
        done = true;
        return renew_cid(*dev, alloc, at, file_len, seed);
    }
};

class ExistingVmdkWriter final : public guest::ImageWriter {
public:
    // `own_cid`: a monolithicSparse image (its embedded descriptor gets the new CID; the writer owns
    // `grain_buf`); otherwise one extent of a descriptor-file image, whose writer renews the CID and
    // owns the (shared) buffer.
    // `codecs`/`packed`: a streamOptimized image (compressed grains; `packed` holds a marker and
    // STREAM_DEFLATE_CAP bytes, owned by the writer); nullptr otherwise.
    ExistingVmdkWriter(BlockDevice& dev, guest::Allocator& alloc, guest::ReasonSink* reasons, const Vmdk4Header& h,
                       uint32_t l1_size, uint8_t* grain_buf, bool own_cid = true, const guest::Codecs* codecs = nullptr,
                       uint8_t* packed = nullptr)
        : dev_(dev), alloc_(alloc), reasons_(reasons), h_(h), l1_size_(l1_size), grain_(h.granularity * 512),
          buf_(grain_buf), owns_buf_(own_cid), codecs_(codecs), packed_(packed) {
        const uint64_t sectors = (dev.size() + 511) / 512;
        next_sector_ = (sectors + h.granularity - 1) / h.granularity * h.granularity;
        file_len_ = dev.size();
        own_cid_ = CidRenewal{&dev, VMDK_EMBEDDED_DESC_OFFSET, file_len_, file_len_ + h.capacity, !own_cid};
        cid_ = &own_cid_;
    }
    // An extent of a descriptor-file image: the descriptor's renewal, shared by every extent.
    void share_cid(CidRenewal* cid) { cid_ = cid; }
    // The descriptor's parentCID (qemu's s->parent_cid), for the check a new grain makes.
    void set_parent_cid(uint32_t parent_cid) { parent_cid_ = parent_cid; }

    uint64_t cluster_size() const override { return grain_; }
    bool zero_init() const override { return false; }
    // vmdk_get_info: a streamOptimized extent takes only compressed grains.
    bool needs_compressed_writes() const override { return packed_ != nullptr; }
    void set_backing(guest::ImageReader* backing) override {
        backing_ = backing;
        backing_ok_ = backing == nullptr || vmdk_backing_valid(parent_cid_, *backing);
    }
    // An extent of a descriptor-file image: its first virtual byte (grain markers hold the disk's
    // sector, qemu's `offset >> 9`, not the extent's).
    void set_extent_start(uint64_t start) { extent_start_ = start; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (!in_range(offset, len))
            return Status::Invalid;
        const auto* src = static_cast<const uint8_t*>(buf);
        while (len > 0) {
            const uint64_t in = offset % grain_;
            const uint64_t n = len < grain_ - in ? len : grain_ - in;
            if (const Status st = piece(offset, src, n, false); st != Status::Ok)
                return st;
            offset += n;
            src += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (!in_range(offset, len))
            return Status::Invalid;
        while (len > 0) {
            const uint64_t in = offset % grain_;
            const uint64_t n = len < grain_ - in ? len : grain_ - in;
            if (const Status st = piece(offset, nullptr, n, true); st != Status::Ok)
                return st;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_compressed(uint64_t offset, const void* buf, size_t len) override {
        if (packed_ == nullptr) {
            say_text(reasons_, "instar cannot write compressed grains into an existing vmdk image yet");
            return Status::Unsupported;
        }
        return write(offset, buf, len); // a streamOptimized image compresses every write
    }
    // Every update was written through. streamOptimized: qemu-img ends a compressed convert with an
    // empty compressed write, which rounds the file up to a sector.
    Status finish() override {
        if (packed_ == nullptr || file_len_ % 512 == 0)
            return Status::Ok;
        __builtin_memset(buf_, 0, 512);
        return dev_.write(file_len_, buf_, static_cast<size_t>(512 - file_len_ % 512));
    }
    void close() override {
        if (packed_ != nullptr)
            alloc_.deallocate(packed_, VMDK_GRAIN_MARKER_BYTES + STREAM_DEFLATE_CAP);
        if (owns_buf_)
            alloc_.deallocate(buf_, static_cast<size_t>(grain_));
        guest::arena_delete(alloc_, this);
    }

private:
    bool in_range(uint64_t offset, uint64_t len) const {
        const uint64_t size = h_.capacity * 512;
        return offset <= size && len <= size - offset;
    }

    // The grain table entry's file offset for virtual `offset` in the directory at `gd_sector`.
    Status entry_at(uint64_t gd_sector, uint64_t offset, uint64_t* at) {
        const uint64_t grain_index = offset / grain_;
        const uint64_t l1 = grain_index / h_.num_gtes_per_gt;
        if (l1 >= l1_size_)
            return Status::Corrupt;
        uint8_t b[4];
        if (dev_.read(gd_sector * 512 + l1 * 4, b, 4) != Status::Ok)
            return Status::IoError;
        uint64_t gt = load_le32(b);
        const uint64_t table_bytes = uint64_t{h_.num_gtes_per_gt} * 4;
        if (gt == 0) {
            if (const Status st = new_table(gd_sector * 512 + l1 * 4, table_bytes, &gt); st != Status::Ok)
                return st;
        }
        if (gt * 512 >= file_len_ || table_bytes > file_len_ - gt * 512) {
            say_text(reasons_, "vmdk grain table offset past the end of the image file");
            return Status::Corrupt;
        }
        *at = gt * 512 + (grain_index % h_.num_gtes_per_gt) * 4;
        return Status::Ok;
    }

    // A grain directory entry of 0 (a COWD image VMware made sparse in its tables): a zero-filled
    // table at the end of the file (qemu's next_cluster_sector), then the directory entry at `entry`
    // (table first: a crash leaves an unused table or an empty one). qemu has no such step: it
    // writes such a grain over the start of the file (docs/quirks.md, vmdk-missing-grain-table).
    Status new_table(uint64_t entry, uint64_t table_bytes, uint64_t* gt) {
        if (packed_ != nullptr) { // streamOptimized images qemu makes have every table
            say_text(reasons_, "instar cannot allocate grain tables in an existing streamOptimized vmdk image");
            return Status::Unsupported;
        }
        const uint64_t sectors = (table_bytes + 511) / 512;
        const uint64_t span = (sectors + h_.granularity - 1) / h_.granularity * h_.granularity;
        if (next_sector_ + span > VMDK_WRITE_MAX_SECTOR) // entries are 32-bit sector numbers
            return Status::TooLarge;
        const uint64_t sector = next_sector_;
        for (uint64_t done = 0; done < sectors * 512;) {
            const uint64_t k = sectors * 512 - done < grain_ ? sectors * 512 - done : grain_;
            __builtin_memset(buf_, 0, static_cast<size_t>(k));
            if (const Status st = dev_.write(sector * 512 + done, buf_, static_cast<size_t>(k)); st != Status::Ok)
                return st;
            done += k;
        }
        next_sector_ += span;
        if ((sector + sectors) * 512 > file_len_)
            file_len_ = (sector + sectors) * 512;
        const uint8_t b[4] = {static_cast<uint8_t>(sector), static_cast<uint8_t>(sector >> 8),
                              static_cast<uint8_t>(sector >> 16), static_cast<uint8_t>(sector >> 24)};
        if (const Status st = dev_.write(entry, b, 4); st != Status::Ok)
            return st;
        *gt = sector;
        return Status::Ok;
    }

    Status set_entry(uint64_t offset, uint32_t value, uint64_t at) {
        uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                        static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
        if (const Status st = dev_.write(at, b, 4); st != Status::Ok)
            return st;
        if (h_.flags & VMDK4_FLAG_RGD) { // qemu keeps the redundant table equal (vmdk_L2update)
            uint64_t rat = 0;
            if (const Status st = entry_at(h_.rgd_offset, offset, &rat); st != Status::Ok)
                return st;
            return dev_.write(rat, b, 4);
        }
        return Status::Ok;
    }

    // qemu's get_whole_cluster into buf_: the grain at virtual `start` from the backing chain (zeros
    // past its end), or zeros for a zeroed grain or without one.
    Status whole_grain(uint64_t start, bool zeroed) {
        __builtin_memset(buf_, 0, static_cast<size_t>(grain_));
        if (zeroed || backing_ == nullptr || start >= backing_->virtual_size())
            return Status::Ok;
        const uint64_t bsize = backing_->virtual_size() - start;
        return backing_->read(start, buf_, static_cast<size_t>(bsize < grain_ ? bsize : grain_));
    }

    // One piece inside one grain: data (src) or zeros (zero); then, after the first, the new CID.
    Status piece(uint64_t offset, const uint8_t* src, uint64_t n, bool zero) {
        if (const Status st = place(offset, src, n, zero); st != Status::Ok)
            return st;
        return cid_->renew(alloc_);
    }

    Status place(uint64_t offset, const uint8_t* src, uint64_t n, bool zero) {
        uint64_t at = 0;
        if (const Status st = entry_at(h_.gd_offset, offset, &at); st != Status::Ok)
            return st;
        uint8_t b[4];
        if (dev_.read(at, b, 4) != Status::Ok)
            return Status::IoError;
        const uint64_t gte = load_le32(b);
        const uint64_t in = offset % grain_;
        const bool zeroed = gte == VMDK_GTE_ZEROED && (h_.flags & VMDK4_FLAG_ZERO_GRAIN);
        if (packed_ != nullptr)
            return stream_piece(offset, src, n, zero, gte, zeroed, at);
        if (gte != 0 && !zeroed) {
            if (gte * 512 >= file_len_ || grain_ > file_len_ - gte * 512) {
                say_text(reasons_, "vmdk grain offset past the end of the image file");
                return Status::Corrupt;
            }
            if (zero) {
                __builtin_memset(buf_, 0, static_cast<size_t>(n));
                return dev_.write(gte * 512 + in, buf_, static_cast<size_t>(n));
            }
            return dev_.write(gte * 512 + in, src, static_cast<size_t>(n)); // allocated: in place
        }
        if (zero && n == grain_ && (h_.flags & VMDK4_FLAG_ZERO_GRAIN))
            return zeroed ? Status::Ok : set_entry(offset, VMDK_GTE_ZEROED, at);
        // A part of a grain, zeroed or not, gets a grain of its own, even for zeros: qemu's zeroed
        // write refuses it (ENOTSUP), the block layer then writes zeros, which allocates.
        // A new grain (qemu's get_whole_cluster: the parentCID check first, before anything is
        // written): the rest from the backing chain (unallocated) or zeros (zeroed, or none).
        if (!backing_ok_)
            return Status::Invalid;
        if (const Status st = whole_grain(offset - in, zeroed); st != Status::Ok)
            return st;
        if (zero)
            __builtin_memset(buf_ + in, 0, static_cast<size_t>(n));
        else
            __builtin_memcpy(buf_ + in, src, static_cast<size_t>(n));
        // qemu: grain table entries are 32-bit sector numbers.
        if (next_sector_ + h_.granularity > VMDK_WRITE_MAX_SECTOR)
            return Status::TooLarge;
        const uint64_t sector = next_sector_;
        if (const Status st = dev_.write(sector * 512, buf_, static_cast<size_t>(grain_)); st != Status::Ok)
            return st;
        next_sector_ += h_.granularity;
        if (sector * 512 + grain_ > file_len_)
            file_len_ = sector * 512 + grain_;
        return set_entry(offset, static_cast<uint32_t>(sector), at);
    }

    // A streamOptimized image (qemu's vmdk_pwritev on a compressed extent): an allocated grain is
    // "Could not write to allocated cluster for streamOptimized" (EIO); a whole zero grain becomes a
    // zeroed-grain entry where the header allows them; anything else must be a whole grain (or the
    // disk's last, shorter one: else EINVAL), deflated behind a grain marker at the sector after
    // the last compressed data (the new grain is zero-filled first, as get_whole_cluster does).
    Status stream_piece(uint64_t offset, const uint8_t* src, uint64_t n, bool zero, uint64_t gte, bool zeroed,
                        uint64_t at) {
        if (gte != 0 && !zeroed) // qemu's error_report, then qemu-img's "error while writing"
            return write_error(Status::IoError, "\x01" "Could not write to allocated cluster for streamOptimized\n",
                               extent_start_ + offset, "Input/output error");
        const uint64_t in = offset % grain_;
        if (zero && in == 0 && n == grain_ && (h_.flags & VMDK4_FLAG_ZERO_GRAIN))
            return zeroed ? Status::Ok : set_entry(offset, VMDK_GTE_ZEROED, at);
        if (!backing_ok_) // get_whole_cluster's parentCID check, as above
            return Status::Invalid;
        // With a backing chain, get_whole_cluster first writes the new grain whole with the chain's
        // bytes (the compressed data then covers its start); without one the zeros are written
        // below, only past the file's end (the rest is already zero).
        if (backing_ != nullptr && !zeroed) {
            const uint64_t start = next_sector_ * 512;
            if (next_sector_ + h_.granularity > VMDK_WRITE_MAX_SECTOR)
                return Status::TooLarge;
            if (const Status st = whole_grain(offset - in, false); st != Status::Ok)
                return st;
            if (const Status st = dev_.write(start, buf_, static_cast<size_t>(grain_)); st != Status::Ok)
                return st;
            if (start + grain_ > file_len_)
                file_len_ = start + grain_;
        }
        if (in != 0 || (n != grain_ && offset + n != h_.capacity * 512)) {
            // vmdk_write_extent: only whole clusters (EINVAL), after get_whole_cluster zero-filled
            // a new grain at the end of the file.
            const uint64_t start = next_sector_ * 512;
            for (uint64_t z = file_len_ > start ? file_len_ : start; z < start + grain_;) {
                const uint64_t k = start + grain_ - z;
                __builtin_memset(buf_, 0, static_cast<size_t>(k));
                if (const Status st = dev_.write(z, buf_, static_cast<size_t>(k)); st != Status::Ok)
                    return st;
                z += k;
            }
            if (start + grain_ > file_len_)
                file_len_ = start + grain_;
            return write_error(Status::Invalid, "", extent_start_ + offset, "Invalid argument");
        }
        if (zero) {
            __builtin_memset(buf_, 0, static_cast<size_t>(n));
            src = buf_;
        }
        if (codecs_ == nullptr || codecs_->deflate_mem == nullptr)
            return Status::Unsupported;
        size_t len = 0;
        Status st = codecs_->deflate_mem(src, static_cast<size_t>(n), packed_ + VMDK_GRAIN_MARKER_BYTES,
                                         STREAM_DEFLATE_CAP, &len, VMDK_DEFLATE_WINDOW, VMDK_DEFLATE_LEVEL,
                                         VMDK_DEFLATE_MEM_LEVEL);
        if (st != Status::Ok || len == 0)
            return Status::Invalid;
        const uint64_t lba = (extent_start_ + offset) / 512;
        for (int i = 0; i < 8; ++i)
            packed_[i] = static_cast<uint8_t>(lba >> (8 * i));
        for (int i = 0; i < 4; ++i)
            packed_[8 + i] = static_cast<uint8_t>(static_cast<uint64_t>(len) >> (8 * i));
        // qemu: grain table entries are 32-bit sector numbers.
        if (next_sector_ + h_.granularity > VMDK_WRITE_MAX_SECTOR)
            return Status::TooLarge;
        const uint64_t sector = next_sector_;
        const uint64_t start = sector * 512;
        const uint64_t bytes = VMDK_GRAIN_MARKER_BYTES + len;
        if ((st = dev_.write(start, packed_, static_cast<size_t>(bytes))) != Status::Ok)
            return st;
        // get_whole_cluster wrote a zero grain here first: the file reaches at least its end.
        for (uint64_t z = start + bytes > file_len_ ? start + bytes : file_len_; z < start + grain_;) {
            const uint64_t k = start + grain_ - z < grain_ ? start + grain_ - z : grain_;
            __builtin_memset(buf_, 0, static_cast<size_t>(k));
            if ((st = dev_.write(z, buf_, static_cast<size_t>(k))) != Status::Ok)
                return st;
            z += k;
        }
        if (start + grain_ > file_len_)
            file_len_ = start + grain_;
        next_sector_ = (start + bytes + 511) / 512;
        return set_entry(offset, static_cast<uint32_t>(sector), at); // piece() renews the CID
    }

    // qemu-img's "error while writing at byte N: ERRNO" for the request at `offset`, after `first`
    // (lines qemu error_reports before: '\x01' LINE '\n', or "").
    Status write_error(Status st, const char* first, uint64_t offset, const char* errno_text) {
        char why[160];
        size_t k = 0;
        auto put = [&](const char* t) {
            while (*t != 0 && k < sizeof why)
                why[k++] = *t++;
        };
        put(first);
        put("error while writing at byte ");
        char digits[20];
        size_t d = 0;
        do {
            digits[d++] = static_cast<char>('0' + offset % 10);
            offset /= 10;
        } while (offset != 0);
        while (d > 0 && k < sizeof why)
            why[k++] = digits[--d];
        put(": ");
        put(errno_text);
        if (reasons_ != nullptr)
            reasons_->reason(why, k);
        return st;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    guest::ReasonSink* reasons_;
    Vmdk4Header h_;
    uint32_t l1_size_;
    uint64_t grain_;
    uint8_t* buf_;
    uint64_t next_sector_ = 0;
    uint64_t file_len_ = 0;
    CidRenewal own_cid_{};
    CidRenewal* cid_ = nullptr;
    uint32_t parent_cid_ = 0;
    bool owns_buf_ = true;
    guest::ImageReader* backing_ = nullptr;
    bool backing_ok_ = true;
    uint64_t extent_start_ = 0;
    const guest::Codecs* codecs_ = nullptr;
    uint8_t* packed_ = nullptr;
};

} // namespace

namespace {

// The parentCID of the descriptor embedded at 0x200 (qemu's desc_offset for a sparse file, COWD too),
// read as qemu's vmdk_read_cid reads it; a window without one fails as qemu's open does.
Status embedded_parent_cid(BlockDevice& dev, guest::Allocator& alloc, uint32_t* parent_cid) {
    auto* w = static_cast<uint8_t*>(alloc.allocate(VMDK_DESC_WINDOW, 8));
    if (w == nullptr)
        return Status::NoMemory;
    Status st = read_zero_filled(dev, VMDK_EMBEDDED_DESC_OFFSET, w, VMDK_DESC_WINDOW);
    w[VMDK_DESC_WINDOW - 1] = 0;
    if (st == Status::Ok && !descriptor_cid(text_of(w, VMDK_DESC_WINDOW), true, parent_cid))
        st = Status::Corrupt;
    alloc.deallocate(w, VMDK_DESC_WINDOW);
    return st;
}

// Checks a sparse extent as open_writer always did and makes its writer. `embedded`: a
// monolithicSparse image (its descriptor inside); else one extent of a descriptor-file image, whose
// grain buffer `shared` (of max_grain bytes) the caller owns.
Status sparse_writer(BlockDevice& dev, guest::Allocator& alloc, guest::ReasonSink* reasons, bool embedded,
                     uint8_t* shared, uint64_t max_grain, ExistingVmdkWriter** out,
                     const guest::Codecs* codecs = nullptr) {
    VmdkSparseExtent ext{};
    Vmdk4Header h{};
    bool has_descriptor = false;
    uint8_t m[4] = {};
    const bool cowd = dev.size() >= 4 && dev.read(0, m, 4) == Status::Ok && load_be32(m) == VMDK3_MAGIC;
    uint64_t cowd_l1 = 0;
    Status st = Status::Ok;
    if (cowd) {
        // COWD (vmfsSparse): written as qemu's vmdk_pwritev writes it, through the same grain
        // directory walk: 4096-entry tables, no redundant directory, no zeroed grains; a CID window
        // at sector 1 when the file stands alone (qemu's desc_offset 0x200).
        VmdkAltExtent x{};
        char why[VMDK_REASON_MAX];
        st = vmdk_cowd_open(dev, &x, why);
        if (st != Status::Ok) {
            say_text(reasons, why);
            return st;
        }
        h.capacity = x.sectors;
        h.granularity = x.grain_sectors;
        h.num_gtes_per_gt = x.gtes;
        h.gd_offset = x.gd_offset / 512;
        h.desc_offset = VMDK_EMBEDDED_DESC_OFFSET / 512;
        cowd_l1 = x.l1_size;
    } else {
        st = vmdk_sparse_open(dev, &ext, &h, &has_descriptor);
    }
    if (st != Status::Ok || has_descriptor) {
        say_text(reasons, embedded ? "instar cannot write into an existing vmdk image other than monolithicSparse yet"
                                   : "instar cannot write into this kind of vmdk extent yet (vmfsSparse)");
        return Status::Unsupported;
    }
    // streamOptimized: qemu appends compressed grains (whole ones) to a monolithic image. VMware's
    // layout (the header at 0 saying the directory is "at the end", the real header in a footer)
    // is refused: a grain appended after the footer leaves a file that no longer ends with it, which
    // neither qemu nor VMware opens ("Invalid footer": what qemu-img's own write does to it).
    // vmdk_sparse_open returns the footer's header there, so the one at 0 is read here.
    const bool stream = ext.compressed;
    bool footer = false;
    if (!cowd) {
        uint8_t first[4 + sizeof(Vmdk4HeaderDisk)];
        if ((st = dev.read(0, first, sizeof first)) != Status::Ok)
            return st;
        Vmdk4Header at_start{};
        vmdk4_header_decode(first + 4, &at_start);
        footer = at_start.gd_offset == VMDK4_GD_AT_END;
    }
    if (footer || h.gd_offset == VMDK4_GD_AT_END ||
        (!stream && (h.flags & (VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER)))) {
        say_text(reasons, "instar cannot write into this existing streamOptimized vmdk image");
        return Status::Unsupported;
    }
    const uint64_t grain = h.granularity * 512;
    if (h.granularity == 0 || grain > EXISTING_MAX_GRAIN || h.num_gtes_per_gt == 0 ||
        (embedded ? h.desc_offset * 512 != VMDK_EMBEDDED_DESC_OFFSET : grain > max_grain)) {
        say_text(reasons, "instar cannot write into this existing vmdk image yet (grain size or layout)");
        return Status::Unsupported;
    }
    const uint64_t span = uint64_t{h.num_gtes_per_gt} * h.granularity;
    // COWD: the directory's size is the header's (qemu's l1dir_size), not derived from the capacity.
    const uint64_t l1 = cowd ? cowd_l1 : h.capacity / span + (h.capacity % span != 0);
    const uint64_t file = dev.size();
    auto table_in_file = [&](uint64_t sector) {
        return sector != 0 && sector * 512 < file && l1 * 4 <= file - sector * 512;
    };
    if (l1 > VMDK_MAX_L1_SIZE || !table_in_file(h.gd_offset) ||
        ((h.flags & VMDK4_FLAG_RGD) && !table_in_file(h.rgd_offset))) {
        say_text(reasons, "vmdk grain directory offset past the end of the image file");
        return Status::Corrupt;
    }
    uint8_t* buf = shared;
    if (embedded) {
        buf = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(grain), 64));
        if (buf == nullptr)
            return Status::NoMemory;
    }
    uint8_t* packed = nullptr;
    if (stream && (packed = static_cast<uint8_t*>(alloc.allocate(VMDK_GRAIN_MARKER_BYTES + STREAM_DEFLATE_CAP, 8))) ==
                      nullptr) {
        alloc.deallocate(buf, static_cast<size_t>(grain));
        return Status::NoMemory;
    }
    // The embedded descriptor's parentCID (an extent's comes from its descriptor file: open_multi).
    uint32_t parent_cid = 0;
    if (embedded && (st = embedded_parent_cid(dev, alloc, &parent_cid)) != Status::Ok) {
        if (packed != nullptr)
            alloc.deallocate(packed, VMDK_GRAIN_MARKER_BYTES + STREAM_DEFLATE_CAP);
        alloc.deallocate(buf, static_cast<size_t>(grain));
        return st;
    }
    auto* w = guest::arena_new<ExistingVmdkWriter>(alloc, dev, alloc, reasons, h, static_cast<uint32_t>(l1), buf,
                                                   embedded, codecs, packed);
    if (w != nullptr)
        w->set_parent_cid(parent_cid);
    if (w == nullptr) {
        if (packed != nullptr)
            alloc.deallocate(packed, VMDK_GRAIN_MARKER_BYTES + STREAM_DEFLATE_CAP);
        if (embedded)
            alloc.deallocate(buf, static_cast<size_t>(grain));
        return Status::NoMemory;
    }
    *out = w;
    return Status::Ok;
}

// An image made of a descriptor file and extent files (monolithicFlat, twoGbMaxExtent*, vmfs):
// each request is split at extent boundaries; flat extents are written in place (zeros as data:
// qemu's vmdk has no zero write for them, so the block layer writes zeros), sparse ones through
// their ExistingVmdkWriter. The first write renews the descriptor's CID (qemu's vmdk_write_cid).
class MultiExtentWriter final : public guest::ImageWriter {
public:
    MultiExtentWriter(BlockDevice& desc, guest::Allocator& alloc, const ReadLayout& layout,
                      ExistingVmdkWriter** sparse, uint8_t* buf, uint64_t buf_bytes)
        : desc_(desc), alloc_(alloc), layout_(layout), sparse_(sparse), buf_(buf), buf_bytes_(buf_bytes),
          cid_{&desc, 0, desc.size(), desc.size() + layout.virtual_size, false} {
        for (uint32_t i = 0; i < layout_.count; ++i)
            if (sparse_[i] != nullptr) {
                sparse_[i]->share_cid(&cid_);
                sparse_[i]->set_parent_cid(layout_.parent_cid);
            }
    }

    // vmdk_get_info: the first extent's grain for a sparse image, none for a flat one.
    uint64_t cluster_size() const override {
        return layout_.extents[0].flat ? 0 : layout_.extents[0].grain_bytes;
    }
    bool zero_init() const override { return false; }
    void set_backing(guest::ImageReader* backing) override {
        for (uint32_t i = 0; i < layout_.count; ++i)
            if (sparse_[i] != nullptr)
                sparse_[i]->set_backing(backing); // the parentCID check is each sparse extent's
    }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        return each(offset, len, static_cast<const uint8_t*>(buf), false);
    }
    Status write_zeroes(uint64_t offset, uint64_t len, bool) override { return each(offset, len, nullptr, true); }
    // vmdk_get_info: the first extent decides (a streamOptimized extent takes only compressed grains).
    bool needs_compressed_writes() const override {
        return !layout_.extents[0].flat && sparse_[0]->needs_compressed_writes();
    }
    Status write_compressed(uint64_t offset, const void* buf, size_t len) override {
        if (!needs_compressed_writes())
            return Status::Unsupported;
        return each(offset, len, static_cast<const uint8_t*>(buf), false); // compressed extents compress
    }
    // Every update was written through; a compressed convert's last (empty) write rounds each
    // extent file up to a sector (qemu's vmdk_co_pwritev_compressed).
    Status finish() override {
        for (uint32_t i = 0; i < layout_.count; ++i)
            if (sparse_[i] != nullptr)
                if (const Status st = sparse_[i]->finish(); st != Status::Ok)
                    return st;
        return Status::Ok;
    }
    void close() override {
        for (uint32_t i = 0; i < layout_.count; ++i)
            if (sparse_[i] != nullptr)
                sparse_[i]->close();
        alloc_.deallocate(sparse_, sizeof(ExistingVmdkWriter*) * layout_.count);
        if (buf_ != nullptr)
            alloc_.deallocate(buf_, static_cast<size_t>(buf_bytes_));
        free_layout(alloc_, &layout_);
        guest::arena_delete(alloc_, this);
    }

private:
    Status each(uint64_t offset, uint64_t len, const uint8_t* src, bool zero) {
        if (offset > layout_.virtual_size || len > layout_.virtual_size - offset)
            return Status::Invalid;
        uint32_t i = 0;
        while (len > 0) {
            while (i < layout_.count && offset >= layout_.extents[i].start + layout_.extents[i].bytes)
                ++i;
            if (i == layout_.count)
                return Status::Invalid;
            const ReadExtent& e = layout_.extents[i];
            const uint64_t rel = offset - e.start;
            const uint64_t n = len < e.bytes - rel ? len : e.bytes - rel;
            Status st;
            if (!e.flat)
                st = zero ? sparse_[i]->write_zeroes(rel, n, false) : sparse_[i]->write(rel, src, static_cast<size_t>(n));
            else
                st = flat(e, rel, src, n, zero);
            if (st == Status::Ok) // a sparse extent's writer renewed it after its first grain
                st = cid_.renew(alloc_);
            if (st != Status::Ok)
                return st;
            offset += n;
            len -= n;
            if (src != nullptr)
                src += n;
        }
        return Status::Ok;
    }

    Status flat(const ReadExtent& e, uint64_t rel, const uint8_t* src, uint64_t n, bool zero) {
        // The extent lies inside its file (checked at open): its sectors are written in place.
        if (!zero)
            return e.dev->write(e.flat_offset + rel, src, static_cast<size_t>(n));
        __builtin_memset(buf_, 0, static_cast<size_t>(buf_bytes_));
        while (n > 0) {
            const uint64_t k = n < buf_bytes_ ? n : buf_bytes_;
            if (const Status st = e.dev->write(e.flat_offset + rel, buf_, static_cast<size_t>(k)); st != Status::Ok)
                return st;
            rel += k;
            n -= k;
        }
        return Status::Ok;
    }

    BlockDevice& desc_;
    guest::Allocator& alloc_;
    ReadLayout layout_;
    ExistingVmdkWriter** sparse_;
    uint8_t* buf_;
    uint64_t buf_bytes_;
    CidRenewal cid_;
};

// Zeros written at a time into flat extents; also the least grain buffer shared by sparse extents.
constexpr uint64_t FLAT_ZERO_CHUNK = 64 * 1024;

Status open_multi(const guest::OpenRequest& req, guest::ImageWriter** out) {
    guest::Allocator& alloc = *req.allocator;
    ReadLayout layout{};
    if (const Status st = open_layout(req, &layout); st != Status::Ok)
        return st;
    // One buffer for every sparse extent's grain (they are written one at a time) and flat zeros.
    uint64_t buf_bytes = FLAT_ZERO_CHUNK;
    for (uint32_t i = 0; i < layout.count; ++i) {
        const ReadExtent& e = layout.extents[i];
        if (e.sesparse) { // qemu's vmdk_open_se_sparse opens them read-only
            free_layout(alloc, &layout);
            say_text(req.reasons, "No write support for seSparse images available");
            return Status::Unsupported;
        }
        if (!e.flat && e.grain_bytes > buf_bytes)
            buf_bytes = e.grain_bytes;
        uint64_t end = 0;
        if (e.flat && (__builtin_add_overflow(e.flat_offset, e.bytes, &end) || end > e.dev->size())) {
            // qemu reads such an extent's missing tail as zeros; writing would grow the file.
            free_layout(alloc, &layout);
            say_text(req.reasons, "instar cannot write into a vmdk flat extent shorter than the descriptor says");
            return Status::Unsupported;
        }
    }
    if (buf_bytes > EXISTING_MAX_GRAIN) {
        free_layout(alloc, &layout);
        say_text(req.reasons, "instar cannot write into this existing vmdk image yet (grain size or layout)");
        return Status::Unsupported;
    }
    auto* buf = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(buf_bytes), 64));
    auto* sparse = static_cast<ExistingVmdkWriter**>(
        alloc.allocate(sizeof(ExistingVmdkWriter*) * layout.count, alignof(ExistingVmdkWriter*)));
    Status st = buf == nullptr || sparse == nullptr ? Status::NoMemory : Status::Ok;
    for (uint32_t i = 0; sparse != nullptr && i < layout.count; ++i)
        sparse[i] = nullptr;
    for (uint32_t i = 0; st == Status::Ok && i < layout.count; ++i) {
        const ReadExtent& e = layout.extents[i];
        if (!e.flat)
            st = sparse_writer(*e.dev, alloc, req.reasons, false, buf, buf_bytes, &sparse[i], req.codecs);
        if (st == Status::Ok && sparse[i] != nullptr)
            sparse[i]->set_extent_start(e.start);
    }
    MultiExtentWriter* w = nullptr;
    if (st == Status::Ok) {
        w = guest::arena_new<MultiExtentWriter>(alloc, *req.image, alloc, layout, sparse, buf, buf_bytes);
        if (w == nullptr)
            st = Status::NoMemory;
    }
    if (st != Status::Ok) {
        for (uint32_t i = 0; sparse != nullptr && i < layout.count; ++i)
            if (sparse[i] != nullptr)
                sparse[i]->close();
        if (sparse != nullptr)
            alloc.deallocate(sparse, sizeof(ExistingVmdkWriter*) * layout.count);
        if (buf != nullptr)
            alloc.deallocate(buf, static_cast<size_t>(buf_bytes));
        free_layout(alloc, &layout);
        return st;
    }
    *out = w;
    return Status::Ok;
}

} // namespace

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    if (req.file_count != 0)
        return open_multi(req, out);
    ExistingVmdkWriter* w = nullptr;
    if (const Status st = sparse_writer(*req.image, *req.allocator, req.reasons, true, nullptr, 0, &w, req.codecs);
        st != Status::Ok)
        return st;
    *out = w;
    return Status::Ok;
}

} // namespace instar::vmdk
