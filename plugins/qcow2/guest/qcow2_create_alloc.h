// qemu's qcow2 cluster allocator (block/qcow2-refcount.c), replayed for a new image: the same
// free-cluster search, refcount-block placement, -EAGAIN restarts and refcount-table growth, so the
// emitter puts every table exactly where qemu-img create does. Refcounts live in Qcow2Extents; the
// refcount table is written through as qemu writes it (stale copies it abandons stay on disk), the
// refcount blocks are written once at the end from the final state.
#pragma once

#include "qcow2_create_extents.h"

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// qemu's negative errno results, kept so the port reads like the original.
inline constexpr int64_t QCOW2_EIO = -5;
inline constexpr int64_t QCOW2_EAGAIN = -11;
inline constexpr int64_t QCOW2_ENOMEM = -12;
inline constexpr int64_t QCOW2_EINVAL = -22;
inline constexpr int64_t QCOW2_EFBIG = -27;
inline constexpr int64_t QCOW2_ENOSPC = -28;

// qemu's QCOW_MAX_CLUSTER_OFFSET: host offsets must fit the 56-bit L2/refcount-table fields.
inline constexpr uint64_t QCOW_MAX_CLUSTER_OFFSET = (uint64_t{1} << 56) - 1;
// Bytes of the refcount table converted and written at a time (the table can be 8 MiB).
inline constexpr size_t QCOW2_CREATE_TABLE_CHUNK = 64u << 10;

// Refcounts above 1: host clusters that several compressed clusters share (convert -c only). Sorted
// (cluster, refcount) pairs in one array from the arena, growing by doubling up to
// QCOW2_MAX_SHARED_CLUSTERS entries (16 MiB): 1 Mi shared host clusters, e.g. 64 GiB of 64 KiB
// clusters compressed; past it the convert stops with TooLarge rather than grow without bound.
inline constexpr size_t QCOW2_MAX_SHARED_CLUSTERS = size_t{1} << 20;

struct Qcow2SharedRef {
    uint64_t cluster;
    uint64_t refcount; // >= 2
};

class Qcow2Alloc {
public:
    Qcow2Alloc(guest::BlockDevice& dev, guest::Allocator& alloc, uint32_t cluster_bits, uint32_t refcount_order);
    ~Qcow2Alloc();
    Qcow2Alloc(const Qcow2Alloc&) = delete;
    Qcow2Alloc& operator=(const Qcow2Alloc&) = delete;

    // qcow2_co_create's start: the one-cluster refcount table at cluster 1 naming a refcount block
    // at cluster 2, then the first open's qcow2_alloc_clusters(3 clusters).
    int64_t start();

    int64_t alloc_clusters(uint64_t bytes);                         // qcow2_alloc_clusters
    int64_t alloc_clusters_at(uint64_t offset, uint64_t nb_clusters); // qcow2_alloc_clusters_at
    int64_t free_clusters(uint64_t offset, uint64_t bytes);           // qcow2_free_clusters
    int64_t refcount_area(uint64_t start_offset, uint64_t additional_clusters, bool exact_size,
                          uint64_t new_refblock_index, uint64_t new_refblock_offset); // qcow2_refcount_area
    int64_t last_cluster(uint64_t file_size) const; // qcow2_get_last_cluster
    // A reopen (qcow2_co_create's last step): the free-cluster search starts from cluster 0 again.
    void reopen() { free_index_ = 0; }

    // Writes every refcount block from the final refcounts (one cluster buffer at a time).
    int64_t write_refblocks();

    // qemu's file length so far: every write qemu makes extends it, deferred or not.
    uint64_t file_length() const { return file_len_; }
    void note_write(uint64_t end) { file_len_ = end > file_len_ ? end : file_len_; }
    int64_t write(uint64_t offset, const void* buf, size_t len);
    // The length of what has really been written (or set) so far.
    uint64_t written_length() const { return real_len_; }
    void note_real_write(uint64_t end) { real_len_ = end > real_len_ ? end : real_len_; }

    // Lets increments reach clusters already in use (compressed clusters sharing a host cluster).
    void allow_shared() { shared_enabled_ = true; }
    // A host cluster's refcount in the model.
    uint64_t refcount(uint64_t cluster) const;
    uint64_t refcount_max() const {
        return refcount_order_ == 6 ? UINT64_MAX : (uint64_t{1} << (uint32_t{1} << refcount_order_)) - 1;
    }

    uint32_t cluster_bits() const { return cluster_bits_; }
    uint64_t cluster_size() const { return uint64_t{1} << cluster_bits_; }
    uint64_t refcount_table_offset() const { return rt_offset_; }
    uint64_t refcount_table_clusters() const { return (rt_size_ * 8) >> cluster_bits_; }

private:
    int64_t alloc_noref(uint64_t bytes, uint64_t max);
    int64_t update_refcount(uint64_t offset, uint64_t length, bool decrease);
    int64_t alloc_refcount_block(uint64_t cluster_index);
    int64_t write_reftable_range(const uint64_t* table, uint64_t first, uint64_t count, uint64_t table_offset);
    void update_max_index();
    bool in_same_block(uint64_t a_cluster, uint64_t b_cluster) const {
        return (a_cluster >> rb_bits_) == (b_cluster >> rb_bits_);
    }

    friend class Qcow2Writer;
    size_t shared_find(uint64_t cluster) const; // first index with cluster >= `cluster`
    int64_t shared_increment(uint64_t cluster);

    guest::BlockDevice& dev_;
    guest::Allocator& alloc_;
    bool shared_enabled_ = false;
    Qcow2SharedRef* shared_ = nullptr;
    size_t shared_count_ = 0;
    size_t shared_cap_ = 0;
    uint32_t cluster_bits_;
    uint32_t refcount_order_;
    uint32_t rb_bits_; // refcount entries per block, log2
    Qcow2Extent* extent_storage_ = nullptr;
    Qcow2Extents used_;
    uint64_t* reftable_ = nullptr; // host-endian copy of the on-disk table
    uint64_t rt_size_ = 0;         // entries
    uint64_t rt_offset_ = 0;
    uint64_t max_rt_index_ = 0;
    uint64_t free_index_ = 0;
    uint64_t file_len_ = 0;
    uint64_t real_len_ = 0;
};

} // namespace instar::qcow2
