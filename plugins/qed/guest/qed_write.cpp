// convert -O qed's writer: qemu's allocating-write path (block/qed.c qed_aio_write_alloc,
// qed_aio_write_cow, qed_aio_write_l2_update; bdrv_qed_co_pwrite_zeroes and the block layer's
// fallback for unaligned zero writes), so the file is byte-identical to qemu-img's.
//
// Layout rules reproduced: clusters are allocated at the end of the file (file_size grows by whole
// clusters); a write into clusters without one allocates them all contiguously, fills the rest of
// the first and last cluster from the backing file (zeros without one), and when the L2 table is
// missing, a new zeroed table is allocated after the data. Tables are kept in memory (the L1, one
// L2) and written when another L2 table is needed and at finish; their final bytes are what qemu's
// piecewise writes leave.
#include "qed_create.h"

#include "qed_bytes.h"
#include "qed_check.h"
#include "qed_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

namespace instar::qed {

using guest::Status;

namespace {

constexpr size_t ZERO_CHUNK = 64 * 1024; // zeros and backing bytes copied at a time

class QedWriter final : public guest::ImageWriter {
public:
    // existing_file_size: 0 for a new image (create_writer), else qemu's file_size of the opened
    // image (convert -n), whose L1 table is then read from the file.
    QedWriter(guest::BlockDevice& dev, guest::Allocator& alloc, const QedCreated& c, uint64_t existing_file_size = 0)
        : dev_(dev), alloc_(alloc), c_(c), existing_(existing_file_size != 0) {
        cs_ = c.cluster_size;
        table_bytes_ = uint64_t{c.cluster_size} * c.table_size;
        nelems_ = table_bytes_ / 8;
        l2_shift_ = static_cast<uint32_t>(__builtin_ctz(c.cluster_size));
        l1_shift_ = l2_shift_ + static_cast<uint32_t>(__builtin_ctzll(nelems_));
        file_size_ = existing_ ? existing_file_size : c.l1_offset + table_bytes_;
    }

    Status init() {
        l1_ = static_cast<uint64_t*>(alloc_.allocate(table_bytes_, 8));
        l2_ = static_cast<uint64_t*>(alloc_.allocate(table_bytes_, 8));
        buf_ = static_cast<uint8_t*>(alloc_.allocate(ZERO_CHUNK, 8));
        if (!l1_ || !l2_ || !buf_)
            return Status::NoMemory;
        uint8_t raw[QED_HEADER_SIZE];
        if (const Status st = dev_.read(0, raw, sizeof raw); st != Status::Ok)
            return st;
        qed_header_decode(raw, &header_);
        if (!existing_) {
            __builtin_memset(l1_, 0, table_bytes_);
            return Status::Ok;
        }
        for (uint64_t done = 0; done < table_bytes_;) {
            const uint64_t n = table_bytes_ - done < ZERO_CHUNK ? table_bytes_ - done : ZERO_CHUNK;
            if (const Status st = dev_.read(c_.l1_offset + done, buf_, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < n / 8; ++i)
                l1_[done / 8 + i] = load_le64(buf_ + 8 * i);
            done += n;
        }
        return Status::Ok;
    }

    uint64_t cluster_size() const override { return cs_; }
    // bdrv_has_zero_init_1 for a new image; an existing one (convert -n) has none.
    bool zero_init() const override { return !existing_; }
    void set_backing(guest::ImageReader* backing) override { backing_ = backing; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > c_.image_size || len > c_.image_size - offset)
            return Status::Invalid;
        return request(offset, len, static_cast<const uint8_t*>(buf), false);
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > c_.image_size || len > c_.image_size - offset)
            return Status::Invalid;
        // The block layer (bdrv_co_do_pwrite_zeroes, pwrite_zeroes_alignment = cluster size): an
        // unaligned head and tail go to qed as writes of zeros, the aligned middle as zero clusters.
        const uint64_t end = offset + len;
        uint64_t pos = offset;
        if (pos % cs_ != 0 && pos < end) {
            const uint64_t to = (pos / cs_ + 1) * cs_;
            const uint64_t n = (to < end ? to : end) - pos;
            if (const Status st = write_zero_data(pos, n); st != Status::Ok)
                return st;
            pos += n;
        }
        const uint64_t mid_end = end / cs_ * cs_;
        if (pos < mid_end) {
            if (const Status st = request(pos, mid_end - pos, nullptr, true); st != Status::Ok)
                return st;
            pos = mid_end;
        }
        if (pos < end)
            return write_zero_data(pos, end - pos);
        return Status::Ok;
    }

    Status write_compressed(uint64_t, const void*, size_t) override { return Status::Unsupported; }

    Status finish() override {
        if (const Status st = flush_l2(); st != Status::Ok)
            return st;
        if (const Status st = write_l1(); st != Status::Ok)
            return st;
        // bdrv_qed_close: a clean shutdown needs no check.
        if ((header_.features & QED_F_NEED_CHECK) != 0) {
            header_.features &= ~QED_F_NEED_CHECK;
            uint8_t raw[QED_HEADER_SIZE];
            qed_header_encode(header_, raw);
            return dev_.write(0, raw, sizeof raw);
        }
        return Status::Ok;
    }

    Status write_l1() {
        uint8_t* raw = buf_;
        for (uint64_t done = 0; done < table_bytes_;) {
            const uint64_t n = table_bytes_ - done < ZERO_CHUNK ? table_bytes_ - done : ZERO_CHUNK;
            for (uint64_t i = 0; i < n / 8; ++i)
                store_le64(raw + 8 * i, l1_[done / 8 + i]);
            if (const Status st = dev_.write(c_.l1_offset + done, raw, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            done += n;
        }
        return Status::Ok;
    }

    void close() override {
        if (l1_)
            alloc_.deallocate(l1_, table_bytes_);
        if (l2_)
            alloc_.deallocate(l2_, table_bytes_);
        if (buf_)
            alloc_.deallocate(buf_, ZERO_CHUNK);
        guest::arena_delete(alloc_, this);
    }

private:
    // A write of zeros as data (the block layer's bounce-buffer fallback): allocates like any write.
    Status write_zero_data(uint64_t pos, uint64_t n) { return request(pos, n, nullptr, false); }

    Status flush_l2() {
        if (!l2_dirty_)
            return Status::Ok;
        uint8_t* raw = buf_;
        for (uint64_t done = 0; done < table_bytes_;) {
            const uint64_t n = table_bytes_ - done < ZERO_CHUNK ? table_bytes_ - done : ZERO_CHUNK;
            for (uint64_t i = 0; i < n / 8; ++i)
                store_le64(raw + 8 * i, l2_[done / 8 + i]);
            if (const Status st = dev_.write(l2_offset_ + done, raw, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            done += n;
        }
        l2_dirty_ = false;
        return Status::Ok;
    }

    // qemu's qed_check_cluster_offset / qed_check_table_offset against the growing file_size.
    bool valid_cluster(uint64_t offset) const {
        return (offset & (cs_ - 1)) == 0 && offset >= uint64_t{header_.header_size} * cs_ && offset < file_size_;
    }
    bool valid_table(uint64_t offset) const {
        const uint64_t end = offset + (uint64_t{c_.table_size} - 1) * cs_;
        return end > offset && valid_cluster(offset) && valid_cluster(end);
    }

    // qed_should_set_need_check before an allocating write: without a backing file, the image is
    // marked as needing a check until finish() (qemu's close) clears it.
    Status mark_need_check() {
        if (c_.has_backing || (header_.features & QED_F_NEED_CHECK) != 0)
            return Status::Ok;
        header_.features |= QED_F_NEED_CHECK;
        uint8_t raw[QED_HEADER_SIZE];
        qed_header_encode(header_, raw);
        return dev_.write(0, raw, sizeof raw);
    }

    Status load_l2(uint64_t offset) {
        if (l2_offset_ == offset)
            return Status::Ok;
        if (!valid_table(offset))
            return Status::Invalid; // qemu's qed_find_cluster: -EINVAL
        if (const Status st = flush_l2(); st != Status::Ok)
            return st;
        l2_offset_ = 0;
        uint8_t* raw = buf_;
        for (uint64_t done = 0; done < table_bytes_;) {
            const uint64_t n = table_bytes_ - done < ZERO_CHUNK ? table_bytes_ - done : ZERO_CHUNK;
            if (const Status st = dev_.read(offset + done, raw, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < n / 8; ++i)
                l2_[done / 8 + i] = load_le64(raw + 8 * i);
            done += n;
        }
        l2_offset_ = offset;
        return Status::Ok;
    }

    Status alloc_clusters(uint64_t n, uint64_t* at) {
        uint64_t bytes, next;
        if (__builtin_mul_overflow(n, cs_, &bytes) || __builtin_add_overflow(file_size_, bytes, &next))
            return Status::TooLarge;
        *at = file_size_;
        file_size_ = next;
        return Status::Ok;
    }

    // Bytes [pos, pos + n) of the virtual disk as qemu's qed_read_backing_file gives them (the
    // backing image, zeros past its end or without one), written at file offset `at`.
    Status copy_from_backing(uint64_t pos, uint64_t n, uint64_t at) {
        while (n > 0) {
            const uint64_t k = n < ZERO_CHUNK ? n : ZERO_CHUNK;
            __builtin_memset(buf_, 0, static_cast<size_t>(k));
            if (backing_ != nullptr) {
                const uint64_t bsize = backing_->virtual_size();
                if (pos < bsize) {
                    const uint64_t in = bsize - pos < k ? bsize - pos : k;
                    if (const Status st = backing_->read(pos, buf_, static_cast<size_t>(in)); st != Status::Ok)
                        return st;
                }
            }
            if (const Status st = dev_.write(at, buf_, static_cast<size_t>(k)); st != Status::Ok)
                return st;
            pos += k;
            at += k;
            n -= k;
        }
        return Status::Ok;
    }

    // Data (or zeros when data is nullptr and !zero_clusters) for [pos, pos + n) at file offset at.
    Status put_data(uint64_t at, const uint8_t* data, uint64_t n) {
        if (data != nullptr)
            return dev_.write(at, data, static_cast<size_t>(n));
        while (n > 0) {
            const uint64_t k = n < ZERO_CHUNK ? n : ZERO_CHUNK;
            __builtin_memset(buf_, 0, static_cast<size_t>(k));
            if (const Status st = dev_.write(at, buf_, static_cast<size_t>(k)); st != Status::Ok)
                return st;
            at += k;
            n -= k;
        }
        return Status::Ok;
    }

    // qed_aio_next_io for one request: data (zero_clusters false; data nullptr = zeros) or zero
    // clusters (bdrv_qed_co_pwrite_zeroes; cluster-aligned).
    Status request(uint64_t pos, uint64_t len, const uint8_t* data, bool zero_clusters) {
        const uint64_t end = pos + len;
        while (pos < end) {
            uint64_t n = end - pos;
            const uint64_t l1_index = pos >> l1_shift_;
            const uint64_t l2_end = (l1_index + 1) << l1_shift_;
            if (l2_end - pos < n)
                n = l2_end - pos;
            const uint64_t into = pos % cs_;
            const uint64_t index = (pos >> l2_shift_) & (nelems_ - 1);
            uint64_t kind; // 0 unallocated (L1 or L2), 1 zero, else the first data cluster
            bool need_l2 = false;
            if (l1_[l1_index] == 0) {
                kind = 0;
                need_l2 = true;
            } else {
                if (const Status st = load_l2(l1_[l1_index]); st != Status::Ok)
                    return st;
                const uint64_t want = (into + n + cs_ - 1) / cs_;
                const uint64_t stop = index + want < nelems_ ? index + want : nelems_;
                kind = l2_[index];
                uint64_t last = kind, i = index + 1;
                for (; i < stop; ++i) {
                    const uint64_t e = l2_[i];
                    if (last == 0 || last == 1) {
                        if (e != last)
                            break;
                    } else {
                        if (e != last + cs_)
                            break;
                        last = e;
                    }
                }
                const uint64_t run = (i - index) * cs_ - into;
                if (run < n)
                    n = run;
            }
            const uint64_t nclusters = (into + n + cs_ - 1) / cs_;
            if (kind > 1 && !valid_cluster(kind))
                return Status::Invalid; // qemu's qed_find_cluster: -EINVAL
            if (kind == 0 || (kind == 1 && !zero_clusters))
                if (const Status st = mark_need_check(); st != Status::Ok)
                    return st;
            if (kind > 1) {
                // Allocated: written in place (zero requests write zeros there too).
                if (const Status st = put_data(kind + into, zero_clusters ? nullptr : data, n); st != Status::Ok)
                    return st;
            } else if (zero_clusters) {
                if (kind == 0) { // already-zero clusters are skipped
                    if (need_l2)
                        if (const Status st = new_l2(l1_index); st != Status::Ok)
                            return st;
                    for (uint64_t i = 0; i < nclusters; ++i)
                        l2_[index + i] = 1;
                    l2_dirty_ = true;
                }
            } else {
                uint64_t at;
                if (const Status st = alloc_clusters(nclusters, &at); st != Status::Ok)
                    return st;
                const uint64_t start = pos - into;
                if (const Status st = copy_from_backing(start, into, at); st != Status::Ok)
                    return st;
                const uint64_t tail_from = pos + n;
                const uint64_t tail_to = (tail_from + cs_ - 1) / cs_ * cs_;
                if (const Status st = copy_from_backing(tail_from, tail_to - tail_from, at + into + n); st != Status::Ok)
                    return st;
                if (const Status st = put_data(at + into, data, n); st != Status::Ok)
                    return st;
                if (need_l2)
                    if (const Status st = new_l2(l1_index); st != Status::Ok)
                        return st;
                for (uint64_t i = 0; i < nclusters; ++i)
                    l2_[index + i] = at + i * cs_;
                l2_dirty_ = true;
            }
            pos += n;
            if (data != nullptr)
                data += n;
        }
        return Status::Ok;
    }

    // qed_new_l2_table: a zeroed table allocated at the end of the file, linked from the L1.
    Status new_l2(uint64_t l1_index) {
        if (const Status st = flush_l2(); st != Status::Ok)
            return st;
        uint64_t at;
        if (const Status st = alloc_clusters(c_.table_size, &at); st != Status::Ok)
            return st;
        __builtin_memset(l2_, 0, table_bytes_);
        l2_offset_ = at;
        l2_dirty_ = true;
        l1_[l1_index] = at;
        return Status::Ok;
    }

    guest::BlockDevice& dev_;
    guest::Allocator& alloc_;
    QedCreated c_;
    bool existing_;
    QedHeader header_{};
    uint64_t cs_ = 0;
    uint64_t table_bytes_ = 0;
    uint64_t nelems_ = 0;
    uint32_t l2_shift_ = 0;
    uint32_t l1_shift_ = 0;
    uint64_t file_size_ = 0;
    uint64_t* l1_ = nullptr;
    uint64_t* l2_ = nullptr;
    uint64_t l2_offset_ = 0; // the table in l2_, 0 = none
    bool l2_dirty_ = false;
    uint8_t* buf_ = nullptr;
    guest::ImageReader* backing_ = nullptr;
};

} // namespace

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    guest::BlockDevice& dev = *req.image;
    QedImage* img = guest::arena_new<QedImage>(*req.allocator);
    if (img == nullptr)
        return Status::NoMemory;
    struct Free {
        guest::Allocator& a;
        QedImage* p;
        ~Free() { guest::arena_delete(a, p); }
    } free_img{*req.allocator, img};
    const char* why = nullptr;
    if (const Status st = qed_load(dev, img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    QedImage& s = *img;
    if (s.table_bytes() > QED_MAX_TABLE_BYTES) {
        guest::say_reason(req.reasons, "instar writes into QED images whose tables (cluster_size x table_size) are at "
                                       "most QED_MAX_TABLE_BYTES (32 MiB)");
        return Status::TooLarge;
    }
    // qemu's read-write open: unknown autoclear bits cleared, a dirty image checked and repaired.
    if (s.header.autoclear_features != 0) {
        s.header.autoclear_features = 0;
        if (const Status st = qed_write_header(dev, s.header); st != Status::Ok) {
            guest::say_reason(req.reasons, "Failed to update header");
            return st;
        }
    }
    if ((s.header.features & QED_F_NEED_CHECK) != 0) {
        guest::CheckResult r;
        if (qed_check_image(dev, *req.allocator, s, true, QedFlush{nullptr, nullptr}, &r, nullptr) != 0) {
            guest::say_reason(req.reasons, "Image corrupted");
            return Status::Corrupt;
        }
    }
    const QedCreated c{s.header.cluster_size, s.header.table_size, s.header.image_size, s.header.l1_table_offset,
                       s.has_backing};
    QedWriter* w = guest::arena_new<QedWriter>(*req.allocator, dev, *req.allocator, c,
                                              s.file_size == 0 ? uint64_t{1} : s.file_size);
    if (w == nullptr)
        return Status::NoMemory;
    if (const Status st = w->init(); st != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr)
        return Status::Invalid;
    QedCreated c;
    if (const Status st = create_image(req, target, &c); st != Status::Ok)
        return st;
    if (uint64_t{c.cluster_size} * c.table_size > QED_MAX_TABLE_BYTES)
        return guest::create_fail(target, Status::TooLarge,
                                  "instar writes QED images whose tables (cluster_size x table_size) are at most "
                                  "QED_MAX_TABLE_BYTES (32 MiB)");
    QedWriter* w = guest::arena_new<QedWriter>(*req.allocator, target.image(), *req.allocator, c);
    if (w == nullptr)
        return Status::NoMemory;
    if (const Status st = w->init(); st != Status::Ok) {
        w->close();
        return st;
    }
    *out = w;
    return Status::Ok;
}

} // namespace instar::qed
