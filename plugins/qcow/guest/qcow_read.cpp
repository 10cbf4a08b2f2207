// The qcow reader (qcow_read.h).
#include "qcow_read.h"

#include "qcow_format.h"

#include "luks_crypto.h"
#include "luks_header.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/page_cache.h>

namespace instar::qcow {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

// Every 8-aligned table entry in the file, addressed by file offset / 8.
using EntryCache = guest::TablePageCache<uint64_t, QCOW_ENTRY_PAGE_ENTRIES, QCOW_ENTRY_CACHE_PAGES>;

enum class Kind { Data, Compressed, Unallocated };

class QcowReader final : public guest::ImageReader {
public:
    QcowReader(BlockDevice& dev, guest::Allocator& alloc, const QcowImage& img, const EntryCache& cache,
               const guest::Codecs* codecs, uint8_t* cluster, uint8_t* compressed, luks::SectorCipher* cipher,
               uint32_t qemu_version)
        : dev_(dev), alloc_(alloc), img_(img), cache_(cache), codecs_(codecs), cluster_(cluster),
          compressed_(compressed), cipher_(cipher), qemu_version_(qemu_version) {}

    uint64_t virtual_size() const override { return img_.virtual_size; }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= virtual_size() || length == 0 || length > virtual_size() - offset)
            return Status::Invalid;
        Kind k;
        uint64_t n, at;
        if (const Status st = find(offset, length, &k, &n, &at); st != Status::Ok)
            return st;
        *out = Extent{};
        out->length = n;
        if (k == Kind::Unallocated) {
            out->allocation = Allocation::Unallocated;
        } else if (k == Kind::Compressed) {
            out->allocation = Allocation::Data;
            // qemu 10.0 reports BDRV_BLOCK_COMPRESSED; 7.2 plain data.
            out->flags = qemu_version_ >= 100000 ? guest::EXTENT_COMPRESSED : 0;
        } else {
            out->allocation = Allocation::Data;
            if (cipher_ != nullptr) {
                out->flags = guest::EXTENT_ENCRYPTED;
            } else {
                out->flags = guest::EXTENT_OFFSET_VALID;
                out->offset = at;
            }
        }
        return Status::Ok;
    }

    // qcow_co_block_status answers one cluster at a time.
    uint64_t status_boundary(uint64_t offset) const override {
        return ((offset >> img_.cluster_bits) + 1) << img_.cluster_bits;
    }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > virtual_size() || len > virtual_size() - offset)
            return Status::Invalid;
        uint8_t* dst = static_cast<uint8_t*>(buf);
        while (len > 0) {
            Kind k;
            uint64_t n, at;
            if (const Status st = find(offset, len, &k, &n, &at); st != Status::Ok)
                return st;
            if (k == Kind::Unallocated) {
                __builtin_memset(dst, 0, static_cast<size_t>(n));
            } else if (k == Kind::Compressed) {
                // find() answers one compressed cluster at a time.
                if (const Status st = decompress(at); st != Status::Ok)
                    return st;
                __builtin_memcpy(dst, cluster_ + (offset & (img_.cluster_size - 1)), static_cast<size_t>(n));
            } else {
                // qcow_co_preadv: a data cluster not on a sector boundary is EIO.
                if (((at - (offset & (img_.cluster_size - 1))) & 511) != 0)
                    return Status::IoError;
                if (const Status st = read_data(at, offset, dst, static_cast<size_t>(n)); st != Status::Ok)
                    return st;
            }
            dst += n;
            offset += n;
            len -= static_cast<size_t>(n);
        }
        return Status::Ok;
    }

    void close() override {
        cache_.release(alloc_);
        alloc_.deallocate(cluster_, img_.cluster_size);
        alloc_.deallocate(compressed_, img_.cluster_size);
        luks::delete_wiped(alloc_, cipher_);
        guest::arena_delete(alloc_, this);
    }

private:
    // Plain (or AES-encrypted) data: whole 512-byte sectors decrypted with the guest sector number.
    Status read_data(uint64_t host, uint64_t guest_offset, uint8_t* dst, size_t n) {
        if (cipher_ == nullptr)
            return checked_read(host, dst, n);
        constexpr size_t SECTOR = 512;
        constexpr size_t CHUNK = 16 * 1024;
        alignas(16) uint8_t bounce[CHUNK + SECTOR];
        while (n > 0) {
            const size_t skip = static_cast<size_t>(guest_offset % SECTOR);
            const size_t take = n < CHUNK ? n : CHUNK;
            const size_t span = (skip + take + SECTOR - 1) / SECTOR * SECTOR;
            if (const Status st = checked_read(host - skip, bounce, span); st != Status::Ok)
                return st;
            cipher_->decrypt((guest_offset - skip) / SECTOR, bounce, span);
            __builtin_memcpy(dst, bounce + skip, take);
            dst += take;
            host += take;
            guest_offset += take;
            n -= take;
        }
        return Status::Ok;
    }

    // A read the block layer accepts (below 2^63), zeros past the end of the file.
    Status checked_read(uint64_t at, uint8_t* dst, size_t n) {
        uint64_t end;
        if (__builtin_add_overflow(at, n, &end) || end > QCOW_MAX_FILE_OFFSET)
            return Status::IoError;
        return read_padded(dev_, at, dst, n);
    }

    // decompress_cluster: the cluster whose L2 entry is `entry` into cluster_.
    Status decompress(uint64_t entry) {
        const uint64_t coffset = entry & img_.cluster_offset_mask;
        if (cached_valid_ && cached_offset_ == coffset)
            return Status::Ok;
        cached_valid_ = false;
        const uint64_t csize = (entry >> (63 - img_.cluster_bits)) & (img_.cluster_size - 1);
        if (const Status st = checked_read(coffset, compressed_, static_cast<size_t>(csize)); st != Status::Ok)
            return st;
        if (codecs_ == nullptr || codecs_->inflate == nullptr)
            return Status::Unsupported;
        size_t got = 0;
        const Status st = codecs_->inflate(compressed_, static_cast<size_t>(csize), cluster_,
                                           static_cast<size_t>(img_.cluster_size), &got, -12);
        // qemu's decompress_buffer: Z_STREAM_END or Z_BUF_ERROR, with a whole cluster of output.
        if ((st != Status::Ok && st != Status::TooLarge) || got != img_.cluster_size)
            return st == Status::NoMemory ? st : Status::IoError;
        cached_valid_ = true;
        cached_offset_ = coffset;
        return Status::Ok;
    }

    Status entry(uint64_t file_offset, uint64_t* out) {
        const uint64_t fsize = dev_.size();
        if (file_offset >= fsize || fsize - file_offset < 8 || (file_offset & 7) != 0) {
            uint8_t raw[8];
            if (file_offset > QCOW_MAX_FILE_OFFSET - 8)
                return Status::IoError;
            if (const Status st = read_padded(dev_, file_offset, raw, 8); st != Status::Ok)
                return st;
            *out = load_be64(raw);
            return Status::Ok;
        }
        const uint64_t entries = fsize / 8;
        return cache_.get(file_offset / 8, entries, out, [&](uint64_t first, uint64_t count, uint64_t* e) {
            uint8_t raw[QCOW_ENTRY_PAGE_ENTRIES * 8];
            if (const Status st = dev_.read(first * 8, raw, static_cast<size_t>(count * 8)); st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < count; ++i)
                e[i] = load_be64(raw + 8 * i);
            return Status::Ok;
        });
    }

    // get_cluster_offset without allocation: the first run of [pos, pos + len) with one answer,
    // inside one L2 table (compressed clusters one at a time).
    Status find(uint64_t pos, uint64_t len, Kind* kind, uint64_t* n_out, uint64_t* at) {
        const uint32_t l1_shift = img_.cluster_bits + img_.l2_bits;
        const uint64_t l1_index = pos >> l1_shift;
        const uint64_t l2_end = (l1_index + 1) << l1_shift;
        if (l2_end - pos < len)
            len = l2_end - pos;
        uint64_t l2_offset = 0;
        // qemu's L1 has l1_size entries; reads past it cannot happen (the virtual size bounds pos).
        if (const Status st = entry(img_.header.l1_table_offset + 8 * l1_index, &l2_offset); st != Status::Ok)
            return st;
        if (l2_offset == 0) {
            *kind = Kind::Unallocated;
            *n_out = len;
            return Status::Ok;
        }
        // qemu reads the whole L2 table: one the block layer refuses fails the request.
        uint64_t l2_last;
        if (__builtin_add_overflow(l2_offset, img_.l2_size * 8, &l2_last) || l2_last > QCOW_MAX_FILE_OFFSET)
            return Status::IoError;
        const uint64_t cs = img_.cluster_size;
        const uint64_t index = (pos >> img_.cluster_bits) & (img_.l2_size - 1);
        const uint64_t into = pos & (cs - 1);
        const uint64_t want = (into + len + cs - 1) / cs;
        const uint64_t end = index + want < img_.l2_size ? index + want : img_.l2_size;
        uint64_t first;
        if (const Status st = entry(l2_offset + 8 * index, &first); st != Status::Ok)
            return st;
        uint64_t i = index + 1;
        if ((first & QCOW_OFLAG_COMPRESSED) == 0) {
            uint64_t last = first;
            for (; i < end; ++i) {
                uint64_t e;
                if (const Status st = entry(l2_offset + 8 * i, &e); st != Status::Ok)
                    return st;
                if (last == 0) {
                    if (e != 0)
                        break;
                } else {
                    if ((e & QCOW_OFLAG_COMPRESSED) != 0 || last > UINT64_MAX - cs || e != last + cs)
                        break;
                    last = e;
                }
            }
        }
        const uint64_t run = (i - index) * cs - into;
        *n_out = run < len ? run : len;
        if (first == 0) {
            *kind = Kind::Unallocated;
        } else if (first & QCOW_OFLAG_COMPRESSED) {
            *kind = Kind::Compressed;
            *at = first;
        } else {
            *kind = Kind::Data;
            *at = first + into;
        }
        return Status::Ok;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    QcowImage img_;
    EntryCache cache_;
    const guest::Codecs* codecs_;
    uint8_t* cluster_;    // one decompressed cluster (qemu's cluster_cache)
    uint8_t* compressed_; // its compressed bytes (qemu's cluster_data)
    luks::SectorCipher* cipher_;
    uint32_t qemu_version_;
    bool cached_valid_ = false;
    uint64_t cached_offset_ = 0;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    guest::Allocator& a = *req.allocator;
    if (guest::refuse_snapshot_load(req, "qcow"))
        return Status::Unsupported;
    QcowImage* img = guest::arena_new<QcowImage>(a);
    if (img == nullptr)
        return Status::NoMemory;
    struct Free {
        guest::Allocator& a;
        QcowImage* p;
        ~Free() { guest::arena_delete(a, p); }
    } free_img{a, img};
    const char* why = nullptr;
    if (const Status st = qcow_load(*req.image, img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    luks::SectorCipher* cipher = nullptr;
    if (img->header.crypt_method == QCOW_CRYPT_AES) {
        if (req.secret == nullptr) {
            guest::say_reason(req.reasons, "Parameter 'encrypt.key-secret' is required for cipher");
            return Status::Unsupported;
        }
        cipher = guest::arena_new<luks::SectorCipher>(a);
        if (cipher == nullptr)
            return Status::NoMemory;
        // qemu's crypto/block-qcow.c: the secret's first 16 bytes (zero-padded, up to a NUL) are
        // the AES-128 key; CBC with plain64 IVs of guest sectors.
        uint8_t key[16] = {};
        for (size_t i = 0; i < 16 && i < req.secret_len && req.secret[i] != 0; ++i)
            key[i] = req.secret[i];
        luks::LuksHeader lh;
        lh.cipher_name = "aes";
        lh.cipher_mode = "cbc";
        lh.ivgen_alg = "plain64";
        const Status st = cipher->init(lh, key, sizeof key);
        __builtin_memset(key, 0, sizeof key);
        if (st != Status::Ok) {
            luks::delete_wiped(a, cipher);
            return st;
        }
    }
    uint8_t* cluster = static_cast<uint8_t*>(a.allocate(img->cluster_size, 16));
    uint8_t* compressed = static_cast<uint8_t*>(a.allocate(img->cluster_size, 16));
    EntryCache cache;
    if (cluster == nullptr || compressed == nullptr || !cache.init(a)) {
        if (cluster)
            a.deallocate(cluster, img->cluster_size);
        if (compressed)
            a.deallocate(compressed, img->cluster_size);
        luks::delete_wiped(a, cipher);
        return Status::NoMemory;
    }
    QcowReader* r =
        guest::arena_new<QcowReader>(a, *req.image, a, *img, cache, req.codecs, cluster, compressed, cipher,
                                     req.qemu_version);
    if (r == nullptr) {
        cache.release(a);
        a.deallocate(cluster, img->cluster_size);
        a.deallocate(compressed, img->cluster_size);
        luks::delete_wiped(a, cipher);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::qcow
