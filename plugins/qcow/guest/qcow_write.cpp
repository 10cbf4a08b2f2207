// convert -O qcow's writer (and convert -n's): qemu's allocating-write path (block/qcow.c
// get_cluster_offset with allocate = 1 and 2, qcow_co_pwritev, qcow_co_pwritev_compressed), so the
// file is byte-identical to qemu-img's.
//
// Layout rules reproduced: a missing L2 table is placed at the file's length rounded up to a
// cluster and written as zeros at once; a missing data cluster likewise at the rounded-up length,
// the file then truncated (extended) to the cluster's end; a compressed cluster at the file's
// length rounded up to a sector (bdrv_getlength counts sectors), its size in the L2 entry's top
// bits. qcow never copies backing data into a partly written cluster (its clusters are one sector
// when it has a backing file). Zero writes are data writes of zeros (qcow has no write_zeroes: the
// block layer's bounce-buffer fallback). The L1 and the L2 table in use are kept in memory and
// written when another L2 is needed and at finish.
#include "qcow_create.h"

#include "qcow_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

namespace instar::qcow {

using guest::Status;

namespace {

constexpr size_t ZERO_CHUNK = 64 * 1024; // zeros written at a time

class QcowWriter final : public guest::ImageWriter {
public:
    QcowWriter(guest::BlockDevice& dev, guest::Allocator& alloc, const QcowCreated& c, guest::CreateTarget* target,
               const guest::Codecs* codecs, bool existing)
        : dev_(dev), alloc_(alloc), c_(c), target_(target), codecs_(codecs), existing_(existing) {
        cs_ = uint64_t{1} << c.cluster_bits;
        l2_entries_ = uint64_t{1} << c.l2_bits;
        l2_bytes_ = l2_entries_ * 8;
        l1_bytes_ = c.l1_size * 8;
        file_size_ = c.file_size;
        written_end_ = c.file_size;
        offset_mask_ = (uint64_t{1} << (63 - c.cluster_bits)) - 1;
    }

    Status init() {
        l1_ = static_cast<uint64_t*>(alloc_.allocate(l1_bytes_, 8));
        l2_ = static_cast<uint64_t*>(alloc_.allocate(l2_bytes_, 8));
        buf_ = static_cast<uint8_t*>(alloc_.allocate(ZERO_CHUNK, 16));
        cluster_ = static_cast<uint8_t*>(alloc_.allocate(cs_, 16));
        packed_ = static_cast<uint8_t*>(alloc_.allocate(cs_, 16));
        if (!l1_ || !l2_ || !buf_ || !cluster_ || !packed_)
            return Status::NoMemory;
        __builtin_memset(l1_, 0, l1_bytes_);
        if (!existing_)
            return Status::Ok;
        for (uint64_t done = 0; done < l1_bytes_;) {
            const uint64_t n = l1_bytes_ - done < ZERO_CHUNK ? l1_bytes_ - done : ZERO_CHUNK;
            if (const Status st = read_padded(dev_, c_.l1_offset + done, buf_, static_cast<size_t>(n));
                st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < n / 8; ++i)
                l1_[done / 8 + i] = load_be64(buf_ + 8 * i);
            done += n;
        }
        return Status::Ok;
    }

    uint64_t cluster_size() const override { return cs_; }
    // bdrv_has_zero_init_1 for a new image; an existing one (convert -n) has none.
    bool zero_init() const override { return !existing_; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > c_.image_size || len > c_.image_size - offset)
            return Status::Invalid;
        return pwrite(offset, static_cast<const uint8_t*>(buf), len);
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > c_.image_size || len > c_.image_size - offset)
            return Status::Invalid;
        return pwrite(offset, nullptr, len);
    }

    // qcow_co_pwritev_compressed: one cluster (the image's last may be short, zero-padded), raw
    // deflate (window 12, level 6, memLevel 9); stored plain when that is not smaller.
    Status write_compressed(uint64_t offset, const void* buf, size_t len) override {
        // convert's end-of-data signal (an empty compressed write). qemu's qcow refuses it with
        // EINVAL, which makes qemu-img convert -c exit 1 without a message after writing a complete
        // image; instar finishes the image and succeeds (divergence qcow-compressed-exit-status).
        if (len == 0 && offset == 0)
            return Status::Ok;
        if (offset > c_.image_size || len > c_.image_size - offset || (offset & (cs_ - 1)) != 0)
            return Status::Invalid;
        if (len != cs_ && (len > cs_ || offset + len != c_.image_size))
            return Status::Invalid;
        if (codecs_ == nullptr || codecs_->deflate == nullptr)
            return Status::Unsupported;
        __builtin_memcpy(cluster_, buf, len);
        if (len < cs_)
            __builtin_memset(cluster_ + len, 0, static_cast<size_t>(cs_ - len));
        size_t out_len = 0;
        const Status cst = codecs_->deflate(cluster_, static_cast<size_t>(cs_), packed_,
                                            static_cast<size_t>(cs_ - 1), &out_len, -12, 6);
        if (cst == Status::TooLarge)
            return pwrite(offset, static_cast<const uint8_t*>(buf), len);
        if (cst != Status::Ok)
            return cst;
        uint64_t* slot;
        if (const Status st = l2_slot(offset, &slot); st != Status::Ok)
            return st;
        uint64_t at;
        if (*slot == 0) {
            // bdrv_getlength: the file's length in whole sectors.
            at = (file_size_ + 511) & ~uint64_t{511};
            *slot = at | QCOW_OFLAG_COMPRESSED | uint64_t{out_len} << (63 - c_.cluster_bits);
            l2_dirty_ = true;
        } else {
            // qemu writes over whatever the entry names without updating it.
            at = *slot & offset_mask_;
        }
        if (const Status st = put(at, packed_, out_len); st != Status::Ok)
            return st;
        if (at + out_len > file_size_)
            file_size_ = at + out_len;
        return Status::Ok;
    }

    Status finish() override {
        if (const Status st = flush_l2(); st != Status::Ok)
            return st;
        for (uint64_t done = 0; done < l1_bytes_;) {
            const uint64_t n = l1_bytes_ - done < ZERO_CHUNK ? l1_bytes_ - done : ZERO_CHUNK;
            for (uint64_t i = 0; i < n / 8; ++i)
                store_be64(buf_ + 8 * i, l1_[done / 8 + i]);
            if (const Status st = put(c_.l1_offset + done, buf_, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            done += n;
        }
        // Clusters allocated by truncation end the file with a hole.
        if (written_end_ < file_size_) {
            if (target_ != nullptr) {
                if (const Status st = target_->set_length(dev_, file_size_, guest::Prealloc::Off); st != Status::Ok)
                    return st;
                written_end_ = file_size_;
                return Status::Ok;
            }
            return put_zeros(written_end_, file_size_ - written_end_);
        }
        return Status::Ok;
    }

    void close() override {
        if (l1_)
            alloc_.deallocate(l1_, l1_bytes_);
        if (l2_)
            alloc_.deallocate(l2_, l2_bytes_);
        if (buf_)
            alloc_.deallocate(buf_, ZERO_CHUNK);
        if (cluster_)
            alloc_.deallocate(cluster_, cs_);
        if (packed_)
            alloc_.deallocate(packed_, cs_);
        guest::arena_delete(alloc_, this);
    }

private:
    uint64_t align_up(uint64_t v) const { return (v + cs_ - 1) & ~(cs_ - 1); }

    // Every write to the file goes through here, so the writer knows how long the file is (a new
    // image's device does not say).
    Status put(uint64_t at, const void* p, size_t n) {
        if (const Status st = dev_.write(at, p, n); st != Status::Ok)
            return st;
        if (at + n > written_end_)
            written_end_ = at + n;
        return Status::Ok;
    }

    Status put_zeros(uint64_t at, uint64_t n) {
        __builtin_memset(buf_, 0, ZERO_CHUNK);
        while (n > 0) {
            const uint64_t k = n < ZERO_CHUNK ? n : ZERO_CHUNK;
            if (const Status st = put(at, buf_, static_cast<size_t>(k)); st != Status::Ok)
                return st;
            at += k;
            n -= k;
        }
        return Status::Ok;
    }

    Status flush_l2() {
        if (!l2_dirty_)
            return Status::Ok;
        for (uint64_t done = 0; done < l2_bytes_;) {
            const uint64_t n = l2_bytes_ - done < ZERO_CHUNK ? l2_bytes_ - done : ZERO_CHUNK;
            for (uint64_t i = 0; i < n / 8; ++i)
                store_be64(buf_ + 8 * i, l2_[done / 8 + i]);
            if (const Status st = put(l2_offset_ + done, buf_, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            done += n;
        }
        l2_dirty_ = false;
        return Status::Ok;
    }

    // The L2 entry for `offset`, its table allocated (at the rounded-up file length) when missing.
    Status l2_slot(uint64_t offset, uint64_t** slot) {
        const uint64_t l1_index = offset >> (c_.cluster_bits + c_.l2_bits);
        if (l1_index >= c_.l1_size)
            return Status::Invalid;
        uint64_t l2_offset = l1_[l1_index];
        if (l2_offset == 0) {
            if (const Status st = flush_l2(); st != Status::Ok)
                return st;
            l2_offset = align_up(file_size_);
            uint64_t end;
            if (__builtin_add_overflow(l2_offset, l2_bytes_, &end) || end > (uint64_t{1} << 62))
                return Status::TooLarge;
            l1_[l1_index] = l2_offset;
            __builtin_memset(l2_, 0, l2_bytes_);
            l2_offset_ = l2_offset;
            l2_dirty_ = true;
            file_size_ = end;
        } else if (l2_offset != l2_offset_) {
            if (const Status st = flush_l2(); st != Status::Ok)
                return st;
            uint64_t end;
            if (__builtin_add_overflow(l2_offset, l2_bytes_, &end) || end > QCOW_MAX_FILE_OFFSET)
                return Status::IoError;
            l2_offset_ = 0;
            for (uint64_t done = 0; done < l2_bytes_;) {
                const uint64_t n = l2_bytes_ - done < ZERO_CHUNK ? l2_bytes_ - done : ZERO_CHUNK;
                if (const Status st = read_padded(dev_, l2_offset + done, buf_, static_cast<size_t>(n));
                    st != Status::Ok)
                    return st;
                for (uint64_t i = 0; i < n / 8; ++i)
                    l2_[done / 8 + i] = load_be64(buf_ + 8 * i);
                done += n;
            }
            l2_offset_ = l2_offset;
        }
        *slot = &l2_[(offset >> c_.cluster_bits) & (l2_entries_ - 1)];
        return Status::Ok;
    }

    // A compressed cluster partly overwritten: qemu decompresses it into a new cluster first.
    Status decompress_into(uint64_t entry, uint64_t at) {
        const uint64_t coffset = entry & offset_mask_;
        const uint64_t csize = (entry >> (63 - c_.cluster_bits)) & (cs_ - 1);
        uint64_t end;
        if (__builtin_add_overflow(coffset, csize, &end) || end > QCOW_MAX_FILE_OFFSET)
            return Status::IoError;
        if (const Status st = read_padded(dev_, coffset, packed_, static_cast<size_t>(csize)); st != Status::Ok)
            return st;
        if (codecs_ == nullptr || codecs_->inflate == nullptr)
            return Status::Unsupported;
        size_t got = 0;
        const Status st = codecs_->inflate(packed_, static_cast<size_t>(csize), cluster_, static_cast<size_t>(cs_),
                                           &got, -12);
        if ((st != Status::Ok && st != Status::TooLarge) || got != cs_)
            return Status::IoError;
        return put(at, cluster_, static_cast<size_t>(cs_));
    }

    // qcow_co_pwritev (data nullptr: zeros), cluster by cluster.
    Status pwrite(uint64_t offset, const uint8_t* data, uint64_t len) {
        while (len > 0) {
            const uint64_t into = offset & (cs_ - 1);
            const uint64_t n = cs_ - into < len ? cs_ - into : len;
            uint64_t* slot;
            if (const Status st = l2_slot(offset, &slot); st != Status::Ok)
                return st;
            uint64_t cluster = *slot;
            if (cluster == 0 || (cluster & QCOW_OFLAG_COMPRESSED) != 0) {
                const uint64_t at = align_up(file_size_);
                uint64_t end;
                if (__builtin_add_overflow(at, cs_, &end) || end > (uint64_t{1} << 62))
                    return Status::TooLarge;
                if ((cluster & QCOW_OFLAG_COMPRESSED) != 0 && n < cs_)
                    if (const Status st = decompress_into(cluster, at); st != Status::Ok)
                        return st;
                file_size_ = end;
                *slot = at;
                l2_dirty_ = true;
                cluster = at;
            } else if ((cluster & 511) != 0) {
                return Status::IoError;
            }
            uint64_t dst;
            if (__builtin_add_overflow(cluster, into + n, &dst) || dst > QCOW_MAX_FILE_OFFSET)
                return Status::IoError;
            if (data != nullptr) {
                if (const Status st = put(cluster + into, data, static_cast<size_t>(n)); st != Status::Ok)
                    return st;
                data += n;
            } else if (const Status st = put_zeros(cluster + into, n); st != Status::Ok) {
                return st;
            }
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    guest::BlockDevice& dev_;
    guest::Allocator& alloc_;
    QcowCreated c_;
    guest::CreateTarget* target_;
    const guest::Codecs* codecs_;
    bool existing_;
    uint64_t cs_ = 0;
    uint64_t l2_entries_ = 0;
    uint64_t l2_bytes_ = 0;
    uint64_t l1_bytes_ = 0;
    uint64_t file_size_ = 0;   // qemu's view of the file's length (truncations included)
    uint64_t written_end_ = 0; // the end of what has been written (or set_length'd) so far
    uint64_t offset_mask_ = 0;
    uint64_t* l1_ = nullptr;
    uint64_t* l2_ = nullptr;
    uint64_t l2_offset_ = 0; // the table in l2_, 0 = none
    bool l2_dirty_ = false;
    uint8_t* buf_ = nullptr;
    uint8_t* cluster_ = nullptr;
    uint8_t* packed_ = nullptr;
};

} // namespace

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    QcowCreated c;
    if (const Status st = create_image(req, target, &c); st != Status::Ok)
        return st;
    if (c.l1_size * 8 > QCOW_MAX_WRITER_L1_BYTES)
        return guest::create_fail(target, Status::TooLarge,
                                  "instar writes qcow images whose L1 table is at most QCOW_MAX_WRITER_L1_BYTES "
                                  "(32 MiB, 8 TiB of disk)");
    QcowWriter* w = guest::arena_new<QcowWriter>(*req.allocator, target.image(), *req.allocator, c, &target,
                                                req.codecs, false);
    if (w == nullptr)
        return Status::NoMemory;
    if (const Status st = w->init(); st != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    guest::Allocator& a = *req.allocator;
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
    if (img->header.crypt_method != QCOW_CRYPT_NONE) {
        guest::say_reason(req.reasons, "instar does not write into qcow images with AES encryption");
        return Status::Unsupported;
    }
    if (img->l1_size * 8 > QCOW_MAX_WRITER_L1_BYTES) {
        guest::say_reason(req.reasons, "instar writes into qcow images whose L1 table is at most "
                                       "QCOW_MAX_WRITER_L1_BYTES (32 MiB, 8 TiB of disk)");
        return Status::TooLarge;
    }
    const QcowCreated c{img->cluster_bits,   img->l2_bits,  img->virtual_size, img->header.l1_table_offset,
                        img->l1_size,        req.image->size()};
    QcowWriter* w = guest::arena_new<QcowWriter>(a, *req.image, a, c, nullptr, req.codecs, true);
    if (w == nullptr)
        return Status::NoMemory;
    if (const Status st = w->init(); st != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

} // namespace instar::qcow
