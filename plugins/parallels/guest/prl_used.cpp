// qemu 10.0's used-cluster map and one-cluster allocation (prl_used.h).
#include "prl_used.h"

namespace instar::parallels {

using guest::Status;

void PrlUsedMap::release() {
    if (map_ != nullptr)
        alloc_.deallocate(map_, static_cast<size_t>(bytes_));
    map_ = nullptr;
    bytes_ = 0;
    size_ = 0;
}

Status PrlUsedMap::grow(uint64_t bits) {
    const uint64_t bytes = (bits + 7) / 8;
    if (bytes > max_bytes_)
        return Status::NoMemory;
    if (bytes > bytes_) {
        auto* m = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(bytes), 8));
        if (m == nullptr)
            return Status::NoMemory;
        __builtin_memset(m, 0, static_cast<size_t>(bytes));
        if (map_ != nullptr) {
            __builtin_memcpy(m, map_, static_cast<size_t>(bytes_));
            alloc_.deallocate(map_, static_cast<size_t>(bytes_));
        }
        map_ = m;
        bytes_ = bytes;
    }
    size_ = bits;
    return Status::Ok;
}

Status PrlUsedMap::fill(guest::BlockDevice& dev, const PrlImage& img, uint64_t data_start, uint64_t file_bytes) {
    release();
    if (file_bytes < data_start)
        return Status::Invalid;
    const uint64_t bits = (file_bytes - data_start + img.cluster_size - 1) / img.cluster_size;
    if (bits == 0)
        return Status::Ok;
    if (const Status st = grow(bits); st != Status::Ok)
        return st;
    return prl_each_entry(dev, img, [&](uint64_t, uint32_t e) {
        const uint64_t off = img.entry_sector(e) * PRL_SECTOR;
        if (off != 0) {
            const uint64_t idx = prl_host_cluster(img, data_start, off);
            if (idx < size_)
                set(idx);
        }
        return true;
    });
}

int32_t PrlUsedMap::allocate(const PrlImage& img, uint64_t data_start, uint64_t* data_end, uint64_t* host_off,
                             bool* zeroed) {
    uint64_t free = 0;
    while (free < size_ && test(free))
        ++free;
    uint64_t off;
    bool zero = true;
    if (free == size_) {
        // qemu writes zeros over the cluster and its preallocation; the close cuts the file back to
        // the data end, so only the cluster (written whole by the caller) is visible.
        const uint64_t prealloc = PRL_PREALLOC_SECTORS > img.tracks ? PRL_PREALLOC_SECTORS : img.tracks;
        if (const Status st = grow(size_ + (img.cluster_size + prealloc * PRL_SECTOR) / img.cluster_size);
            st != Status::Ok)
            return -PRL_ENOMEM;
        off = *data_end * PRL_SECTOR;
    } else {
        off = data_start + free * img.cluster_size;
        zero = off < *data_end * PRL_SECTOR;
    }
    const uint64_t idx = prl_host_cluster(img, data_start, off);
    if (idx + 1 > size_)
        return -PRL_E2BIG;
    if (test(idx))
        return -PRL_EBUSY;
    set(idx);
    if (off + img.cluster_size > *data_end * PRL_SECTOR)
        *data_end = (off + img.cluster_size) / PRL_SECTOR;
    *host_off = off;
    if (zeroed != nullptr)
        *zeroed = zero;
    return 0;
}

} // namespace instar::parallels
