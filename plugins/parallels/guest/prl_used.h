// qemu 10.0's map of used host clusters (BDRVParallelsState::used_bmap) and its allocation of one
// new cluster (allocate_clusters), as check's duplicate repair uses them. Clusters are counted from
// data_start; the map covers the file as open found it, and grows when qemu preallocates past the
// data end. Freestanding-clean.
#pragma once

#include "prl_header.h"

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::parallels {

// qemu preallocates this much past the data end when no hole is free (its prealloc-size default,
// 128 MiB, in sectors; at least one cluster).
// Linux errno values of qemu's allocation failures.
inline constexpr int32_t PRL_E2BIG = 7, PRL_ENOMEM = 12, PRL_EBUSY = 16;

inline constexpr uint64_t PRL_PREALLOC_SECTORS = (uint64_t{128} << 20) / PRL_SECTOR;

// qemu's host_cluster_index: (off - data_start) / cluster as int64, truncated to uint32.
inline uint64_t prl_host_cluster(const PrlImage& img, uint64_t data_start, uint64_t off) {
    return static_cast<uint32_t>(static_cast<int64_t>(off - data_start) / static_cast<int64_t>(img.cluster_size));
}

class PrlUsedMap {
public:
    // Bytes of map at most (qemu's bitmap_try_new fails with ENOMEM where memory ends): the same
    // bound as the duplicate check's bitmap.
    PrlUsedMap(guest::Allocator& alloc, uint64_t max_bytes) : alloc_(alloc), max_bytes_(max_bytes) {}
    ~PrlUsedMap() { release(); }
    PrlUsedMap(const PrlUsedMap&) = delete;
    PrlUsedMap& operator=(const PrlUsedMap&) = delete;

    // parallels_fill_used_bitmap: a bit per cluster of [data_start, file_bytes), set for every BAT
    // entry pointing there (duplicates and entries outside ignored). NoMemory past the bound;
    // Invalid (the map stays empty) when the file ends before data_start.
    guest::Status fill(guest::BlockDevice& dev, const PrlImage& img, uint64_t data_start, uint64_t file_bytes);
    void release();

    // allocate_clusters for one cluster: the first free cluster of the map, else the data end (the
    // map then grows by the cluster and qemu's preallocation). *host_off gets the cluster's byte
    // offset; *data_end (sectors) moves past it. 0, or qemu's -errno: -EBUSY/-E2BIG from mark_used
    // (an inconsistent map), -ENOMEM past the bound. *zeroed (if given): whether qemu writes zeros
    // over the cluster first (its preallocation, or a hole below the data end); a hole past the
    // data end keeps its old bytes where the write does not cover it.
    int32_t allocate(const PrlImage& img, uint64_t data_start, uint64_t* data_end, uint64_t* host_off,
                     bool* zeroed = nullptr);

    // parallels_co_pdiscard: the cluster at byte `off` is free again.
    void release_cluster(const PrlImage& img, uint64_t data_start, uint64_t off) {
        const uint64_t idx = prl_host_cluster(img, data_start, off);
        if (idx < size_)
            map_[idx / 8] = static_cast<uint8_t>(map_[idx / 8] & ~(1u << (idx % 8)));
    }

private:
    guest::Status grow(uint64_t bits);
    bool test(uint64_t i) const { return (map_[i / 8] >> (i % 8)) & 1u; }
    void set(uint64_t i) { map_[i / 8] = static_cast<uint8_t>(map_[i / 8] | (1u << (i % 8))); }

    guest::Allocator& alloc_;
    uint64_t max_bytes_;
    uint8_t* map_ = nullptr;
    uint64_t bytes_ = 0;
    uint64_t size_ = 0; // bits
};

} // namespace instar::parallels
