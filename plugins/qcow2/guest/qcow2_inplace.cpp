// qcow2 in place (qcow2_inplace.h): refcounts, allocation and header updates of an existing image,
// following qemu's block/qcow2-refcount.c (alloc_clusters_noref, update_refcount,
// alloc_refcount_block, qcow2_refcount_area) so the clusters chosen are the ones qemu chooses.
#include "qcow2_inplace.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"
#include "qcow2_read_reason.h"

namespace instar::qcow2 {

namespace {

// A new refcount block may fall under a block that does not exist yet (qemu: "this can recurse at
// most twice"); the bound only stops a hostile table from looping.
constexpr uint32_t INPLACE_MAX_REFBLOCK_DEPTH = 4;
// update_refcount restarts after creating a refcount block; each restart creates at least one block
// that then exists, so a handful suffice; the bound stops a hostile image from looping.
constexpr uint32_t INPLACE_MAX_RESTARTS = 64;
// Clusters in use past the end of the file one allocation may step over: in a sane image the scan
// for a free run ends at the file's end (a crash between allocation and write leaves a few such
// clusters at most); refcounts a hostile image claims further out must not make it unbounded.
constexpr uint64_t INPLACE_MAX_SCAN_PAST_EOF = uint64_t{1} << 20;

uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// qemu's qcow2_refcount_metadata_size: refcount blocks needed to count `clusters` clusters plus
// the refcount structures themselves (a fixed point), with the 1.5x table margin when `generous`.
uint64_t refcount_blocks_needed(uint64_t clusters, uint64_t cs, uint32_t refcount_order, bool generous) {
    const uint64_t per_table_cluster = cs / 8;
    const uint64_t per_block = cs * 8 / (uint64_t{1} << refcount_order);
    uint64_t table = 0, blocks = 0, last = 0, n = 0;
    do {
        last = n;
        blocks = div_round_up(clusters + table + blocks, per_block);
        table = div_round_up(blocks, per_table_cluster);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += div_round_up(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    return blocks;
}

} // namespace

Status Qcow2Inplace::refuse(Status st, const char* text, size_t len) {
    if (host_ != nullptr && len > 0)
        host_->reason(text, len);
    return st;
}

Status Qcow2Inplace::open(guest::BlockDevice& dev, uint64_t file_length, guest::Allocator& alloc,
                          guest::EditHost* host) {
    dev_ = &dev;
    alloc_ = &alloc;
    host_ = host;
    file_len_ = file_length;
    Qcow2HeaderDisk disk{};
    const size_t have = file_length < sizeof disk ? static_cast<size_t>(file_length) : sizeof disk;
    if (have > 0 && dev.read(0, &disk, have) != Status::Ok)
        return Status::IoError;
    HeaderProblem why;
    if (const Status st = qcow2_header_parse(disk, &h_, &why); st != Status::Ok)
        return refuse(st, why.text, why.len);
    cs_ = h_.cluster_size();
    refcount_order_ = h_.refcount_order;
    const uint32_t bits = uint32_t{1} << refcount_order_;
    refcount_max_ = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
    rb_entries_ = cs_ * 8 / bits;
    rb_bits_ = h_.cluster_bits + 3 - refcount_order_;
    ReasonText r;
    if (!qcow2_table_offset_valid(h_, h_.l1_table_offset, h_.l1_size, 8) ||
        (h_.l1_size > 0 && !range_in_file(h_.l1_table_offset, uint64_t{h_.l1_size} * 8))) {
        r.add("L1 table offset ").hex(h_.l1_table_offset).add(" invalid or past the end of the image file");
        return refuse(Status::Corrupt, r.data(), r.size());
    }
    if (h_.refcount_table_clusters == 0) {
        r.add("Image does not contain a reference count table");
        return refuse(Status::Corrupt, r.data(), r.size());
    }
    if (uint64_t{h_.refcount_table_clusters} > (QCOW_MAX_REFTABLE_SIZE >> h_.cluster_bits)) {
        r.add("Reference count table too large");
        return refuse(Status::TooLarge, r.data(), r.size());
    }
    rt_size_ = uint64_t{h_.refcount_table_clusters} * cs_ / 8;
    if (!qcow2_table_offset_valid(h_, h_.refcount_table_offset, rt_size_, 8) ||
        !range_in_file(h_.refcount_table_offset, rt_size_ * 8) || h_.refcount_table_offset < cs_) {
        r.add("Refcount table offset ").hex(h_.refcount_table_offset).add(" invalid or past the end of the image file");
        return refuse(Status::Corrupt, r.data(), r.size());
    }
    rt_alloc_bytes_ = rt_size_ * 8;
    reftable_ = static_cast<uint64_t*>(alloc.allocate(static_cast<size_t>(rt_alloc_bytes_), 64));
    if (reftable_ == nullptr)
        return Status::NoMemory;
    return read_table(h_.refcount_table_offset, reftable_, rt_size_);
}

void Qcow2Inplace::close() {
    for (Slot& s : slots_) {
        if (s.data != nullptr)
            alloc_->deallocate(s.data, static_cast<size_t>(cs_));
        s = Slot{};
    }
    if (reftable_ != nullptr)
        alloc_->deallocate(reftable_, static_cast<size_t>(rt_alloc_bytes_));
    reftable_ = nullptr;
}

bool Qcow2Inplace::range_in_file(uint64_t offset, uint64_t bytes) const {
    return offset <= file_len_ && bytes <= file_len_ - offset;
}

bool Qcow2Inplace::cluster_in_file(uint64_t offset) const {
    return qcow2_placed_in_file(offset, cs_, cs_, file_len_);
}

bool Qcow2Inplace::data_cluster_in_file(uint64_t offset) const {
    return (offset & (cs_ - 1)) == 0 && offset >= cs_ && offset < file_len_;
}

Status Qcow2Inplace::read_zero_padded(uint64_t offset, void* buf, size_t len) {
    const uint64_t have = offset >= file_len_ ? 0 : file_len_ - offset < len ? file_len_ - offset : len;
    __builtin_memset(static_cast<uint8_t*>(buf) + have, 0, len - have);
    return have == 0 ? Status::Ok : read(offset, buf, static_cast<size_t>(have));
}

Status Qcow2Inplace::read(uint64_t offset, void* buf, size_t len) {
    if (!range_in_file(offset, len))
        return Status::IoError;
    return dev_->read(offset, buf, len);
}

Status Qcow2Inplace::write(uint64_t offset, const void* buf, size_t len) {
    if (offset > QCOW2_MAX_CLUSTER_OFFSET + cs_ || len > QCOW2_MAX_CLUSTER_OFFSET)
        return Status::TooLarge;
    if (const Status st = dev_->write(offset, buf, len); st != Status::Ok)
        return st;
    unsynced_ = true;
    if (offset + len > file_len_)
        file_len_ = offset + len;
    return Status::Ok;
}

Status Qcow2Inplace::read_table(uint64_t offset, uint64_t* out, uint64_t count) {
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, uint64_t{8}, &bytes) || !range_in_file(offset, bytes))
        return Status::IoError;
    if (count == 0)
        return Status::Ok;
    if (const Status st = dev_->read(offset, out, static_cast<size_t>(bytes)); st != Status::Ok)
        return st;
    for (uint64_t i = 0; i < count; ++i) {
        // SAFETY: each entry's 8 bytes, read in place, reinterpreted as big-endian bytes.
        out[i] = load_be64(reinterpret_cast<const uint8_t*>(&out[i]));
    }
    return Status::Ok;
}

Status Qcow2Inplace::write_table(uint64_t offset, const uint64_t* in, uint64_t count) {
    // Converted through one buffer of up to TABLE_WRITE_BYTES from the allocator, so a grown L1 or
    // an L2 table is one device write (each write is an exit, ~50 us under nested KVM: a 64 KiB L2
    // table written 4 KiB at a time cost 16), or through 4 KiB of stack where the arena has no room.
    // The caller's table stays in host order.
    constexpr uint64_t STACK_ENTRIES = 512;
    constexpr uint64_t TABLE_WRITE_BYTES = 1u << 20;
    uint8_t stack_buf[STACK_ENTRIES * 8];
    const uint64_t want = count < TABLE_WRITE_BYTES / 8 ? count : TABLE_WRITE_BYTES / 8;
    void* heap = want > STACK_ENTRIES ? alloc_->allocate(static_cast<size_t>(want * 8), 8) : nullptr;
    uint8_t* buf = heap != nullptr ? static_cast<uint8_t*>(heap) : stack_buf;
    const uint64_t chunk = heap != nullptr ? want : STACK_ENTRIES;
    Status st = Status::Ok;
    for (uint64_t i = 0; i < count && st == Status::Ok; i += chunk) {
        const uint64_t n = count - i < chunk ? count - i : chunk;
        for (uint64_t j = 0; j < n; ++j)
            store_be64(buf + j * 8, in[i + j]);
        st = write(offset + i * 8, buf, static_cast<size_t>(n * 8));
    }
    if (heap != nullptr)
        alloc_->deallocate(heap, static_cast<size_t>(want * 8));
    return st;
}

uint64_t Qcow2Inplace::get_entry(const uint8_t* b, uint64_t index) const {
    switch (refcount_order_) {
    case 0:
    case 1:
    case 2: {
        const uint32_t w = uint32_t{1} << refcount_order_;
        const uint64_t per = 8 / w;
        const uint32_t shift = static_cast<uint32_t>(index % per) * w;
        return (b[index / per] >> shift) & ((1u << w) - 1);
    }
    case 3:
        return b[index];
    case 4:
        return load_be16(b + index * 2);
    case 5:
        return load_be32(b + index * 4);
    default:
        return load_be64(b + index * 8);
    }
}

void Qcow2Inplace::set_entry(uint8_t* b, uint64_t index, uint64_t v) const {
    switch (refcount_order_) {
    case 0:
    case 1:
    case 2: {
        const uint32_t w = uint32_t{1} << refcount_order_;
        const uint64_t per = 8 / w;
        const uint32_t shift = static_cast<uint32_t>(index % per) * w;
        const uint32_t mask = ((1u << w) - 1) << shift;
        b[index / per] = static_cast<uint8_t>((b[index / per] & ~mask) | ((static_cast<uint32_t>(v) << shift) & mask));
        return;
    }
    case 3:
        b[index] = static_cast<uint8_t>(v);
        return;
    case 4:
        store_be16(b + index * 2, static_cast<uint16_t>(v));
        return;
    case 5:
        store_be32(b + index * 4, static_cast<uint32_t>(v));
        return;
    default:
        store_be64(b + index * 8, v);
        return;
    }
}

Status Qcow2Inplace::write_slot(Slot& s) {
    if (!s.dirty)
        return Status::Ok;
    if (const Status st = write(s.offset, s.data, static_cast<size_t>(cs_)); st != Status::Ok)
        return st;
    s.dirty = false;
    return Status::Ok;
}

Qcow2Inplace::Slot* Qcow2Inplace::victim() {
    Slot* best = &slots_[0];
    for (Slot& s : slots_) {
        if (s.offset == 0)
            return &s;
        if (s.used < best->used)
            best = &s;
    }
    return best;
}

Status Qcow2Inplace::corrupt_refblock(uint64_t offset, uint64_t rt_index) {
    ReasonText r;
    r.add("Refblock offset ").hex(offset).add(" unaligned or past the end of the image file (reftable index: ")
        .hex(rt_index).add(")");
    return refuse(Status::Corrupt, r.data(), r.size());
}

Status Qcow2Inplace::load_refblock(uint64_t offset, Slot** out) {
    for (Slot& s : slots_) {
        if (s.offset == offset) {
            s.used = ++tick_;
            *out = &s;
            return Status::Ok;
        }
    }
    Slot* s = victim();
    if (const Status st = write_slot(*s); st != Status::Ok)
        return st;
    if (s->data == nullptr) {
        s->data = static_cast<uint8_t*>(alloc_->allocate(static_cast<size_t>(cs_), 64));
        if (s->data == nullptr)
            return Status::NoMemory;
    }
    s->offset = 0;
    if (const Status st = read(offset, s->data, static_cast<size_t>(cs_)); st != Status::Ok)
        return st;
    s->offset = offset;
    s->dirty = false;
    s->used = ++tick_;
    *out = s;
    return Status::Ok;
}

Status Qcow2Inplace::empty_refblock(uint64_t offset, Slot** out) {
    Slot* s = nullptr;
    for (Slot& t : slots_)
        if (t.offset == offset)
            s = &t;
    if (s == nullptr) {
        s = victim();
        if (const Status st = write_slot(*s); st != Status::Ok)
            return st;
        if (s->data == nullptr) {
            s->data = static_cast<uint8_t*>(alloc_->allocate(static_cast<size_t>(cs_), 64));
            if (s->data == nullptr)
                return Status::NoMemory;
        }
    }
    __builtin_memset(s->data, 0, static_cast<size_t>(cs_));
    s->offset = offset;
    s->dirty = true;
    s->used = ++tick_;
    *out = s;
    return Status::Ok;
}

Status Qcow2Inplace::flush_refcounts() {
    flush_discards();
    for (Slot& s : slots_)
        if (s.offset != 0)
            if (const Status st = write_slot(s); st != Status::Ok)
                return st;
    return Status::Ok;
}

Status Qcow2Inplace::sync() {
    if (const Status st = flush_refcounts(); st != Status::Ok)
        return st;
    if (!unsynced_ || host_ == nullptr)
        return Status::Ok; // nothing written since the last flush
    unsynced_ = false;
    return host_->flush(*dev_);
}

Status Qcow2Inplace::count_block(uint64_t cluster_index, Slot** out) {
    *out = nullptr;
    const uint64_t rt_index = cluster_index >> rb_bits_;
    if (rt_index >= rt_size_)
        return Status::Ok;
    const uint64_t block = reftable_[rt_index] & QCOW2_REFT_OFFSET_MASK;
    if (block == 0)
        return Status::Ok;
    if (!cluster_in_file(block))
        return corrupt_refblock(block, rt_index);
    return load_refblock(block, out);
}

Status Qcow2Inplace::get_refcount(uint64_t cluster_index, uint64_t* out) {
    *out = 0;
    Slot* s = nullptr;
    if (const Status st = count_block(cluster_index, &s); st != Status::Ok)
        return st;
    if (s != nullptr)
        *out = get_entry(s->data, cluster_index & (rb_entries_ - 1));
    return Status::Ok;
}

Status Qcow2Inplace::alloc_noref(uint64_t nb_clusters, uint64_t* offset) {
    flush_discards(); // a queued discard must not land on a cluster handed out again (qemu too)
    uint64_t past_eof = 0;
    for (uint64_t i = 0; i < nb_clusters; ++i) {
        const uint64_t idx = free_index_++;
        if (idx > (QCOW2_MAX_CLUSTER_OFFSET >> h_.cluster_bits))
            return Status::TooLarge; // qemu: -EFBIG
        uint64_t rc = 0;
        if (const Status st = get_refcount(idx, &rc); st != Status::Ok)
            return st;
        if (rc != 0 && (idx << h_.cluster_bits) >= file_len_ && ++past_eof > INPLACE_MAX_SCAN_PAST_EOF)
            return Status::TooLarge;
        if (rc != 0)
            i = ~uint64_t{0}; // restart the run after this cluster (wraps to 0 at ++i)
    }
    if (free_index_ > 0 && free_index_ - 1 > (QCOW2_MAX_CLUSTER_OFFSET >> h_.cluster_bits))
        return Status::TooLarge;
    *offset = (free_index_ - nb_clusters) << h_.cluster_bits;
    return Status::Ok;
}

Status Qcow2Inplace::refblock_for(uint64_t cluster_index, Slot** out, uint32_t depth) {
    // Returns Ok with *out set when the block exists; Ok with *out null when one was created (the
    // caller restarts: qemu's -EAGAIN).
    if (const Status st = count_block(cluster_index, out); st != Status::Ok || *out != nullptr)
        return st;
    const uint64_t rt_index = cluster_index >> rb_bits_;
    uint64_t new_block = 0;
    if (const Status st = alloc_noref(1, &new_block); st != Status::Ok)
        return st;
    if (new_block == 0)
        return refuse(Status::Corrupt, "Preventing invalid allocation of refcount block at offset 0", 59);
    Slot* s = nullptr;
    if ((new_block >> h_.cluster_bits >> rb_bits_) == rt_index) {
        if (const Status st = empty_refblock(new_block, &s); st != Status::Ok)
            return st;
        set_entry(s->data, (new_block >> h_.cluster_bits) & (rb_entries_ - 1), 1);
    } else {
        // Described by another block: count it there first (that may create a block in turn).
        if (const Status st = update_one(new_block, cs_, 1, false, depth + 1); st != Status::Ok)
            return st;
        if (restarted_)
            return Status::Ok; // that created a block first: the caller searches again
        if (const Status st = flush_refcounts(); st != Status::Ok)
            return st;
        if (const Status st = empty_refblock(new_block, &s); st != Status::Ok)
            return st;
    }
    s->dirty = true;
    if (const Status st = write_slot(*s); st != Status::Ok)
        return st;
    if (rt_index < rt_size_) {
        if (host_ != nullptr)
            if (const Status st = host_->flush(*dev_); st != Status::Ok)
                return st;
        uint8_t e[8];
        store_be64(e, new_block);
        if (const Status st = write(h_.refcount_table_offset + rt_index * 8, e, 8); st != Status::Ok)
            return st;
        if (host_ != nullptr)
            if (const Status st = host_->flush(*dev_); st != Status::Ok)
                return st;
        reftable_[rt_index] = new_block;
        return Status::Ok;
    }
    // The table is too small: new self-describing refcount structures past everything counted.
    const uint64_t a = cluster_index + 1, b = (new_block >> h_.cluster_bits) + 1;
    const uint64_t blocks_used = div_round_up(a > b ? a : b, rb_entries_);
    uint64_t meta_offset = 0;
    if (__builtin_mul_overflow(blocks_used * rb_entries_, cs_, &meta_offset) || meta_offset > QCOW2_MAX_CLUSTER_OFFSET)
        return Status::TooLarge;
    return refcount_area(meta_offset, rt_index, new_block);
}

Status Qcow2Inplace::refcount_area(uint64_t start_offset, uint64_t new_rb_index, uint64_t new_rb_offset) {
    return refcount_area_impl(start_offset, 0, false, new_rb_index, new_rb_offset, nullptr);
}

Status Qcow2Inplace::refcount_area_at(uint64_t start_offset, uint64_t additional_clusters, bool exact_size,
                                      uint64_t* end_offset) {
    if ((start_offset & (cs_ - 1)) != 0 || additional_clusters > (QCOW2_MAX_CLUSTER_OFFSET >> h_.cluster_bits))
        return Status::Invalid;
    return refcount_area_impl(start_offset, additional_clusters, exact_size, 0, 0, end_offset);
}

Status Qcow2Inplace::refcount_area_impl(uint64_t start_offset, uint64_t additional_clusters, bool exact_size,
                                        uint64_t new_rb_index, uint64_t new_rb_offset, uint64_t* end_out) {
    const uint64_t total =
        refcount_blocks_needed(start_offset / cs_ + additional_clusters, cs_, refcount_order_, !exact_size);
    const uint64_t per_cluster = cs_ / 8;
    uint64_t table_size = exact_size ? total : total + div_round_up(total, 2);
    table_size = div_round_up(table_size, per_cluster) * per_cluster;
    if (total > QCOW_MAX_REFTABLE_SIZE / 8 || table_size * 8 > QCOW_MAX_REFTABLE_SIZE)
        return Status::TooLarge; // qemu: -EFBIG (and it would not open a larger table)
    const uint64_t table_clusters = table_size / per_cluster;
    const uint64_t area_index = (start_offset / cs_) / rb_entries_;
    auto* table = static_cast<uint64_t*>(alloc_->allocate(static_cast<size_t>(table_size * 8), 64));
    if (table == nullptr)
        return Status::NoMemory;
    auto fail = [&](Status st) {
        alloc_->deallocate(table, static_cast<size_t>(table_size * 8));
        return st;
    };
    __builtin_memset(table, 0, static_cast<size_t>(table_size * 8));
    for (uint64_t i = 0; i < rt_size_ && i < table_size; ++i)
        table[i] = reftable_[i];
    if (new_rb_offset != 0) {
        if (new_rb_index >= total)
            return fail(Status::Corrupt);
        table[new_rb_index] = new_rb_offset;
    }
    uint64_t additional = 0;
    for (uint64_t i = area_index; i < total; ++i)
        additional += table[i] == 0;
    const uint64_t table_offset = start_offset + additional * cs_;
    const uint64_t end_offset = table_offset + table_clusters * cs_;
    uint64_t block_offset = start_offset;
    for (uint64_t i = area_index; i < total; ++i) {
        Slot* s = nullptr;
        if (table[i] != 0) {
            const uint64_t off = table[i] & QCOW2_REFT_OFFSET_MASK;
            if (!cluster_in_file(off))
                return fail(corrupt_refblock(off, i));
            if (const Status st = load_refblock(off, &s); st != Status::Ok)
                return fail(st);
        } else {
            if (const Status st = empty_refblock(block_offset, &s); st != Status::Ok)
                return fail(st);
            table[i] = block_offset;
            block_offset += cs_;
        }
        const uint64_t first = i * rb_entries_ * cs_;
        if (first < end_offset) {
            uint64_t j = first < start_offset ? (start_offset - first) / cs_ : 0;
            uint64_t end = (end_offset - first) / cs_;
            if (end > rb_entries_)
                end = rb_entries_;
            for (; j < end; ++j)
                set_entry(s->data, j, 1);
            s->dirty = true;
        }
    }
    if (const Status st = flush_refcounts(); st != Status::Ok)
        return fail(st);
    if (const Status st = write_table(table_offset, table, table_size); st != Status::Ok)
        return fail(st);
    if (host_ != nullptr)
        if (const Status st = host_->flush(*dev_); st != Status::Ok)
            return fail(st);
    const uint64_t old_offset = h_.refcount_table_offset; // before write_header re-reads the header
    const uint64_t old_bytes = rt_size_ * 8;
    uint8_t field[12];
    store_be64(field, table_offset);
    store_be32(field + 8, static_cast<uint32_t>(table_clusters));
    if (const Status st = write_header(QCOW2_HDR_REFTABLE, field, sizeof field); st != Status::Ok)
        return fail(st);
    if (host_ != nullptr)
        if (const Status st = host_->flush(*dev_); st != Status::Ok)
            return fail(st);
    alloc_->deallocate(reftable_, static_cast<size_t>(rt_alloc_bytes_));
    reftable_ = table;
    rt_size_ = table_size;
    rt_alloc_bytes_ = table_size * 8;
    if (end_out != nullptr)
        *end_out = end_offset;
    h_.refcount_table_offset = table_offset;
    h_.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
    return free_clusters(old_offset, old_bytes);
}

Status Qcow2Inplace::update_one(uint64_t offset, uint64_t length, uint64_t addend, bool decrease, uint32_t depth,
                                bool discard) {
    // Ok with nothing changed when a refcount block had to be created first: the caller sees that
    // through `restarted_` (qemu's -EAGAIN) and searches again.
    if (depth > INPLACE_MAX_REFBLOCK_DEPTH)
        return Status::Corrupt;
    if (length == 0)
        return Status::Ok;
    const uint64_t start = offset >> h_.cluster_bits;
    const uint64_t last = (offset + length - 1) >> h_.cluster_bits;
    // Pass 1: every block exists (creating one restarts; a decrease never creates one, it
    // underflows instead) and no count overflows or underflows. Each block is looked up once, at
    // its first cluster in the range: nothing in between can evict it from the cache.
    Slot* s = nullptr;
    for (uint64_t c = start; c <= last; ++c) {
        if (c == start || (c & (rb_entries_ - 1)) == 0) {
            if (const Status st = decrease ? count_block(c, &s) : refblock_for(c, &s, depth); st != Status::Ok)
                return st;
            if (s == nullptr && !decrease) {
                if (free_index_ > start)
                    free_index_ = start;
                restarted_ = true;
                return Status::Ok;
            }
        }
        const uint64_t rc = s != nullptr ? get_entry(s->data, c & (rb_entries_ - 1)) : 0;
        if (decrease ? rc < addend : (rc + addend < rc || rc + addend > refcount_max_))
            return Status::Invalid;
    }
    // Pass 2: the change. Freed clusters are discarded in runs, merged across calls until the
    // next flush (qemu queues and merges its discards the same way).
    for (uint64_t c = start; c <= last; ++c) {
        if (c == start || (c & (rb_entries_ - 1)) == 0) {
            if (const Status st = refblock_for(c, &s, depth); st != Status::Ok)
                return st;
            if (s == nullptr)
                return Status::Corrupt; // cannot happen: pass 1 found every block
        }
        const uint64_t index = c & (rb_entries_ - 1);
        uint64_t rc = get_entry(s->data, index);
        rc = decrease ? rc - addend : rc + addend;
        set_entry(s->data, index, rc);
        s->dirty = true;
        if (rc == 0 && c < free_index_)
            free_index_ = c;
        if (rc == 0 && discard && (c << h_.cluster_bits) < file_len_) {
            if (discard_len_ != 0 && discard_start_ + discard_len_ == c) {
                ++discard_len_;
            } else {
                flush_discards();
                discard_start_ = c;
                discard_len_ = 1;
            }
        }
    }
    return Status::Ok;
}

void Qcow2Inplace::flush_discards() {
    // Clipped to the file (its last cluster may be partial); optional, as qemu's.
    const uint64_t from = discard_start_ << h_.cluster_bits;
    uint64_t to = (discard_start_ + discard_len_) << h_.cluster_bits;
    if (to > file_len_)
        to = file_len_;
    if (discard_len_ != 0 && from < to) {
        (void)dev_->discard(from, to - from);
        unsynced_ = true;
    }
    discard_len_ = 0;
}

Status Qcow2Inplace::update_refcount(uint64_t offset, uint64_t length, uint64_t addend, bool decrease, bool discard) {
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, length, &end) || end > QCOW2_MAX_CLUSTER_OFFSET + 1)
        return Status::Invalid;
    for (uint32_t i = 0; i < INPLACE_MAX_RESTARTS; ++i) {
        restarted_ = false;
        if (const Status st = update_one(offset, length, addend, decrease, 0, discard); st != Status::Ok)
            return st;
        if (!restarted_)
            return Status::Ok;
    }
    return Status::Corrupt;
}

Status Qcow2Inplace::alloc_clusters(uint64_t bytes, uint64_t* offset) {
    if (bytes == 0) {
        *offset = free_index_ << h_.cluster_bits;
        return Status::Ok;
    }
    const uint64_t n = div_round_up(bytes, cs_);
    // Each restart follows a refcount block created for the run (or a table growth), so a long run
    // (a big L1 table with small clusters) may restart once per block it spans, plus the constant.
    const uint64_t restarts = INPLACE_MAX_RESTARTS + 2 * div_round_up(n, rb_entries_);
    for (uint64_t i = 0; i < restarts; ++i) {
        uint64_t at = 0;
        if (const Status st = alloc_noref(n, &at); st != Status::Ok)
            return st;
        restarted_ = false;
        if (const Status st = update_one(at, n * cs_, 1, false, 0); st != Status::Ok)
            return st;
        if (!restarted_) {
            *offset = at;
            return Status::Ok;
        }
    }
    return Status::Corrupt;
}

Status Qcow2Inplace::alloc_clusters_at(uint64_t offset, uint64_t nb_clusters, uint64_t* allocated) {
    *allocated = 0;
    if ((offset & (cs_ - 1)) != 0 || offset == 0)
        return Status::Invalid;
    const uint64_t first = offset >> h_.cluster_bits;
    if (nb_clusters > (QCOW2_MAX_CLUSTER_OFFSET >> h_.cluster_bits) - first)
        return Status::TooLarge; // qemu: -EFBIG
    const uint64_t restarts = INPLACE_MAX_RESTARTS + 2 * div_round_up(nb_clusters, rb_entries_);
    for (uint64_t r = 0; r < restarts; ++r) {
        uint64_t n = 0;
        for (; n < nb_clusters; ++n) {
            uint64_t rc = 0;
            if (const Status st = get_refcount(first + n, &rc); st != Status::Ok)
                return st;
            if (rc != 0)
                break;
        }
        if (n == 0)
            return Status::Ok;
        restarted_ = false;
        if (const Status st = update_one(offset, n * cs_, 1, false, 0); st != Status::Ok)
            return st;
        if (!restarted_) {
            *allocated = n;
            return Status::Ok;
        }
        // A refcount block was created first (maybe inside the run): look again (qemu's -EAGAIN).
    }
    return Status::Corrupt;
}

Status Qcow2Inplace::free_clusters(uint64_t offset, uint64_t bytes, bool discard) {
    return update_refcount(offset, bytes, 1, true, discard);
}

Status Qcow2Inplace::write_header(uint64_t field_offset, const void* bytes, size_t len) {
    if (field_offset > cs_ || len > cs_ - field_offset)
        return Status::Invalid;
    if (const Status st = write(field_offset, bytes, len); st != Status::Ok)
        return st;
    // Keep the parsed header in step for the fields callers change.
    uint8_t hdr[sizeof(Qcow2HeaderDisk)] = {};
    if (read(0, hdr, sizeof hdr) == Status::Ok) {
        h_.l1_size = load_be32(hdr + QCOW2_HDR_L1_SIZE);
        h_.l1_table_offset = load_be64(hdr + QCOW2_HDR_L1_SIZE + 4);
        h_.refcount_table_offset = load_be64(hdr + QCOW2_HDR_REFTABLE);
        h_.refcount_table_clusters = load_be32(hdr + QCOW2_HDR_REFTABLE + 8);
        h_.nb_snapshots = load_be32(hdr + QCOW2_HDR_SNAPSHOTS);
        h_.snapshots_offset = load_be64(hdr + QCOW2_HDR_SNAPSHOTS + 4);
        h_.size = load_be64(hdr + QCOW2_HDR_SIZE);
        if (h_.version >= 3) {
            h_.incompatible_features = load_be64(hdr + QCOW2_HDR_INCOMPATIBLE);
            h_.compatible_features = load_be64(hdr + QCOW2_HDR_COMPATIBLE);
            h_.autoclear_features = load_be64(hdr + QCOW2_HDR_AUTOCLEAR);
        }
    }
    return Status::Ok;
}

Status Qcow2Inplace::set_l1(uint64_t l1_table_offset, uint32_t l1_size) {
    uint8_t f[12];
    store_be32(f, l1_size);
    store_be64(f + 4, l1_table_offset);
    return write_header(QCOW2_HDR_L1_SIZE, f, sizeof f);
}

Status Qcow2Inplace::set_snapshots(uint32_t nb_snapshots, uint64_t offset) {
    uint8_t f[12];
    store_be32(f, nb_snapshots);
    store_be64(f + 4, offset);
    return write_header(QCOW2_HDR_SNAPSHOTS, f, sizeof f);
}

Status Qcow2Inplace::set_features(uint64_t incompatible, uint64_t compatible, uint64_t autoclear) {
    if (h_.version < 3)
        return Status::Invalid;
    uint8_t f[24];
    store_be64(f, incompatible);
    store_be64(f + 8, compatible);
    store_be64(f + 16, autoclear);
    return write_header(QCOW2_HDR_INCOMPATIBLE, f, sizeof f);
}

} // namespace instar::qcow2
