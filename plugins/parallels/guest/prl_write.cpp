// The Parallels writer (prl_write.h).
#include "prl_write.h"

#include "prl_create.h"
#include "prl_header.h"
#include "prl_used.h"

#include <instar/guest/arena_new.h>

namespace instar::parallels {
namespace {

using guest::BlockDevice;
using guest::Status;

// Zeros written per device write around partial clusters: 64 KiB of arena.
constexpr size_t ZERO_CHUNK = 65536;

// Bytes of used-cluster map convert -n may hold (10.0): 2^29 clusters, as check's bound; a larger
// file is refused (qemu's bitmap_try_new would fail the open with ENOMEM).
constexpr uint64_t PRL_WRITE_MAX_MAP_BYTES = uint64_t{64} << 20;

class PrlWriter final : public guest::ImageWriter {
public:
    PrlWriter(BlockDevice& dev, guest::Allocator& alloc, const PrlImage& img, uint64_t data_end, uint8_t* zeros,
              bool zero_init, uint32_t qemu_version, guest::ReasonSink* reasons)
        : dev_(dev), alloc_(alloc), img_(img), data_end_(data_end), zeros_(zeros), zero_init_(zero_init),
          v10_(prl_v10(qemu_version)), reasons_(reasons) {}

    uint64_t cluster_size() const override { return 0; }
    bool zero_init() const override { return zero_init_; }

    Status write(uint64_t offset, const void* buf, size_t len) override {
        return store(offset, static_cast<const uint8_t*>(buf), len);
    }

    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > img_.virtual_size() || len > img_.virtual_size() - offset)
            return Status::Invalid;
        const uint64_t cs = img_.cluster_size;
        if (v10_ && offset % cs == 0 && len % cs == 0)
            return discard(offset / cs, len / cs);
        while (len > 0) {
            const size_t n = static_cast<size_t>(len < ZERO_CHUNK ? len : ZERO_CHUNK);
            if (const Status st = store(offset, nullptr, n); st != Status::Ok)
                return st;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    Status write_compressed(uint64_t, const void*, size_t) override { return Status::Unsupported; }

    void allow_end(uint64_t sectors) { quirk_end_ = sectors; }

    // convert -n under 10.0: allocate as qemu's used-cluster map says (holes first); data_start in bytes.
    void use_map(PrlUsedMap* map, uint64_t data_start) {
        map_ = map;
        data_start_ = data_start;
    }
    // convert -n: qemu's close cuts (or grows) the file to the data end.
    void cut_at_close(guest::Status (*set_length)(BlockDevice&, uint64_t)) { set_length_ = set_length; }

    Status finish() override {
        if (failed_)
            return Status::IoError;
        if (set_length_ != nullptr && set_length_(dev_, data_end_ * PRL_SECTOR) != Status::Ok)
            return fail(Status::IoError, nullptr);
        return Status::Ok;
    }

    void close() override {
        guest::arena_delete(alloc_, map_);
        alloc_.deallocate(zeros_, ZERO_CHUNK);
        guest::arena_delete(alloc_, this);
    }

private:
    Status fail(Status st, const char* why) {
        failed_ = true;
        guest::say_reason(reasons_, why);
        return st;
    }

    // qemu 10.0's pdiscard: allocated clusters lose their entry and their bytes.
    Status discard(uint64_t cluster, uint64_t count) {
        for (; count > 0; ++cluster, --count) {
            if (cluster >= img_.bat_entries)
                break;
            uint32_t e;
            if (const Status st = entry(cluster, &e); st != Status::Ok)
                return fail(st, nullptr);
            if (e == 0)
                continue;
            const uint64_t at = img_.entry_sector(e) * PRL_SECTOR;
            if (at < dev_.size()) {
                const uint64_t n = dev_.size() - at < img_.cluster_size ? dev_.size() - at : img_.cluster_size;
                if (dev_.discard(at, n) != Status::Ok)
                    if (const Status st = put(at, nullptr, static_cast<size_t>(n)); st != Status::Ok)
                        return fail(st, nullptr);
            }
            if (const Status st = set_entry(cluster, 0); st != Status::Ok)
                return fail(st, nullptr);
            if (map_ != nullptr)
                map_->release_cluster(img_, data_start_, at);
        }
        return Status::Ok;
    }

    // Writes `len` bytes of `src` (zeros when nullptr) at virtual `offset`, cluster by cluster.
    Status store(uint64_t offset, const uint8_t* src, size_t len) {
        if (failed_)
            return Status::IoError;
        if (offset > img_.virtual_size() || len > img_.virtual_size() - offset)
            return Status::Invalid;
        const uint64_t cs = img_.cluster_size;
        while (len > 0) {
            const uint64_t cluster = offset / cs;
            const uint64_t in = offset % cs;
            const size_t n = static_cast<size_t>(cs - in < len ? cs - in : len);
            if (cluster >= img_.bat_entries)
                return fail(Status::Corrupt, "the Parallels image's virtual size reaches past its BAT");
            uint32_t e;
            if (const Status st = entry(cluster, &e); st != Status::Ok)
                return fail(st, nullptr);
            if (e == 0) {
                if (const Status st = allocate(cluster, in, src, n); st != Status::Ok)
                    return st;
            } else {
                const uint64_t sector = img_.entry_sector(e);
                if (sector > (dev_.size() + PRL_SECTOR - 1) / PRL_SECTOR)
                    return fail(Status::Corrupt, "a BAT entry of the Parallels image points past the end of the file");
                if (const Status st = put(sector * PRL_SECTOR + in, src, n); st != Status::Ok)
                    return fail(st, nullptr);
            }
            offset += n;
            len -= n;
            if (src != nullptr)
                src += n;
        }
        return Status::Ok;
    }

    // qemu: the new cluster's entry is data_end / off_multiplier (10.0 with a map: its first hole);
    // its bytes go where the entry says.
    Status allocate(uint64_t cluster, uint64_t in, const uint8_t* src, size_t n) {
        if (map_ != nullptr)
            return allocate_mapped(cluster, in, src, n);
        const uint64_t e64 = data_end_ / img_.off_multiplier;
        if (e64 == 0 || e64 > UINT32_MAX)
            return fail(Status::Corrupt, "the Parallels image has no room for another cluster");
        if (data_end_ > (dev_.size() + PRL_SECTOR - 1) / PRL_SECTOR && data_end_ != quirk_end_)
            return fail(Status::Corrupt, "the Parallels image's data end lies past the end of the file");
        const uint32_t e = static_cast<uint32_t>(e64);
        const uint64_t at = img_.entry_sector(e) * PRL_SECTOR;
        const uint64_t cs = img_.cluster_size;
        Status st = put(at, nullptr, static_cast<size_t>(in));
        if (st == Status::Ok)
            st = put(at + in, src, n);
        if (st == Status::Ok)
            st = put(at + in + n, nullptr, static_cast<size_t>(cs - in - n));
        if (st != Status::Ok)
            return fail(st, nullptr);
        // The BAT entry after the data, so the BAT never points at a cluster not yet written.
        if (st = set_entry(cluster, e); st != Status::Ok)
            return fail(st, nullptr);
        data_end_ += img_.tracks;
        return Status::Ok;
    }

    Status allocate_mapped(uint64_t cluster, uint64_t in, const uint8_t* src, size_t n) {
        uint64_t at = 0;
        bool zeroed = true;
        if (map_->allocate(img_, data_start_, &data_end_, &at, &zeroed) != 0)
            return fail(Status::Corrupt, "the Parallels image's map of used clusters is inconsistent");
        const uint64_t cs = img_.cluster_size;
        Status st = zeroed ? put(at, nullptr, static_cast<size_t>(in)) : Status::Ok;
        if (st == Status::Ok)
            st = put(at + in, src, n);
        if (st == Status::Ok && zeroed)
            st = put(at + in + n, nullptr, static_cast<size_t>(cs - in - n));
        if (st != Status::Ok)
            return fail(st, nullptr);
        if (st = set_entry(cluster, static_cast<uint32_t>(at / PRL_SECTOR / img_.off_multiplier)); st != Status::Ok)
            return fail(st, nullptr);
        return Status::Ok;
    }

    Status set_entry(uint64_t cluster, uint32_t e) {
        uint8_t raw[4];
        store_le32(raw, e);
        if (const Status st = dev_.write(prl_bat_entry_off(cluster), raw, 4); st != Status::Ok)
            return st;
        if (page_valid_ && cluster / PAGE == page_)
            page_entries_[cluster % PAGE] = e;
        return Status::Ok;
    }

    Status put(uint64_t at, const uint8_t* src, size_t n) {
        if (src != nullptr)
            return n == 0 ? Status::Ok : dev_.write(at, src, n);
        while (n > 0) {
            const size_t k = n < ZERO_CHUNK ? n : ZERO_CHUNK;
            if (const Status st = dev_.write(at, zeros_, k); st != Status::Ok)
                return st;
            at += k;
            n -= k;
        }
        return Status::Ok;
    }

    // The BAT entry of `cluster`, through a one-page cache (convert writes in order).
    Status entry(uint64_t cluster, uint32_t* out) {
        const uint64_t page = cluster / PAGE;
        if (!page_valid_ || page_ != page) {
            page_valid_ = false;
            const uint64_t first = page * PAGE;
            const uint64_t left = img_.bat_entries - first;
            if (const Status st = prl_read_bat(dev_, first, left < PAGE ? left : PAGE, page_entries_); st != Status::Ok)
                return st;
            page_ = page;
            page_valid_ = true;
        }
        *out = page_entries_[cluster % PAGE];
        return Status::Ok;
    }

    static constexpr uint32_t PAGE = PRL_BAT_PAGE;
    BlockDevice& dev_;
    guest::Allocator& alloc_;
    PrlImage img_;
    uint64_t data_end_; // sectors
    // qemu 7.2 sets data_end of an image with data_off 0 to ROUND_UP(64 + 4 * bat_entries, 512) as a
    // sector count (it is a byte count): the first new cluster may lie past the end of the file.
    // That one value is allowed there (at most 2^31 sectors: 1 TiB, a sparse gap); 0 = none.
    uint64_t quirk_end_ = 0;
    uint8_t* zeros_;
    bool zero_init_;
    bool v10_;
    guest::ReasonSink* reasons_;
    PrlUsedMap* map_ = nullptr;
    uint64_t data_start_ = 0;
    guest::Status (*set_length_)(BlockDevice&, uint64_t) = nullptr;
    bool failed_ = false;
    bool page_valid_ = false;
    uint64_t page_ = 0;
    uint32_t page_entries_[PAGE];
};

Status make_writer(BlockDevice& dev, guest::Allocator& alloc, const PrlImage& img, uint64_t data_end, bool zero_init,
                   uint32_t qemu_version, guest::ReasonSink* reasons, PrlWriter** out) {
    const bool quirk = !prl_v10(qemu_version) && img.data_off == 0 &&
                       data_end == (prl_bat_entry_off(img.bat_entries) + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
    auto* zeros = static_cast<uint8_t*>(alloc.allocate(ZERO_CHUNK, 8));
    if (zeros == nullptr)
        return Status::NoMemory;
    __builtin_memset(zeros, 0, ZERO_CHUNK);
    PrlWriter* w = guest::arena_new<PrlWriter>(alloc, dev, alloc, img, data_end, zeros, zero_init, qemu_version, reasons);
    if (w == nullptr) {
        alloc.deallocate(zeros, ZERO_CHUNK);
        return Status::NoMemory;
    }
    if (quirk)
        w->allow_end(data_end);
    *out = w;
    return Status::Ok;
}

} // namespace

Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out) {
    if (req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    PrlImage img;
    if (const Status st = create_image(req, target, &img); st != Status::Ok)
        return st;
    // A new image's data starts at data_off (a whole number of clusters) in both profiles.
    PrlWriter* w = nullptr;
    const Status st = make_writer(target.image(), *req.allocator, img, img.data_off, true, req.qemu_version, nullptr, &w);
    if (st == Status::Ok)
        *out = w;
    return st;
}

Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    PrlImage img;
    const char* why = nullptr;
    if (const Status st = prl_load(*req.image, req.qemu_version, &img, &why, PrlAccess::Write); st != Status::Ok) {
        guest::say_reason(req.reasons, why);
        return st;
    }
    if (img.unclean()) {
        guest::say_reason(req.reasons, "parallels: Image was not closed correctly; cannot be opened read/write");
        return Status::Invalid;
    }
    uint64_t data_end;
    if (const Status st = prl_data_end(*req.image, img, req.qemu_version, &data_end); st != Status::Ok)
        return st;
    PrlWriter* w = nullptr;
    if (const Status st = make_writer(*req.image, *req.allocator, img, data_end, false, req.qemu_version, req.reasons, &w);
        st != Status::Ok)
        return st;
    w->cut_at_close(req.set_length);
    if (prl_v10(req.qemu_version)) {
        // qemu 10.0's open fills its used-cluster map (a valid image: the data end inside the file)
        // and allocation takes its holes first.
        uint32_t start;
        const uint64_t file = (req.image->size() + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
        const bool data_off_ok = prl_test_data_off(img, file / PRL_SECTOR, &start);
        auto* map = guest::arena_new<PrlUsedMap>(*req.allocator, *req.allocator, PRL_WRITE_MAX_MAP_BYTES);
        Status st = map == nullptr ? Status::NoMemory : Status::Ok;
        if (st == Status::Ok && data_off_ok && data_end <= file / PRL_SECTOR)
            st = map->fill(*req.image, img, uint64_t{start} * PRL_SECTOR, file);
        if (st == Status::Invalid)
            st = Status::Ok; // qemu: the map stays empty
        w->use_map(map, uint64_t{start} * PRL_SECTOR);
        if (st == Status::NoMemory)
            guest::say_reason(req.reasons, "the Parallels image is too large for instar's map of used clusters");
        if (st != Status::Ok) {
            w->close();
            return st;
        }
    }
    *out = w;
    return Status::Ok;
}

} // namespace instar::parallels
