// The VMDK reader: block status and reads over the extents open_layout found, as qemu's
// vmdk_co_block_status / vmdk_co_preadv answer them (block/vmdk.c), with bounded caches.
#include "vmdk_read.h"

#include "vmdk_bytes.h"
#include "vmdk_sparse_header.h"

#include <instar/guest/arena_new.h>

namespace instar::vmdk {
namespace {

using guest::Allocation;
using guest::Extent;
using guest::Status;

constexpr uint32_t GTE_ZEROED = 1;      // qemu's VMDK_GTE_ZEROED
constexpr size_t GD_CHUNK_BYTES = VMDK_READ_GD_CHUNK * 8; // seSparse entries are 8 bytes
// seSparse directory and table entries (qemu's get_cluster_offset).
constexpr uint64_t SE_GD_ALLOCATED = 0x1000000000000000ull; // top 32 bits 0x10000000 when allocated
constexpr uint64_t SE_GTE_KIND = 0xf000000000000000ull;
constexpr uint64_t SE_GTE_UNMAPPED = 0x1000000000000000ull; // reads as zeros
constexpr uint64_t SE_GTE_ZERO = 0x2000000000000000ull;
constexpr uint64_t SE_GTE_ALLOCATED = 0x3000000000000000ull;
constexpr size_t MARKER_BYTES = 12;     // VmdkGrainMarker: lba (8), size (4)
constexpr int ZLIB_WINDOW_BITS = 15;    // qemu uses compress()/uncompress(): zlib framing

enum class Kind { Unallocated, Zero, Data };

struct CacheSlot {
    uint32_t extent;
    uint64_t key;   // grain tables: byte offset; directory chunks: chunk index
    uint64_t stamp; // 0 = empty
};

class VmdkReader final : public guest::ImageReader {
public:
    VmdkReader(const guest::OpenRequest& req, const ReadLayout& layout, uint8_t* mem)
        : layout_(layout), alloc_(*req.allocator), codecs_(req.codecs), reasons_(req.reasons), mem_(mem) {
        gt_mem_ = mem;
        gd_mem_ = gt_mem_ + VMDK_READ_GT_CACHE * layout_.max_gt_bytes;
        grain_ = gd_mem_ + VMDK_READ_GD_CACHE * GD_CHUNK_BYTES;
        packed_ = grain_ + layout_.max_compressed_grain;
    }

    static size_t memory_for(const ReadLayout& l) {
        return VMDK_READ_GT_CACHE * l.max_gt_bytes + VMDK_READ_GD_CACHE * GD_CHUNK_BYTES + 3 * l.max_compressed_grain;
    }

    uint64_t virtual_size() const override { return layout_.virtual_size; }

    bool content_id(uint32_t kind, uint32_t* out) const override {
        if (kind != VMDK_CID_KIND)
            return false;
        *out = layout_.cid;
        return true;
    }
    bool backing_valid(const guest::ImageReader& backing) const override {
        return vmdk_backing_valid(layout_.parent_cid, backing);
    }

    Status status(uint64_t offset, uint64_t length, Extent* out) override {
        if (broken_)
            return still_broken();
        if (offset >= layout_.virtual_size || length == 0 || length > layout_.virtual_size - offset)
            return Status::Invalid;
        uint32_t ei = 0;
        return run(offset, length, false, out, &ei);
    }

    // vmdk_co_block_status answers one cluster of the extent holding `offset`, counted from the
    // extent's start: a grain of a sparse extent, the whole of a flat one.
    uint64_t status_boundary(uint64_t offset) const override {
        if (layout_.count == 0)
            return UINT64_MAX;
        const ReadExtent& e = layout_.extents[find_extent(offset)];
        const uint64_t cluster = e.flat ? e.bytes : e.grain_bytes;
        if (cluster == 0 || offset < e.start)
            return UINT64_MAX;
        const uint64_t in = (offset - e.start) % cluster;
        return cluster - in > UINT64_MAX - offset ? UINT64_MAX : offset + (cluster - in);
    }

    // Reads may be made ahead (read_api.h): data goes straight from the extent files into buf (a
    // range past a file's end zeroed first), compressed grains through the reader's own buffers, and
    // a corrupt image gives its reason again on every later call.
    bool reads_ahead_safe() const override { return true; }

    Status read(uint64_t offset, void* buf, size_t len) override {
        if (broken_)
            return still_broken();
        if (offset > layout_.virtual_size || len > layout_.virtual_size - offset)
            return Status::Invalid;
        auto* p = static_cast<uint8_t*>(buf);
        while (len > 0) {
            Extent x{};
            uint32_t ei = 0;
            if (const Status st = run(offset, len, true, &x, &ei); st != Status::Ok)
                return st;
            const size_t n = static_cast<size_t>(x.length);
            Status st = Status::Ok;
            if (x.allocation != Allocation::Data)
                __builtin_memset(p, 0, n);
            else if (x.flags & guest::EXTENT_COMPRESSED)
                st = read_compressed(ei, offset, p, n);
            else
                st = read_zero_filled(*layout_.extents[ei].dev, x.offset, p, n);
            if (st != Status::Ok)
                return st;
            p += n;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    void close() override {
        alloc_.deallocate(mem_, memory_for(layout_));
        free_layout(alloc_, &layout_);
        guest::arena_delete(alloc_, this);
    }

private:
    // The extent holding virtual byte `offset` (< virtual size): the first whose end lies past it.
    uint32_t find_extent(uint64_t offset) const {
        uint32_t lo = 0, hi = layout_.count - 1;
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo) / 2;
            const ReadExtent& e = layout_.extents[mid];
            if (e.start + e.bytes > offset)
                hi = mid;
            else
                lo = mid + 1;
        }
        return lo;
    }

    // Corrupt is terminal: the reader refuses everything afterwards (as qemu's corrupt images).
    Status corrupt(const char* why) {
        say(reasons_, why);
        broken_ = true;
        broken_why_ = why;
        return Status::Corrupt;
    }

    // Every later call gives the reason again: the first may have been dropped (a read made ahead
    // whose reasons were quiet, read_api.h); the host keeps only the first it is given.
    Status still_broken() {
        say(reasons_, broken_why_);
        return Status::Corrupt;
    }

    // Least-recently-used slot among `n`, or the one already holding (extent, key).
    static uint32_t slot_for(CacheSlot* slots, uint32_t n, uint32_t extent, uint64_t key, bool* hit) {
        uint32_t victim = 0;
        for (uint32_t i = 0; i < n; ++i) {
            if (slots[i].stamp != 0 && slots[i].extent == extent && slots[i].key == key) {
                *hit = true;
                return i;
            }
            if (slots[i].stamp < slots[victim].stamp)
                victim = i;
        }
        *hit = false;
        return victim;
    }

    // Grain-directory entry l1_index of extent ei (qemu's l1_table[l1_index]), read by chunks.
    Status gd_entry(uint32_t ei, uint32_t l1_index, uint64_t* out) {
        const ReadExtent& e = layout_.extents[ei];
        const uint64_t chunk = l1_index / VMDK_READ_GD_CHUNK;
        bool hit = false;
        const uint32_t s = slot_for(gd_, VMDK_READ_GD_CACHE, ei, chunk, &hit);
        uint8_t* mem = gd_mem_ + s * GD_CHUNK_BYTES;
        if (!hit) {
            gd_[s].stamp = 0;
            const uint64_t first = chunk * VMDK_READ_GD_CHUNK;
            const uint64_t entries = e.l1_size - first < VMDK_READ_GD_CHUNK ? e.l1_size - first : VMDK_READ_GD_CHUNK;
            const uint64_t w = e.sesparse ? 8 : 4;
            // open_layout checked that the whole directory lies inside the file.
            if (const Status st = e.dev->read(e.gd_offset + first * w, mem, static_cast<size_t>(entries * w));
                st != Status::Ok)
                return st;
            gd_[s].extent = ei;
            gd_[s].key = chunk;
        }
        gd_[s].stamp = ++stamp_;
        const uint32_t k = l1_index % VMDK_READ_GD_CHUNK;
        *out = e.sesparse ? load_le64(mem + k * 8) : load_le32(mem + k * 4);
        return Status::Ok;
    }

    // Entry l2_index of the grain table at sector `gt_sector` of extent ei.
    Status gt_entry(uint32_t ei, uint32_t gt_sector, uint32_t l2_index, uint32_t* loads, uint64_t* out) {
        const ReadExtent& e = layout_.extents[ei];
        const uint64_t at = uint64_t{gt_sector} * 512;
        bool hit = false;
        const uint32_t s = slot_for(gt_, VMDK_READ_GT_CACHE, ei, at, &hit);
        uint8_t* mem = gt_mem_ + s * layout_.max_gt_bytes;
        const uint64_t w = e.sesparse ? 8 : 4;
        if (!hit) {
            gt_[s].stamp = 0;
            const uint64_t bytes = uint64_t{e.gtes} * w;
            // qemu reads zeros past EOF; a table the file does not hold is refused instead.
            if (at > e.dev->size() || bytes > e.dev->size() - at)
                return corrupt("Grain table lies past the end of the extent file");
            if (const Status st = e.dev->read(at, mem, static_cast<size_t>(bytes)); st != Status::Ok)
                return st;
            gt_[s].extent = ei;
            gt_[s].key = at;
            ++*loads;
        }
        gt_[s].stamp = ++stamp_;
        *out = e.sesparse ? load_le64(mem + l2_index * 8) : load_le32(mem + l2_index * 4);
        return Status::Ok;
    }

    // What grain `grain` of sparse extent ei is (qemu's get_cluster_offset). *same: how many grains
    // from this one certainly share the answer (a whole table's span when its directory entry is 0).
    Status classify(uint32_t ei, uint64_t grain, uint32_t* loads, Kind* kind, uint64_t* sector, uint64_t* same) {
        const ReadExtent& e = layout_.extents[ei];
        const uint64_t l1_index = grain / e.gtes;
        if (l1_index >= e.l1_size)
            return corrupt("Grain directory too small for the extent");
        uint64_t gde = 0;
        if (const Status st = gd_entry(ei, static_cast<uint32_t>(l1_index), &gde); st != Status::Ok)
            return st;
        uint32_t gt_sector = static_cast<uint32_t>(gde);
        if (e.sesparse && gde != 0) {
            // qemu: the top 32 bits must be 0x10000000; the table's sector must fit 32 bits.
            if ((gde & 0xffffffff00000000ull) != SE_GD_ALLOCATED)
                return corrupt("Invalid seSparse grain directory entry");
            const uint64_t at = e.se_gt_offset + (gde & 0xffffffffull) * (uint64_t{e.gtes} * 8 / 512);
            if (at < e.se_gt_offset || at > 0xffffffffull)
                return corrupt("Invalid seSparse grain directory entry");
            gt_sector = static_cast<uint32_t>(at);
        }
        *same = 1;
        if (gt_sector == 0) {
            *kind = Kind::Unallocated;
            *same = e.gtes - grain % e.gtes;
            return Status::Ok;
        }
        uint64_t gte = 0;
        if (const Status st = gt_entry(ei, gt_sector, static_cast<uint32_t>(grain % e.gtes), loads, &gte);
            st != Status::Ok)
            return st;
        if (e.sesparse)
            return se_classify(e, gte, kind, sector);
        if (gte == 0) {
            *kind = Kind::Unallocated;
        } else if (e.zero_grain && gte == GTE_ZEROED) {
            *kind = Kind::Zero;
        } else {
            *kind = Kind::Data;
            *sector = gte;
        }
        return Status::Ok;
    }

    // A seSparse grain-table entry (qemu's get_cluster_offset): unallocated, unmapped or zero
    // (both read as zeros), or a grain index split across the entry's bits.
    Status se_classify(const ReadExtent& e, uint64_t gte, Kind* kind, uint64_t* sector) {
        switch (gte & SE_GTE_KIND) {
        case 0:
            if (gte != 0)
                return corrupt("Invalid seSparse grain table entry");
            *kind = Kind::Unallocated;
            return Status::Ok;
        case SE_GTE_UNMAPPED:
        case SE_GTE_ZERO:
            *kind = Kind::Zero;
            return Status::Ok;
        case SE_GTE_ALLOCATED: {
            const uint64_t index = ((gte & 0x0fff000000000000ull) >> 48) | ((gte & 0x0000ffffffffffffull) << 12);
            uint64_t at = 0;
            // Grains past 2^55 sectors lie past any file: refused (qemu's int64 arithmetic wraps).
            if (__builtin_mul_overflow(index, e.grain_bytes / 512, &at) ||
                __builtin_add_overflow(at, e.se_grains_offset, &at) || at > (~uint64_t{0} >> 9))
                return corrupt("Grain lies past the end of the extent file");
            *kind = Kind::Data;
            *sector = at;
            return Status::Ok;
        }
        default:
            return corrupt("Invalid seSparse grain table entry");
        }
    }

    // The run starting at `offset`: one extent at most; for reads, flat extents are not asked for
    // their holes (they read the same).
    Status run(uint64_t offset, uint64_t length, bool for_read, Extent* out, uint32_t* ei_out) {
        const uint32_t ei = find_extent(offset);
        *ei_out = ei;
        const ReadExtent& e = layout_.extents[ei];
        const uint64_t rel = offset - e.start;
        const uint64_t avail = e.bytes - rel < length ? e.bytes - rel : length;
        *out = Extent{};
        if (e.flat)
            return flat_run(e, rel, avail, for_read, out);

        uint64_t grain = rel / e.grain_bytes;
        const uint64_t in_grain = rel % e.grain_bytes;
        uint32_t loads = 0;
        Kind kind;
        uint64_t sector = 0, same = 0;
        if (const Status st = classify(ei, grain, &loads, &kind, &sector, &same); st != Status::Ok)
            return st;
        const uint64_t dev_size = e.dev->size();
        if (kind == Kind::Data && sector * 512 >= dev_size)
            return corrupt("Grain lies past the end of the extent file");
        uint64_t got = same * e.grain_bytes - in_grain; // may pass avail; clipped below
        uint64_t next_sector = sector + e.grain_bytes / 512;
        grain += same;
        uint64_t steps = 1;
        while (got < avail && steps < VMDK_READ_MAX_GD_STEPS && loads < VMDK_READ_MAX_GT_LOADS) {
            Kind k;
            uint64_t s = 0, n = 0;
            if (const Status st = classify(ei, grain, &loads, &k, &s, &n); st != Status::Ok)
                return st;
            if (k != kind)
                break;
            if (k == Kind::Data && (s * 512 >= dev_size || (!e.compressed && s != next_sector)))
                break;
            got += n * e.grain_bytes;
            grain += n;
            next_sector = s + e.grain_bytes / 512;
            ++steps;
        }
        out->length = got < avail ? got : avail;
        switch (kind) {
        case Kind::Unallocated:
            out->allocation = Allocation::Unallocated;
            break;
        case Kind::Zero:
            out->allocation = Allocation::Zero;
            break;
        case Kind::Data:
            out->allocation = Allocation::Data;
            if (e.compressed) {
                out->flags = guest::EXTENT_COMPRESSED;
            } else {
                out->flags = guest::EXTENT_OFFSET_VALID;
                out->device = e.device;
                out->offset = sector * 512 + in_grain;
            }
            break;
        }
        return Status::Ok;
    }

    // A flat extent: its file's bytes; holes and the range past EOF read as zeros (qemu's file
    // layer reports them as zero, with the offset).
    Status flat_run(const ReadExtent& e, uint64_t rel, uint64_t avail, bool for_read, Extent* out) {
        const uint64_t at = e.flat_offset + rel;
        out->flags = guest::EXTENT_OFFSET_VALID;
        out->device = e.device;
        out->offset = at;
        out->length = avail;
        out->allocation = Allocation::Data;
        if (for_read)
            return Status::Ok;
        const uint64_t size = e.dev->size();
        if (at >= size) {
            out->allocation = Allocation::Zero;
            return Status::Ok;
        }
        bool data = true;
        uint64_t n = 0;
        if (const Status st = e.dev->allocation(at, &data, &n); st != Status::Ok)
            return st;
        if (n == 0)
            return Status::IoError;
        if (!data && n >= size - at) // a hole up to EOF continues past it (qemu's BDRV_BLOCK_EOF rule)
            n = avail;
        out->allocation = data ? Allocation::Data : Allocation::Zero;
        out->length = n < avail ? n : avail;
        return Status::Ok;
    }

    // Bytes [offset, offset + n) of one compressed grain run (qemu's vmdk_read_extent).
    Status read_compressed(uint32_t ei, uint64_t offset, uint8_t* p, size_t n) {
        const ReadExtent& e = layout_.extents[ei];
        while (n > 0) {
            const uint64_t rel = offset - e.start;
            const uint64_t grain = rel / e.grain_bytes;
            const uint64_t in_grain = rel % e.grain_bytes;
            const size_t k = e.grain_bytes - in_grain < n ? static_cast<size_t>(e.grain_bytes - in_grain) : n;
            if (const Status st = load_grain(ei, grain); st != Status::Ok)
                return st;
            if (in_grain + k > grain_len_)
                return corrupt("Compressed grain is shorter than the data it must hold");
            __builtin_memcpy(p, grain_ + in_grain, k);
            p += k;
            offset += k;
            n -= k;
        }
        return Status::Ok;
    }

    Status load_grain(uint32_t ei, uint64_t grain) {
        if (grain_valid_ && grain_extent_ == ei && grain_index_ == grain)
            return Status::Ok;
        grain_valid_ = false;
        const ReadExtent& e = layout_.extents[ei];
        uint32_t loads = 0;
        Kind kind;
        uint64_t sector = 0, same = 0;
        if (const Status st = classify(ei, grain, &loads, &kind, &sector, &same); st != Status::Ok)
            return st;
        if (kind != Kind::Data)
            return Status::Invalid; // run() said Data for this grain
        const uint64_t at = sector * 512;
        if (at >= e.dev->size())
            return corrupt("Grain lies past the end of the extent file");
        // qemu reads two grains (marker + data may exceed one); past EOF reads as zeros.
        const size_t in_cap = static_cast<size_t>(2 * e.grain_bytes);
        if (const Status st = read_zero_filled(*e.dev, at, packed_, in_cap); st != Status::Ok)
            return st;
        const uint8_t* src = packed_;
        size_t src_len = static_cast<size_t>(e.grain_bytes);
        if (e.marker) {
            src = packed_ + MARKER_BYTES;
            src_len = load_le32(packed_ + 8);
            if (src_len == 0 || src_len > in_cap - MARKER_BYTES)
                return corrupt("Invalid compressed grain size");
        }
        size_t out_len = 0;
        const Status st = codecs_->inflate(src, src_len, grain_, static_cast<size_t>(e.grain_bytes), &out_len,
                                           ZLIB_WINDOW_BITS);
        if (st == Status::TooLarge)
            return corrupt("Compressed grain inflates past the grain size");
        if (st == Status::Corrupt)
            return corrupt("Invalid compressed grain data");
        if (st != Status::Ok)
            return st;
        grain_len_ = out_len;
        grain_extent_ = ei;
        grain_index_ = grain;
        grain_valid_ = true;
        return Status::Ok;
    }

    ReadLayout layout_;
    guest::Allocator& alloc_;
    const guest::Codecs* codecs_;
    guest::ReasonSink* reasons_;
    uint8_t* mem_;
    uint8_t* gt_mem_;
    uint8_t* gd_mem_;
    uint8_t* grain_;
    uint8_t* packed_;
    CacheSlot gt_[VMDK_READ_GT_CACHE] = {};
    CacheSlot gd_[VMDK_READ_GD_CACHE] = {};
    uint64_t stamp_ = 0;
    bool broken_ = false;
    const char* broken_why_ = nullptr; // a string literal (corrupt()'s callers)
    bool grain_valid_ = false;
    uint32_t grain_extent_ = 0;
    uint64_t grain_index_ = 0;
    size_t grain_len_ = 0;
};

} // namespace

Status open(const guest::OpenRequest& req, guest::ImageReader** out) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    if (guest::refuse_snapshot_load(req, "vmdk"))
        return Status::Unsupported;
    ReadLayout layout{};
    if (const Status st = open_layout(req, &layout); st != Status::Ok)
        return st;
    if (layout.max_compressed_grain != 0 && (req.codecs == nullptr || req.codecs->inflate == nullptr)) {
        free_layout(*req.allocator, &layout);
        say(req.reasons, "No inflate for compressed grains");
        return Status::Unsupported;
    }
    const size_t bytes = VmdkReader::memory_for(layout);
    auto* mem = static_cast<uint8_t*>(req.allocator->allocate(bytes, 8));
    VmdkReader* r = mem == nullptr ? nullptr : guest::arena_new<VmdkReader>(*req.allocator, req, layout, mem);
    if (r == nullptr) {
        if (mem != nullptr)
            req.allocator->deallocate(mem, bytes);
        free_layout(*req.allocator, &layout);
        return Status::NoMemory;
    }
    *out = r;
    return Status::Ok;
}

} // namespace instar::vmdk
