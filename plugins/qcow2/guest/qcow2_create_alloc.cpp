// A port of qemu's qcow2 refcount allocator (block/qcow2-refcount.c: alloc_clusters_noref,
// update_refcount, alloc_refcount_block, qcow2_refcount_area, qcow2_refcount_metadata_size) over
// the create-time refcount model.
#include "qcow2_create_alloc.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"
#include "qcow2_sort.h"

#include <instar/guest/format_util.h>

namespace instar::qcow2 {

using guest::Status;

namespace {

constexpr uint64_t INT64_MAX_U = 0x7fffffffffffffffull;

uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// qcow2_refcount_metadata_size: the fixed point of refcount blocks and table clusters covering
// `clusters` clusters and themselves (with 50% slack in the table when `generous`).
uint64_t refcount_metadata_blocks(uint64_t clusters, uint64_t cluster_size, uint32_t refcount_order,
                                  bool generous) {
    const uint64_t blocks_per_table_cluster = cluster_size / 8;
    const uint64_t refcounts_per_block = (cluster_size * 8) >> refcount_order;
    uint64_t table = 0;
    uint64_t blocks = 0;
    uint64_t last = 0;
    uint64_t n = 0;
    do {
        last = n;
        blocks = div_round_up(clusters + table + blocks, refcounts_per_block);
        table = div_round_up(blocks, blocks_per_table_cluster);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += div_round_up(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    return blocks;
}

// Sets refcount entry `index` of a refcount block to 1 (qemu's set_refcount_ro0..6 layouts).
void set_refcount_one(uint8_t* block, uint64_t index, uint32_t order) {
    if (order < 3) {
        const uint32_t bits = 1u << order;
        const uint64_t per_byte = 8 >> order;
        block[index / per_byte] |= static_cast<uint8_t>(1u << (bits * (index % per_byte)));
    } else {
        const uint64_t width = uint64_t{1} << (order - 3);
        block[index * width + width - 1] = 1;
    }
}

// Sets refcount entry `index` of a refcount block to `v` (qemu's set_refcount_ro0..6 layouts).
void set_refcount(uint8_t* block, uint64_t index, uint32_t order, uint64_t v) {
    if (order < 3) {
        const uint32_t bits = 1u << order;
        const uint64_t per_byte = 8 >> order;
        const uint32_t shift = static_cast<uint32_t>(bits * (index % per_byte));
        const uint32_t mask = ((1u << bits) - 1) << shift;
        uint8_t& b = block[index / per_byte];
        b = static_cast<uint8_t>((b & ~mask) | ((static_cast<uint32_t>(v) << shift) & mask));
    } else {
        const uint64_t width = uint64_t{1} << (order - 3);
        for (uint64_t k = 0; k < width; ++k)
            block[index * width + width - 1 - k] = static_cast<uint8_t>(k < 8 ? v >> (8 * k) : 0);
    }
}

} // namespace

size_t Qcow2Alloc::shared_find(uint64_t cluster) const {
    return static_cast<size_t>(
        partition_point(shared_, shared_count_, [cluster](const auto& s) { return s.cluster < cluster; }));
}

uint64_t Qcow2Alloc::refcount(uint64_t cluster) const {
    const size_t i = shared_find(cluster);
    if (i < shared_count_ && shared_[i].cluster == cluster)
        return shared_[i].refcount;
    return used_.contains(cluster) ? 1 : 0;
}

int64_t Qcow2Alloc::shared_increment(uint64_t cluster) {
    const size_t i = shared_find(cluster);
    if (i < shared_count_ && shared_[i].cluster == cluster) {
        if (shared_[i].refcount >= refcount_max())
            return -34; // qemu's -ERANGE
        ++shared_[i].refcount;
        return 0;
    }
    if (refcount_max() < 2)
        return -34;
    if (shared_count_ == shared_cap_) {
        if (shared_cap_ >= QCOW2_MAX_SHARED_CLUSTERS)
            return QCOW2_EFBIG;
        const size_t cap = shared_cap_ == 0 ? 256 : shared_cap_ * 2;
        auto* grown = static_cast<Qcow2SharedRef*>(alloc_.allocate(cap * sizeof(Qcow2SharedRef), 8));
        if (grown == nullptr)
            return QCOW2_ENOMEM;
        for (size_t k = 0; k < shared_count_; ++k)
            grown[k] = shared_[k];
        if (shared_ != nullptr)
            alloc_.deallocate(shared_, shared_cap_ * sizeof(Qcow2SharedRef));
        shared_ = grown;
        shared_cap_ = cap;
    }
    for (size_t k = shared_count_; k > i; --k)
        shared_[k] = shared_[k - 1];
    shared_[i] = {cluster, 2};
    ++shared_count_;
    return 0;
}

Qcow2Alloc::Qcow2Alloc(guest::BlockDevice& dev, guest::Allocator& alloc, uint32_t cluster_bits,
                       uint32_t refcount_order)
    : dev_(dev), alloc_(alloc), cluster_bits_(cluster_bits), refcount_order_(refcount_order),
      rb_bits_(cluster_bits + 3 - refcount_order),
      extent_storage_(static_cast<Qcow2Extent*>(alloc.allocate(QCOW2_CREATE_MAX_EXTENTS * sizeof(Qcow2Extent), 8))),
      used_(extent_storage_) {}

Qcow2Alloc::~Qcow2Alloc() {
    if (extent_storage_ != nullptr)
        alloc_.deallocate(extent_storage_, QCOW2_CREATE_MAX_EXTENTS * sizeof(Qcow2Extent));
    if (reftable_ != nullptr)
        alloc_.deallocate(reftable_, rt_size_ * 8);
    if (shared_ != nullptr)
        alloc_.deallocate(shared_, shared_cap_ * sizeof(Qcow2SharedRef));
}

int64_t Qcow2Alloc::write(uint64_t offset, const void* buf, size_t len) {
    if (dev_.write(offset, buf, len) != Status::Ok)
        return QCOW2_EIO;
    note_write(offset + len);
    note_real_write(offset + len);
    return 0;
}

int64_t Qcow2Alloc::write_reftable_range(const uint64_t* table, uint64_t first, uint64_t count,
                                         uint64_t table_offset) {
    if (count == 0)
        return 0;
    const size_t cap = count * 8 < QCOW2_CREATE_TABLE_CHUNK ? static_cast<size_t>(count * 8) : QCOW2_CREATE_TABLE_CHUNK;
    guest::ScopedBuffer buf(alloc_, cap);
    uint8_t* chunk = buf.p;
    if (chunk == nullptr)
        return QCOW2_ENOMEM;
    for (uint64_t i = 0; i < count;) {
        const uint64_t n = count - i < cap / 8 ? count - i : cap / 8;
        for (uint64_t k = 0; k < n; ++k)
            store_be64(chunk + 8 * k, table[first + i + k]);
        const int64_t r = write(table_offset + (first + i) * 8, chunk, static_cast<size_t>(n * 8));
        if (r < 0)
            return r;
        i += n;
    }
    return 0;
}

void Qcow2Alloc::update_max_index() {
    uint64_t i = rt_size_;
    while (i > 0 && reftable_[i - 1] == 0)
        --i;
    max_rt_index_ = i == 0 ? 0 : i - 1;
}

int64_t Qcow2Alloc::start() {
    const uint64_t cs = cluster_size();
    if (extent_storage_ == nullptr)
        return QCOW2_ENOMEM;
    reftable_ = static_cast<uint64_t*>(alloc_.allocate(cs, 8));
    if (reftable_ == nullptr)
        return QCOW2_ENOMEM;
    rt_size_ = cs / 8;
    for (uint64_t i = 0; i < rt_size_; ++i)
        reftable_[i] = 0;
    reftable_[0] = 2 * cs;
    rt_offset_ = cs;
    max_rt_index_ = 0;
    note_write(cs); // the first header, rewritten at the end
    int64_t r = write_reftable_range(reftable_, 0, rt_size_, rt_offset_);
    if (r < 0)
        return r;
    note_write(3 * cs); // the empty refcount block, written with its final contents at the end
    r = alloc_clusters(3 * cs);
    if (r < 0)
        return r;
    return r == 0 ? 0 : QCOW2_EIO; // qemu aborts: "first cluster in empty image is already in use"
}

int64_t Qcow2Alloc::alloc_noref(uint64_t bytes, uint64_t max) {
    const uint64_t nb = div_round_up(bytes, cluster_size());
    if (nb == 0)
        return static_cast<int64_t>(free_index_ << cluster_bits_);
    // qemu tests clusters one by one from free_cluster_index and restarts the count after each
    // used one; jumping over whole used ranges finds the same place.
    uint64_t c = free_index_;
    for (;;) {
        c = used_.next_free(c);
        const uint64_t next_used = used_.next_allocated(c);
        if (next_used == UINT64_MAX || next_used - c >= nb)
            break;
        c = next_used;
    }
    free_index_ = c + nb;
    if (free_index_ - 1 > (max >> cluster_bits_))
        return QCOW2_EFBIG;
    return static_cast<int64_t>(c << cluster_bits_);
}

int64_t Qcow2Alloc::update_refcount(uint64_t offset, uint64_t length, bool decrease) {
    if (length == 0)
        return 0;
    const uint64_t start = offset >> cluster_bits_;
    const uint64_t last = (offset + length - 1) >> cluster_bits_;
    uint64_t c = start;
    uint64_t old_table_index = UINT64_MAX;
    int64_t ret = 0;
    while (c <= last) {
        const uint64_t table_index = c >> rb_bits_;
        if (table_index != old_table_index) {
            ret = alloc_refcount_block(c);
            // The caller restarts its search for free clusters; try the same ones first.
            if (ret == QCOW2_EAGAIN && free_index_ > start)
                free_index_ = start;
            if (ret < 0)
                break;
        }
        old_table_index = table_index;
        const uint64_t block_end = (table_index + 1) << rb_bits_;
        const uint64_t run_end = last + 1 < block_end ? last + 1 : block_end;
        if (decrease) {
            if (used_.next_free(c) < run_end) {
                ret = QCOW2_EINVAL; // a refcount would drop below zero
                break;
            }
            if (!used_.clear(c, run_end)) {
                ret = QCOW2_ENOMEM;
                break;
            }
            if (c < free_index_)
                free_index_ = c;
        } else {
            if (used_.next_allocated(c) < run_end) {
                if (!shared_enabled_) {
                    ret = QCOW2_EINVAL; // never happens for create: every refcount goes 0 -> 1
                    break;
                }
                // convert -c: compressed clusters share host clusters. qemu checks every refcount
                // for overflow before changing any (update_refcount's first pass).
                for (uint64_t k = c; k < run_end && ret >= 0; ++k)
                    if (used_.contains(k) && refcount(k) >= refcount_max())
                        ret = -34; // -ERANGE
                for (uint64_t k = c; k < run_end && ret >= 0; ++k)
                    ret = used_.contains(k) ? shared_increment(k) : (used_.set(k, k + 1) ? 0 : QCOW2_ENOMEM);
                if (ret < 0)
                    break;
            } else if (!used_.set(c, run_end)) {
                ret = QCOW2_ENOMEM;
                break;
            }
        }
        c = run_end;
    }
    if (ret < 0 && c > start)
        (void)update_refcount(start << cluster_bits_, (c - start) << cluster_bits_, !decrease); // qemu's undo
    return ret;
}

int64_t Qcow2Alloc::alloc_refcount_block(uint64_t cluster_index) {
    const uint64_t table_index = cluster_index >> rb_bits_;
    if (table_index < rt_size_ && reftable_[table_index] != 0)
        return 0;

    const int64_t new_block = alloc_noref(cluster_size(), INT64_MAX_U);
    if (new_block < 0)
        return new_block;
    if (new_block == 0)
        return QCOW2_EIO; // qemu: "Preventing invalid allocation of refcount block at offset 0"
    const uint64_t block_cluster = static_cast<uint64_t>(new_block) >> cluster_bits_;
    if (in_same_block(block_cluster, cluster_index)) {
        if (!used_.set(block_cluster, block_cluster + 1)) // the block describes itself
            return QCOW2_ENOMEM;
    } else {
        const int64_t r = update_refcount(static_cast<uint64_t>(new_block), cluster_size(), false);
        if (r < 0)
            return r;
    }
    note_write(static_cast<uint64_t>(new_block) + cluster_size());

    if (table_index < rt_size_) {
        reftable_[table_index] = static_cast<uint64_t>(new_block);
        const int64_t r = write_reftable_range(reftable_, table_index, 1, rt_offset_);
        if (r < 0)
            return r;
        max_rt_index_ = table_index > max_rt_index_ ? table_index : max_rt_index_;
        return QCOW2_EAGAIN; // the new block may sit where the caller meant to put its data
    }

    // Grow the refcount table: new self-describing structures at the next refcount-block boundary.
    const uint64_t used_clusters = (cluster_index + 1 > block_cluster + 1 ? cluster_index : block_cluster) + 1;
    const uint64_t blocks_used = div_round_up(used_clusters, uint64_t{1} << rb_bits_);
    const uint64_t meta_offset = (blocks_used << rb_bits_) << cluster_bits_;
    const int64_t r = refcount_area(meta_offset, 0, false, table_index, static_cast<uint64_t>(new_block));
    if (r < 0)
        return r;
    return QCOW2_EAGAIN;
}

int64_t Qcow2Alloc::refcount_area(uint64_t start_offset, uint64_t additional_clusters, bool exact_size,
                                  uint64_t new_refblock_index, uint64_t new_refblock_offset) {
    const uint64_t cs = cluster_size();
    const uint64_t total =
        refcount_metadata_blocks((start_offset >> cluster_bits_) + additional_clusters, cs, refcount_order_, !exact_size);
    if (total > QCOW_MAX_REFTABLE_SIZE)
        return QCOW2_EFBIG;
    const uint64_t area_index = (start_offset >> cluster_bits_) >> rb_bits_;
    uint64_t table_size = exact_size ? total : total + div_round_up(total, 2);
    const uint64_t per_cluster = cs / 8;
    table_size = div_round_up(table_size, per_cluster) * per_cluster;
    const uint64_t table_clusters = table_size / per_cluster;
    // qemu accepts up to 8 Mi entries here, but then refuses to open a table above
    // QCOW_MAX_REFTABLE_SIZE bytes, so such an image could never be created.
    if (table_size > QCOW_MAX_REFTABLE_SIZE / 8)
        return QCOW2_EFBIG;

    auto* new_table = static_cast<uint64_t*>(alloc_.allocate(table_size * 8, 8));
    if (new_table == nullptr)
        return QCOW2_ENOMEM;
    for (uint64_t i = 0; i < table_size; ++i)
        new_table[i] = 0;
    const uint64_t copy = table_size > max_rt_index_ ? max_rt_index_ + 1 : table_size;
    for (uint64_t i = 0; i < copy && i < rt_size_; ++i)
        new_table[i] = reftable_[i];
    if (new_refblock_offset != 0) {
        if (new_refblock_index >= total) {
            alloc_.deallocate(new_table, table_size * 8);
            return QCOW2_EIO; // qemu asserts
        }
        new_table[new_refblock_index] = new_refblock_offset;
    }

    uint64_t additional_blocks = 0;
    for (uint64_t i = area_index; i < total; ++i)
        additional_blocks += new_table[i] == 0 ? 1 : 0;
    const uint64_t table_offset = start_offset + additional_blocks * cs;
    const uint64_t end_offset = table_offset + table_clusters * cs;

    uint64_t block_offset = start_offset;
    const uint64_t block_span = (uint64_t{1} << rb_bits_) * cs; // bytes one refcount block covers
    for (uint64_t i = area_index; i < total; ++i) {
        if (new_table[i] == 0) {
            new_table[i] = block_offset;
            block_offset += cs;
            note_write(block_offset);
        }
        const uint64_t first_covered = i * block_span;
        if (first_covered < end_offset) {
            const uint64_t from = first_covered < start_offset ? start_offset : first_covered;
            const uint64_t to = end_offset - first_covered < block_span ? end_offset : first_covered + block_span;
            if (!used_.set(from >> cluster_bits_, to >> cluster_bits_)) {
                alloc_.deallocate(new_table, table_size * 8);
                return QCOW2_ENOMEM;
            }
        }
    }

    int64_t r = write_reftable_range(new_table, 0, table_size, table_offset);
    if (r < 0) {
        alloc_.deallocate(new_table, table_size * 8);
        return r;
    }
    const uint64_t old_offset = rt_offset_;
    const uint64_t old_size = rt_size_;
    alloc_.deallocate(reftable_, rt_size_ * 8);
    reftable_ = new_table;
    rt_size_ = table_size;
    rt_offset_ = table_offset;
    update_max_index();
    r = free_clusters(old_offset, old_size * 8);
    if (r < 0)
        return r;
    return static_cast<int64_t>(end_offset);
}

int64_t Qcow2Alloc::alloc_clusters(uint64_t bytes) {
    int64_t offset = 0;
    int64_t r = 0;
    do {
        offset = alloc_noref(bytes, QCOW_MAX_CLUSTER_OFFSET);
        if (offset < 0)
            return offset;
        r = update_refcount(static_cast<uint64_t>(offset), bytes, false);
    } while (r == QCOW2_EAGAIN);
    return r < 0 ? r : offset;
}

int64_t Qcow2Alloc::alloc_clusters_at(uint64_t offset, uint64_t nb_clusters) {
    if (nb_clusters == 0)
        return 0;
    uint64_t n = 0;
    int64_t r = 0;
    do {
        const uint64_t first = offset >> cluster_bits_;
        const uint64_t next_used = used_.next_allocated(first);
        n = next_used == UINT64_MAX || next_used - first >= nb_clusters ? nb_clusters : next_used - first;
        r = update_refcount(offset, n << cluster_bits_, false);
    } while (r == QCOW2_EAGAIN);
    return r < 0 ? r : static_cast<int64_t>(n);
}

int64_t Qcow2Alloc::free_clusters(uint64_t offset, uint64_t bytes) { return update_refcount(offset, bytes, true); }

int64_t Qcow2Alloc::last_cluster(uint64_t file_size) const {
    const uint64_t last = used_.last_allocated_below(file_size / cluster_size() + (file_size % cluster_size() ? 1 : 0));
    return last == UINT64_MAX ? QCOW2_EIO : static_cast<int64_t>(last);
}

int64_t Qcow2Alloc::write_refblocks() {
    const uint64_t cs = cluster_size();
    guest::ScopedBuffer buf(alloc_, static_cast<size_t>(cs));
    if (buf.p == nullptr)
        return QCOW2_ENOMEM;
    for (uint64_t i = 0; i < rt_size_; ++i) {
        if (reftable_[i] == 0)
            continue;
        for (uint64_t k = 0; k < cs; ++k)
            buf.p[k] = 0;
        const uint64_t first = i << rb_bits_;
        const uint64_t end = first + (uint64_t{1} << rb_bits_);
        for (size_t e = used_.first_ending_after(first); e < used_.count() && used_.at(e).start < end; ++e) {
            const uint64_t from = used_.at(e).start > first ? used_.at(e).start : first;
            const uint64_t to = used_.at(e).end < end ? used_.at(e).end : end;
            for (uint64_t c = from; c < to; ++c)
                set_refcount_one(buf.p, c - first, refcount_order_);
        }
        for (size_t k = shared_find(first); k < shared_count_ && shared_[k].cluster < end; ++k)
            set_refcount(buf.p, shared_[k].cluster - first, refcount_order_, shared_[k].refcount);
        const int64_t r = write(reftable_[i], buf.p, static_cast<size_t>(cs));
        if (r < 0)
            return r;
    }
    return 0;
}

} // namespace instar::qcow2
