// L1/L2 layout of a new image: ports of qcow2_grow_l1_table, l2_allocate, qcow2_write_l1_entry,
// qcow2_alloc_host_offset, qcow2_alloc_cluster_link_l2, preallocate_co and the falloc/full branch of
// qcow2_co_truncate, for an image that starts empty.
#include "qcow2_create_tables.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"

#include <instar/guest/format_util.h>

namespace instar::qcow2 {

namespace {

constexpr uint64_t QCOW_OFLAG_COPIED = uint64_t{1} << 63;
constexpr uint64_t INT_MAX_U = 0x7fffffff;
constexpr uint64_t L1_ENTRIES_PER_SECTOR = 64; // qemu rewrites one 512-byte L1 sector per update
constexpr uint64_t QCOW_EXTL2_SUBCLUSTERS_PER_CLUSTER = 32;

} // namespace

Qcow2Tables::Qcow2Tables(Qcow2Alloc& a, guest::Allocator& alloc, bool extended_l2)
    : a_(a), alloc_(alloc), cluster_bits_(a.cluster_bits()), l2_entry_size_(extended_l2 ? 16 : 8),
      l2_bits_(a.cluster_bits() - (extended_l2 ? 4 : 3)),
      subcluster_size_(a.cluster_size() / (extended_l2 ? QCOW_EXTL2_SUBCLUSTERS_PER_CLUSTER : 1)) {}

Qcow2Tables::~Qcow2Tables() {
    for (Slot& s : slots_)
        if (s.buf != nullptr)
            alloc_.deallocate(s.buf, static_cast<size_t>(a_.cluster_size()));
}

int64_t Qcow2Tables::init() {
    for (Slot& s : slots_) {
        s.buf = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(a_.cluster_size()), 8));
        if (s.buf == nullptr)
            return QCOW2_ENOMEM;
    }
    return 0;
}

uint64_t Qcow2Tables::size_to_l1(uint64_t size) const {
    const uint32_t shift = cluster_bits_ + l2_bits_;
    return (size >> shift) + ((size & ((uint64_t{1} << shift) - 1)) != 0 ? 1 : 0);
}

int64_t Qcow2Tables::grow_l1(uint64_t min_size) {
    if (min_size <= l1_size_)
        return 0;
    if (min_size > INT_MAX_U / 8 || min_size > QCOW_MAX_L1_SIZE / 8)
        return QCOW2_EFBIG;
    const uint64_t bytes = min_size * 8;
    const int64_t offset = a_.alloc_clusters(bytes);
    if (offset < 0)
        return offset;
    // qemu writes the whole new table (all zeros: the old one was empty), so it is allocated on disk.
    const int64_t r = write_zeros(static_cast<uint64_t>(offset), bytes);
    if (r < 0)
        return r;
    l1_offset_ = static_cast<uint64_t>(offset);
    l1_size_ = min_size;
    return 0; // freeing the old, empty table is a no-op
}

int64_t Qcow2Tables::write_zeros(uint64_t offset, uint64_t len, guest::BlockDevice* dev) {
    if (len == 0)
        return 0;
    const size_t chunk = len < QCOW2_CREATE_ZERO_CHUNK ? static_cast<size_t>(len) : QCOW2_CREATE_ZERO_CHUNK;
    guest::ScopedBuffer zeros(alloc_, chunk);
    if (zeros.p == nullptr)
        return QCOW2_ENOMEM;
    for (size_t i = 0; i < chunk; ++i)
        zeros.p[i] = 0;
    for (uint64_t done = 0; done < len;) {
        const size_t n = len - done < chunk ? static_cast<size_t>(len - done) : chunk;
        if (dev != nullptr) {
            if (dev->write(offset + done, zeros.p, n) != guest::Status::Ok)
                return QCOW2_EIO;
        } else {
            const int64_t r = a_.write(offset + done, zeros.p, n);
            if (r < 0)
                return r;
        }
        done += n;
    }
    if (dev != nullptr && dev == data_ && offset + len > data_len_)
        data_len_ = offset + len;
    return 0;
}

int64_t Qcow2Tables::grow_data_file(uint64_t length, guest::Prealloc mode, guest::CreateTarget& target) {
    if (data_ == nullptr || length <= data_len_)
        return 0;
    const bool from_empty = data_len_ == 0;
    if (target.set_length(*data_, length, mode) != guest::Status::Ok)
        return QCOW2_EIO;
    data_len_ = length;
    // file-posix's allocate_first_block after growing an empty file (off and falloc; full wrote it).
    if (from_empty && mode != guest::Prealloc::Full)
        return write_zeros(0, length < QCOW2_FILE_FIRST_BLOCK ? QCOW2_SECTOR : QCOW2_FILE_FIRST_BLOCK, data_);
    return 0;
}

int64_t Qcow2Tables::write_l1_entry(uint64_t l1_index, uint64_t value) {
    const uint64_t group = l1_index / L1_ENTRIES_PER_SECTOR;
    if (group != l1_group_) { // entries are set in increasing order, so an earlier sector is complete
        l1_group_ = group;
        for (uint64_t& e : l1_sector_)
            e = 0;
    }
    l1_sector_[l1_index % L1_ENTRIES_PER_SECTOR] = value;
    uint8_t sector[L1_ENTRIES_PER_SECTOR * 8];
    for (uint64_t i = 0; i < L1_ENTRIES_PER_SECTOR; ++i)
        store_be64(sector + 8 * i, l1_sector_[i]);
    return a_.write(l1_offset_ + group * sizeof sector, sector, sizeof sector);
}

int64_t Qcow2Tables::write_slot(Slot& s) {
    if (!s.dirty)
        return 0;
    s.dirty = false;
    return a_.write(s.offset, s.buf, static_cast<size_t>(a_.cluster_size()));
}

int64_t Qcow2Tables::l2_allocate(uint64_t l1_index, Slot** out) {
    const int64_t offset = a_.alloc_clusters(a_.cluster_size());
    if (offset < 0)
        return offset;
    if (offset == 0)
        return QCOW2_EIO; // qemu: "Preventing invalid allocation of L2 table at offset 0"
    a_.note_write(static_cast<uint64_t>(offset) + a_.cluster_size()); // qemu writes the empty table now
    Slot* victim = &slots_[0];
    for (Slot& s : slots_)
        if (s.l1_index == UINT64_MAX || (victim->l1_index != UINT64_MAX && s.l1_index < victim->l1_index))
            victim = &s;
    int64_t r = write_slot(*victim);
    if (r < 0)
        return r;
    victim->l1_index = l1_index;
    victim->offset = static_cast<uint64_t>(offset);
    for (uint64_t i = 0; i < a_.cluster_size(); ++i)
        victim->buf[i] = 0;
    victim->dirty = true;
    last_l2_ = l1_index;
    r = write_l1_entry(l1_index, static_cast<uint64_t>(offset) | QCOW_OFLAG_COPIED);
    if (r < 0)
        return r;
    *out = victim;
    return 0;
}

int64_t Qcow2Tables::get_cluster_table(uint64_t guest_offset, Slot** out) {
    const uint64_t l1_index = guest_offset >> (cluster_bits_ + l2_bits_);
    if (l1_index >= l1_size_)
        return QCOW2_EIO; // the L1 table always covers the whole new disk
    for (Slot& s : slots_)
        if (s.l1_index == l1_index) {
            *out = &s;
            return 0;
        }
    if (last_l2_ != UINT64_MAX && l1_index <= last_l2_)
        return QCOW2_EIO; // an evicted table: qemu never goes back that far
    return l2_allocate(l1_index, out);
}

int64_t Qcow2Tables::link_l2(const Meta& m) {
    // perform_cow: the tail of the last (sub)cluster past the request is copied from the guest
    // disk, which has no data yet (the backing file is attached only after the truncate): zeros.
    const uint64_t span = m.clusters << cluster_bits_;
    if (m.bytes < span) {
        const uint64_t cow_end = (m.bytes + subcluster_size_ - 1) / subcluster_size_ * subcluster_size_;
        const int64_t z = write_zeros(m.host + m.bytes, cow_end - m.bytes, data_);
        if (z < 0)
            return z;
    }
    Slot* s = nullptr;
    const int64_t r = get_cluster_table(m.guest, &s);
    if (r < 0)
        return r;
    const uint64_t entries = uint64_t{1} << l2_bits_;
    const uint64_t index = (m.guest >> cluster_bits_) & (entries - 1);
    if (index + m.clusters > entries)
        return QCOW2_EIO;
    for (uint64_t i = 0; i < m.clusters; ++i) {
        // Preallocated clusters: offset | COPIED, and (extended L2) an all-zero subcluster bitmap.
        store_be64(s->buf + (index + i) * l2_entry_size_, (m.host + (i << cluster_bits_)) | QCOW_OFLAG_COPIED);
    }
    s->dirty = true;
    return 0;
}

int64_t Qcow2Tables::alloc_host_offset(uint64_t offset, uint64_t* bytes, uint64_t* host, Meta* metas,
                                       size_t* count) {
    constexpr uint64_t INV = UINT64_MAX;
    const uint64_t cs = a_.cluster_size();
    const uint64_t entries = uint64_t{1} << l2_bits_;
    uint64_t start = offset;
    uint64_t remaining = *bytes;
    uint64_t cluster_offset = INV;
    uint64_t cur = 0;
    *host = INV;
    *count = 0;
    for (;;) {
        if (*host == INV && cluster_offset != INV)
            *host = cluster_offset;
        start += cur;
        remaining -= cur;
        if (cluster_offset != INV)
            cluster_offset += cur;
        if (remaining == 0)
            break;
        cur = remaining;
        // handle_copied: loads (allocating) the L2 table; every entry of a new image is unallocated.
        Slot* s = nullptr;
        int64_t r = get_cluster_table(start, &s);
        if (r < 0)
            return r;
        // handle_alloc
        uint64_t nb = cur / cs + (cur % cs != 0 ? 1 : 0);
        const uint64_t l2_index = (start >> cluster_bits_) & (entries - 1);
        nb = nb < entries - l2_index ? nb : entries - l2_index;
        nb = nb < (INT_MAX_U >> cluster_bits_) ? nb : (INT_MAX_U >> cluster_bits_);
        uint64_t alloc_offset = 0;
        if (data_ != nullptr) {
            // do_alloc_cluster_offset with a data file: the guest offset, nothing refcounted.
            alloc_offset = start & ~(cs - 1);
        } else if (cluster_offset == INV) {
            r = a_.alloc_clusters(nb * cs);
            if (r < 0)
                return r;
            alloc_offset = static_cast<uint64_t>(r);
        } else {
            r = a_.alloc_clusters_at(cluster_offset, nb);
            if (r < 0)
                return r;
            if (r == 0) // can't extend the contiguous allocation
                break;
            nb = static_cast<uint64_t>(r);
            alloc_offset = cluster_offset;
        }
        cur = cur < nb * cs ? cur : nb * cs;
        if (data_ != nullptr) {
            // With a data file nothing breaks contiguity, so one call spans every L2 table of the
            // chunk: link each now, while its table is still held (the final bytes are the same).
            r = link_l2({start, alloc_offset, nb, cur});
            if (r < 0)
                return r;
        } else {
            if (*count == QCOW2_CREATE_MAX_METAS)
                return QCOW2_EIO;
            metas[(*count)++] = {start, alloc_offset, nb, cur};
        }
        cluster_offset = alloc_offset;
    }
    *bytes -= remaining;
    return 0;
}

int64_t Qcow2Tables::prealloc_metadata(uint64_t new_length, guest::Prealloc mode, guest::CreateTarget* target) {
    const uint64_t cs = a_.cluster_size();
    const uint64_t step = (INT_MAX_U / cs) * cs; // preallocate_co's QEMU_ALIGN_DOWN(INT_MAX, cluster_size)
    uint64_t offset = 0;
    uint64_t bytes = new_length;
    uint64_t host = 0;
    uint64_t cur = 0;
    bool ran = false;
    while (bytes != 0) {
        cur = bytes < step ? bytes : step;
        Meta metas[QCOW2_CREATE_MAX_METAS];
        size_t count = 0;
        int64_t r = alloc_host_offset(offset, &cur, &host, metas, &count);
        if (r < 0)
            return r;
        for (size_t i = count; i > 0; --i) { // qemu's l2meta list is newest first
            r = link_l2(metas[i - 1]);
            if (r < 0)
                return r;
        }
        bytes -= cur;
        offset += cur;
        ran = true;
    }
    // The file is extended (a hole) to the end of the last data allocated.
    if (data_ != nullptr) {
        if (!ran || host + cur <= data_len_)
            return 0;
        if (target == nullptr)
            return QCOW2_EIO;
        return grow_data_file(host + cur, mode == guest::Prealloc::Metadata ? guest::Prealloc::Off : mode, *target);
    }
    if (ran && host + cur > a_.file_length())
        a_.note_write(host + cur);
    return 0;
}

int64_t Qcow2Tables::prealloc_data(uint64_t new_length, guest::Prealloc mode, guest::CreateTarget& target) {
    const uint64_t cs = a_.cluster_size();
    uint64_t old_file_size = a_.file_length();
    const int64_t last = a_.last_cluster(old_file_size);
    old_file_size = last >= 0 ? (static_cast<uint64_t>(last) + 1) * cs : (old_file_size + cs - 1) / cs * cs;
    const uint64_t data_clusters = new_length / cs + (new_length % cs != 0 ? 1 : 0);
    const uint64_t per_l2 = cs / l2_entry_size_;
    // qemu's overestimate: enough refcounts that entering the data in new L2 tables needs no new
    // refcount blocks, plus one table for an unaligned head or tail.
    const uint64_t l2_tables = data_clusters / per_l2 + (data_clusters % per_l2 != 0 ? 1 : 0) + 1;
    const int64_t allocation_start = a_.refcount_area(old_file_size, data_clusters + l2_tables, true, 0, 0);
    if (allocation_start < 0)
        return allocation_start;
    const int64_t got = a_.alloc_clusters_at(static_cast<uint64_t>(allocation_start), data_clusters);
    if (got < 0)
        return got;
    if (static_cast<uint64_t>(got) != data_clusters)
        return QCOW2_EIO; // qemu asserts
    const uint64_t new_file_size = static_cast<uint64_t>(allocation_start) + data_clusters * cs;
    // The data area is added to the file as qemu's protocol layer does it: fallocate or zeros from the
    // current end. Deferred metadata writes all lie before that end, so make it qemu's first.
    if (a_.written_length() < a_.file_length() &&
        target.set_length(target.image(), a_.file_length(), guest::Prealloc::Off) != guest::Status::Ok)
        return QCOW2_EIO;
    if (new_file_size > a_.file_length()) {
        if (target.set_length(target.image(), new_file_size, mode) != guest::Status::Ok)
            return QCOW2_EIO;
        a_.note_write(new_file_size);
        a_.note_real_write(new_file_size);
    }
    uint64_t host = static_cast<uint64_t>(allocation_start);
    uint64_t guest_offset = 0;
    for (uint64_t left = data_clusters; left != 0;) {
        const uint64_t index = (guest_offset >> cluster_bits_) & (per_l2 - 1);
        const uint64_t n = left < per_l2 - index ? left : per_l2 - index;
        const int64_t r = link_l2({guest_offset, host, n, n * cs});
        if (r < 0)
            return r;
        guest_offset += n * cs;
        host += n * cs;
        left -= n;
    }
    return 0;
}

int64_t Qcow2Tables::flush() {
    for (Slot& s : slots_) {
        const int64_t r = write_slot(s);
        if (r < 0)
            return r;
    }
    return 0;
}

} // namespace instar::qcow2
