// The Parallels reader (prl_read.h).
#include "prl_read.h"

#include "prl_header.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/page_cache.h>

namespace instar::parallels {
namespace {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::Status;

using BatCache = guest::TablePageCache<uint32_t, PRL_BAT_PAGE, PRL_BAT_CACHE_PAGES>;

class PrlReader final : public guest::ImageReader {
public:
    PrlReader(BlockDevice& dev, guest::Allocator& alloc, const PrlImage& img, const BatCache& bat)
        : dev_(dev), alloc_(alloc), img_(img), bat_(bat) {}

    uint64_t virtual_size() const override { return img_.virtual_size(); }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (offset >= virtual_size() || length == 0 || length > virtual_size() - offset)
            return Status::Invalid;
        uint64_t n, at;
        bool data;
        if (const Status st = find(offset, length, &data, &n, &at); st != Status::Ok)
            return st;
        *out = Extent{};
        out->length = n;
        if (data) {
            out->allocation = Allocation::Data;
            out->flags = guest::EXTENT_OFFSET_VALID;
            out->offset = at;
        } else {
            out->allocation = Allocation::Unallocated;
        }
        return Status::Ok;
    }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > virtual_size() || len > virtual_size() - offset)
            return Status::Invalid;
        uint8_t* dst = static_cast<uint8_t*>(buf);
        while (len > 0) {
            uint64_t n, at;
            bool data;
            if (const Status st = find(offset, len, &data, &n, &at); st != Status::Ok)
                return st;
            if (data) {
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
        bat_.release(alloc_);
        guest::arena_delete(alloc_, this);
    }

private:
    Status entry(uint64_t i, uint32_t* out) {
        return bat_.get(i, img_.bat_entries, out, [&](uint64_t first, uint64_t count, uint32_t* e) {
            return prl_read_bat(dev_, first, count, e);
        });
    }

    // The host byte offset of cluster i's entry e (nonzero), or IoError past qemu's limits.
    Status host(uint32_t e, uint64_t* at) {
        const uint64_t sector = img_.entry_sector(e);
        if (sector >= PRL_MAX_HOST_OFFSET / PRL_SECTOR)
            return Status::IoError; // qemu: the request fails (EIO)
        *at = sector * PRL_SECTOR;
        return Status::Ok;
    }

    // The first run of [pos, pos + len) with one answer: Data (*at its host offset) or not.
    Status find(uint64_t pos, uint64_t len, bool* data, uint64_t* n_out, uint64_t* at) {
        const uint64_t cs = img_.cluster_size;
        const uint64_t idx = pos / cs;
        const uint64_t into = pos % cs;
        // Past the BAT, or past the entries inside the file (zeros to the end of the BAT): one hole.
        if (idx >= img_.bat_entries || idx >= prl_entries_in_file(img_, dev_.size())) {
            *data = false;
            *n_out = len;
            return Status::Ok;
        }
        uint32_t e;
        if (const Status st = entry(idx, &e); st != Status::Ok)
            return st;
        uint64_t start = 0;
        if (e != 0)
            if (const Status st = host(e, &start); st != Status::Ok)
                return st;
        uint64_t run = cs - into;
        uint64_t i = idx + 1;
        uint64_t expect = start + cs;
        const uint64_t in_file = prl_entries_in_file(img_, dev_.size());
        for (uint64_t walked = 1; run < len && i < img_.bat_entries && walked < PRL_MAX_RUN_CLUSTERS; ++i, ++walked) {
            if (i >= in_file) { // the rest of the BAT reads as 0: a hole to the end
                if (e == 0)
                    i = img_.bat_entries;
                break;
            }
            uint32_t f;
            if (const Status st = entry(i, &f); st != Status::Ok)
                return st;
            if (e == 0) {
                if (f != 0)
                    break;
            } else {
                if (f == 0)
                    break;
                uint64_t next;
                if (const Status st = host(f, &next); st != Status::Ok)
                    return st;
                if (next != expect)
                    break;
                expect += cs;
            }
            run += cs;
        }
        // An unallocated run reaching the end of the BAT goes on to the end of the request.
        if (e == 0 && i >= img_.bat_entries)
            run = len;
        *n_out = run < len ? run : len;
        *data = e != 0;
        *at = start + into;
        return Status::Ok;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    PrlImage img_;
    BatCache bat_;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "parallels"))
        return Status::Unsupported;
    PrlImage img;
    const char* why = nullptr;
    if (const Status st = prl_load(*req.image, req.qemu_version, &img, &why); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    BatCache bat;
    if (!bat.init(*req.allocator))
        return Status::NoMemory;
    PrlReader* r = guest::arena_new<PrlReader>(*req.allocator, *req.image, *req.allocator, img, bat);
    if (r == nullptr) {
        bat.release(*req.allocator);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::parallels
