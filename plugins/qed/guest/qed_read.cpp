// The QED reader (qed_read.h).
#include "qed_read.h"

#include "qed_bytes.h"
#include "qed_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/page_cache.h>

namespace instar::qed {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

// Every table entry in the file, addressed by file offset / 8 (tables are cluster-aligned, so a
// 4 KiB page never straddles two tables).
using EntryCache = guest::TablePageCache<uint64_t, QED_ENTRY_PAGE_ENTRIES, QED_ENTRY_CACHE_PAGES>;

enum class Kind { Data, Zero, Unallocated };

class QedReader final : public guest::ImageReader {
public:
    QedReader(BlockDevice& dev, guest::Allocator& alloc, const QedImage& img, const EntryCache& cache)
        : dev_(dev), alloc_(alloc), img_(img), cache_(cache) {}

    uint64_t virtual_size() const override { return img_.header.image_size; }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= virtual_size() || length == 0 || length > virtual_size() - offset)
            return Status::Invalid;
        Kind k;
        uint64_t n, at;
        if (const Status st = find(offset, length, &k, &n, &at); st != Status::Ok)
            return st;
        *out = Extent{};
        out->length = n;
        if (k == Kind::Data) {
            out->allocation = Allocation::Data;
            out->flags = guest::EXTENT_OFFSET_VALID;
            out->offset = at;
        } else {
            out->allocation = k == Kind::Zero ? Allocation::Zero : Allocation::Unallocated;
        }
        return Status::Ok;
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
            if (k == Kind::Data) {
                // Only the run's first cluster was checked to lie in the file (as qemu); past the
                // end of the file qemu's block layer reads zeros.
                const uint64_t fsize = dev_.size();
                const uint64_t in = at < fsize ? (fsize - at < n ? fsize - at : n) : 0;
                if (in > 0)
                    if (const Status st = dev_.read(at, dst, static_cast<size_t>(in)); st != Status::Ok)
                        return st;
                if (in < n)
                    __builtin_memset(dst + in, 0, static_cast<size_t>(n - in));
            } else {
                __builtin_memset(dst, 0, static_cast<size_t>(n));
            }
            dst += n;
            offset += n;
            len -= static_cast<size_t>(n);
        }
        return Status::Ok;
    }

    void close() override {
        cache_.release(alloc_);
        guest::arena_delete(alloc_, this);
    }

private:
    // qemu's qed_find_cluster answers -EINVAL for a table entry outside the file; the engine words
    // the failure as qemu-img does ("error while reading block status at offset N: Invalid
    // argument"), so the reader adds no reason of its own. `text` documents the case.
    Status fail(const char* text) {
        (void)text;
        return Status::Invalid;
    }

    Status entry(uint64_t file_offset, uint64_t* out) {
        const uint64_t entries = dev_.size() / 8;
        return cache_.get(file_offset / 8, entries, out, [&](uint64_t first, uint64_t count, uint64_t* e) {
            uint8_t raw[QED_ENTRY_PAGE_ENTRIES * 8];
            if (const Status st = dev_.read(first * 8, raw, static_cast<size_t>(count * 8)); st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < count; ++i)
                e[i] = load_le64(raw + 8 * i);
            return Status::Ok;
        });
    }

    // qed_find_cluster: the first run of [pos, pos + len) with one answer, inside one L2 table.
    Status find(uint64_t pos, uint64_t len, Kind* kind, uint64_t* n_out, uint64_t* at) {
        const uint64_t l1_index = pos >> img_.l1_shift;
        const uint64_t l2_end = (l1_index + 1) << img_.l1_shift;
        if (l2_end - pos < len)
            len = l2_end - pos;
        uint64_t l2_offset;
        if (const Status st = entry(img_.header.l1_table_offset + 8 * l1_index, &l2_offset); st != Status::Ok)
            return st;
        if (l2_offset == 0) {
            *kind = Kind::Unallocated;
            *n_out = len;
            return Status::Ok;
        }
        if (!img_.check_table_offset(l2_offset))
            return fail("QED L1 table entry points outside the image file (qemu: Invalid argument)");
        const uint64_t cs = img_.cluster_size();
        const uint64_t index = (pos >> img_.l2_shift) & img_.l2_mask;
        const uint64_t into = img_.offset_into_cluster(pos);
        const uint64_t want = (into + len + cs - 1) / cs;
        const uint64_t end = index + want < img_.table_nelems ? index + want : img_.table_nelems;
        uint64_t first;
        if (const Status st = entry(l2_offset + 8 * index, &first); st != Status::Ok)
            return st;
        uint64_t last = first;
        uint64_t i = index + 1;
        for (; i < end; ++i) {
            uint64_t e;
            if (const Status st = entry(l2_offset + 8 * i, &e); st != Status::Ok)
                return st;
            if (last == 0 || last == 1) {
                if (e != last)
                    break;
            } else {
                if (e != last + cs)
                    break;
                last = e;
            }
        }
        const uint64_t run = (i - index) * cs - into;
        *n_out = run < len ? run : len;
        if (first == 0) {
            *kind = Kind::Unallocated;
        } else if (first == 1) {
            *kind = Kind::Zero;
        } else if (img_.check_cluster_offset(first)) {
            *kind = Kind::Data;
            *at = first + into;
        } else {
            return fail("QED L2 table entry points outside the image file (qemu: Invalid argument)");
        }
        return Status::Ok;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    QedImage img_;
    EntryCache cache_;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "qed"))
        return Status::Unsupported;
    QedImage* img = guest::arena_new<QedImage>(*req.allocator);
    if (img == nullptr)
        return Status::NoMemory;
    const char* why = nullptr;
    if (const Status st = qed_load(*req.image, img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        guest::arena_delete(*req.allocator, img);
        return st;
    }
    EntryCache cache;
    if (!cache.init(*req.allocator)) {
        guest::arena_delete(*req.allocator, img);
        return Status::NoMemory;
    }
    QedReader* r = guest::arena_new<QedReader>(*req.allocator, *req.image, *req.allocator, *img, cache);
    guest::arena_delete(*req.allocator, img);
    if (r == nullptr) {
        cache.release(*req.allocator);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::qed
