// The qcow2 reader's address translation: L1 entries through a window, L2 tables through a small
// cache of fixed-size slices, and qemu's cluster and subcluster classification of L2 entries.
#pragma once

#include "qcow2_read_reason.h"

#include <instar/guest/format_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

using guest::Allocator;
using guest::BlockDevice;
using guest::Status;

// L1 entries read per device read: 32 KiB of table, so a scan over unallocated L2 ranges of a
// huge disk costs one read per 4096 L2 tables.
inline constexpr uint32_t QCOW2_L1_WINDOW_ENTRIES = 4096;
// L2 tables are cached in slices of this many bytes (or one whole table when clusters are smaller):
// the smallest cluster with extended L2 still has 256 entries per slice, and a slice is cheap to reload.
inline constexpr uint32_t QCOW2_L2_SLICE_BYTES = 4096;
// Slices kept: 128 KiB of L2 metadata whatever the image's size, enough for a sequential walk and
// for reads that alternate between a few regions.
inline constexpr uint32_t QCOW2_L2_CACHE_SLICES = 32;
// A miss reads this many consecutive slices of its table (within the table) into one group of
// slots, in one device read: qemu reads a whole L2 table per miss (its default cache entry is a
// cluster), and a walk over a 64 KiB table in 4 KiB reads cost 16 exits, ~1 ms under kvm-pvm.
inline constexpr uint32_t QCOW2_L2_READ_SLICES = 8;
static_assert(QCOW2_L2_CACHE_SLICES % QCOW2_L2_READ_SLICES == 0, "the cache holds whole groups");

inline constexpr uint64_t L1E_OFFSET_MASK = 0x00fffffffffffe00ull;
inline constexpr uint64_t L2E_OFFSET_MASK = 0x00fffffffffffe00ull;
inline constexpr uint64_t L2E_COMPRESSED_OFFSET_SIZE_MASK = 0x3fffffffffffffffull;
inline constexpr uint64_t QCOW_OFLAG_COPIED = 1ull << 63;
inline constexpr uint64_t QCOW_OFLAG_COMPRESSED = 1ull << 62;
inline constexpr uint64_t QCOW_OFLAG_ZERO = 1ull;

// What the reader needs of the header, fixed at open.
struct Qcow2Geometry {
    uint32_t version = 3;
    uint32_t cluster_bits = 16;
    uint32_t l2_bits = 13;         // log2 of the entries in one L2 table
    uint32_t l2_entry_bytes = 8;   // 16 with extended L2 (entry and subcluster bitmap)
    uint32_t subcluster_bits = 16; // cluster_bits - 5 with extended L2 (32 subclusters)
    bool extl2 = false;
    bool data_file = false;        // data clusters live in the external data file
    uint64_t l1_offset = 0;
    uint32_t l1_size = 0;
    uint64_t cluster_size() const { return uint64_t{1} << cluster_bits; }
};

// qemu's QCow2SubclusterType, minus Invalid (which is Corrupt here).
enum class ClusterKind : uint8_t {
    Unallocated,      // QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN
    UnallocatedAlloc, // extended L2: the cluster has a host offset, this subcluster is not allocated
    Zero,             // QCOW2_SUBCLUSTER_ZERO_PLAIN
    ZeroAlloc,        // zero with a preallocated host offset
    Normal,           // data at a host offset (the image, or the data file)
    Compressed,
};

// One run found by lookup().
struct Mapping {
    ClusterKind kind = ClusterKind::Unallocated;
    uint64_t host = 0;   // Normal/ZeroAlloc/UnallocatedAlloc: host offset of the run's first byte;
                         // Compressed: the L2 entry's offset-and-size descriptor
    uint64_t length = 0; // > 0: bytes from the offset asked with this kind (contiguous on the host)
};

// True when [offset, offset + len) is acceptable against a file of `file_size` bytes by qemu-img
// check's rule: a region may run past the end of the file by less than one cluster (the file's
// last cluster may be partly allocated); the part past the end reads as zeros.
bool qcow2_region_in_file(uint64_t file_size, uint64_t offset, uint64_t len, uint64_t cluster_size);

class Qcow2Map {
public:
    Qcow2Map(BlockDevice& image, BlockDevice& data, Allocator& alloc, const Qcow2Geometry& g, guest::ReasonSink* reasons)
        : image_(image), data_(data), alloc_(alloc), g_(g), reasons_(reasons) {}
    ~Qcow2Map();
    Qcow2Map(const Qcow2Map&) = delete;
    Qcow2Map& operator=(const Qcow2Map&) = delete;

    // Allocates the L1 window and the L2 slice cache.
    Status init();
    // The first run at `offset` (at most max_len > 0 bytes): within one L2 slice, or across
    // consecutive unallocated L1 entries. Corrupt (with a reason) when the entry at `offset` is.
    Status lookup(uint64_t offset, uint64_t max_len, Mapping* out);
    const Qcow2Geometry& geometry() const { return g_; }

private:
    struct Slot {
        uint64_t table = 0; // host offset of the L2 table
        uint64_t index = 0; // slice index inside it
        uint64_t used = 0;  // last use, for LRU eviction; 0 = empty
        uint8_t* data = nullptr;
    };
    Status l1_entry(uint64_t index, uint64_t* out);
    Status l2_slice(uint64_t table, uint64_t index, const uint8_t** out);
    // Classifies subcluster `sc` of the L2 entry at `p` for the cluster at guest offset `guest`.
    Status classify(const uint8_t* p, uint32_t sc, uint64_t guest, uint64_t l2_offset, uint64_t l2_index,
                    ClusterKind* kind, uint64_t* host_cluster, bool report);
    Status corrupt(ReasonText& r, bool report);

    BlockDevice& image_;
    BlockDevice& data_;
    Allocator& alloc_;
    Qcow2Geometry g_;
    guest::ReasonSink* reasons_;
    uint64_t* l1_window_ = nullptr; // host-endian copies of entries [l1_window_start_, +count)
    uint64_t l1_window_start_ = 0;
    uint32_t l1_window_count_ = 0;
    uint8_t* slices_ = nullptr;
    size_t slice_bytes_ = 0;
    uint64_t table_slices_ = 1; // slices in one L2 table
    Slot slots_[QCOW2_L2_CACHE_SLICES];
    uint64_t clock_ = 0;
};

} // namespace instar::qcow2
