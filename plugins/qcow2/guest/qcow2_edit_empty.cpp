// qcow2: commit's emptying of the top image (qemu's bdrv_make_empty) (EditCommand::MakeEmpty, docs/edit.md).
//
// qemu's qcow2_make_empty rebuilds a v3 image without snapshots from scratch under the dirty bit
// (make_completely_empty), which a crash leaves with broken refcounts. instar keeps the image's own
// structures and orders the writes so that every kill point leaves a clean or merely leaky image:
//   1. the L1 table is zeroed (every guest cluster now reads from the backing file, which holds the
//      committed data already: the content is the same before and after);
//   2. flush; every refcount block then drops the refcount of every cluster that is not the header,
//      the L1 table, the refcount table or a refcount block (the old L2 tables and data: leaked
//      after step 1, free after step 2);
//   3. flush; the file ends after its last structure (freed clusters below it stay allocated in
//      the file system; qemu's emptied image is header, refcount table, one block and the L1).
// LUKS-encrypted images (qemu's fallback, a discard of every cluster, since the LUKS header's
// clusters must stay): the same three steps with the L2 tables instead of the L1 table, as qemu's
// qcow2_cluster_discard(full_discard) leaves the image: 1. every L2 table is zeroed (the L1 table and
// the tables stay); 2. only the header, the L1 and L2 tables, the refcount table and blocks and the
// LUKS header keep their refcounts, and each cluster that loses its refcount is discarded (a hole,
// or zeros written), after its refcount block is durable; 3. the file keeps its length (qemu does
// not cut it). Byte-identical to qemu's result.
// Images with internal snapshots, persistent bitmaps or an external data file are emptied as qemu's
// discard loop leaves them (qcow2_edit_empty_discard.cpp).
#include "qcow2_edit.h"

#include "qcow2_bytes.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_inplace.h"
#include "qcow2_limits.h"
#include "qcow2_read_reason.h"
#include "qcow2_sort.h"

namespace instar::qcow2 {

using guest::Status;

namespace {

constexpr uint64_t REFT_OFFSET_MASK = 0xfffffffffffffe00ull;
// qemu's QCOW_MAX_REFTABLE_SIZE: the largest refcount table qemu opens.
constexpr uint64_t EMPTY_MAX_REFTABLE_BYTES = 8u << 20;
// L1 zeros are written this much at a time: one buffer, far below guest RAM.
constexpr uint64_t EMPTY_ZERO_CHUNK = 1u << 20;

Status refuse(guest::EditHost& host, const char* what) {
    ReasonText r;
    r.add("instar cannot empty a qcow2 image with ").add(what).add(" yet");
    host.reason(r.data(), r.size());
    return Status::Unsupported;
}

Status corrupt(guest::EditHost& host, const ReasonText& r) {
    host.reason(r.data(), r.size());
    return Status::Corrupt;
}

// The refcount block offsets, for ordered lookups.
void sort(uint64_t* v, uint64_t n) {
    heap_sort(v, n, [](uint64_t a, uint64_t b) { return a < b; });
}

// Copies refcount entry `index` (of `bits` bits) from `from` to `to`.
void copy_entry(const uint8_t* from, uint8_t* to, uint64_t index, uint32_t bits) {
    if (bits >= 8) {
        const uint64_t bytes = bits / 8;
        __builtin_memcpy(to + index * bytes, from + index * bytes, bytes);
        return;
    }
    const uint64_t per_byte = 8 / bits;
    const uint32_t shift = static_cast<uint32_t>((index % per_byte) * bits);
    const uint8_t mask = static_cast<uint8_t>(((1u << bits) - 1) << shift);
    uint8_t& b = to[index / per_byte];
    b = static_cast<uint8_t>((b & ~mask) | (from[index / per_byte] & mask));
}

// The non-zero offsets in a big-endian table of n entries (under `mask`), each a whole cluster inside
// the file, sorted into out[0..*count): the refcount blocks, or (LUKS) the L2 tables (`what`).
Status sorted_offsets(guest::EditHost& host, const uint8_t* table, uint64_t n, uint64_t mask, const char* what,
                      uint64_t cs, uint64_t file, uint64_t* out, uint64_t* count) {
    *count = 0;
    for (uint64_t i = 0; i < n; ++i) {
        const uint64_t off = load_be64(table + i * 8) & mask;
        if (off == 0)
            continue;
        if ((off & (cs - 1)) != 0 || off < cs || off >= file || cs > file - off) {
            ReasonText r;
            r.add(what).add(" offset ").hex(off).add(" invalid or past the end of the image file");
            return corrupt(host, r);
        }
        out[(*count)++] = off;
    }
    sort(out, *count);
    return Status::Ok;
}

// True when refcount entry `index` (of `bits` bits) is not zero.
bool entry_set(const uint8_t* rb, uint64_t index, uint32_t bits) {
    if (bits >= 8) {
        const uint64_t bytes = bits / 8;
        for (uint64_t k = 0; k < bytes; ++k)
            if (rb[index * bytes + k] != 0)
                return true;
        return false;
    }
    const uint64_t per_byte = 8 / bits;
    const uint32_t shift = static_cast<uint32_t>((index % per_byte) * bits);
    return ((rb[index / per_byte] >> shift) & ((1u << bits) - 1)) != 0;
}

// The first index of sorted v[0..n) whose cluster (v[i] / cs) is at least `cluster`.
uint64_t lower_bound(const uint64_t* v, uint64_t n, uint64_t cs, uint64_t cluster) {
    return partition_point(v, n, [cs, cluster](uint64_t off) { return off / cs < cluster; });
}

// Makes the clusters [first, end) of the file read as zeros: a hole where the device can punch one,
// else zeros written (qemu discards what it frees; either way the bytes are qemu's).
Status discard_clusters(guest::BlockDevice& dev, uint64_t first, uint64_t end, uint64_t cs, const uint8_t* zeros,
                        uint64_t zero_len) {
    const uint64_t at = first * cs, len = (end - first) * cs;
    if (dev.discard(at, len) == Status::Ok)
        return Status::Ok;
    for (uint64_t done = 0; done < len;) {
        const uint64_t n = len - done < zero_len ? len - done : zero_len;
        if (const Status st = dev.write(at + done, zeros, static_cast<size_t>(n)); st != Status::Ok)
            return st;
        done += n;
    }
    return Status::Ok;
}

} // namespace

guest::Status edit_empty(const guest::EditRequest& req, guest::EditHost& host) {
    if (!req.writable || req.image == nullptr || req.allocator == nullptr)
        return guest::edit_refuse(host, "the image is not open for writing", Status::Invalid);
    guest::BlockDevice& dev = *req.image;
    guest::Allocator& alloc = *req.allocator;
    const uint64_t file = req.image_length;
    Qcow2HeaderDisk disk{};
    const size_t have = file < sizeof disk ? static_cast<size_t>(file) : sizeof disk;
    if (have > 0 && dev.read(0, &disk, have) != Status::Ok)
        return Status::IoError;
    Qcow2Header h;
    HeaderProblem why;
    if (const Status st = qcow2_header_parse(disk, &h, &why); st != Status::Ok) {
        host.reason(why.text, why.len);
        return st;
    }
    // qemu's qcow2_make_empty: a LUKS header's clusters must stay, so qemu discards every cluster.
    const bool luks = h.crypt_method == QCOW_CRYPT_LUKS;
    if (h.incompatible_features & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))
        return refuse(host, "the dirty or corrupt bit set");
    const bool data_file = (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    if (data_file && h.nb_snapshots != 0) // qemu never makes this pair (nor does instar's writer)
        return refuse(host, "internal snapshots and an external data file");
    // What the snapshots and persistent bitmaps reference must stay, and data-file clusters have
    // no refcounts: qemu's discard loop for all three.
    if (h.nb_snapshots != 0 || data_file || (h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) != 0)
        return empty_by_discard(req, host);

    const uint64_t cs = h.cluster_size();
    auto in_file = [&](uint64_t offset, uint64_t bytes) { return qcow2_placed_in_file(offset, bytes, cs, file); };
    const uint64_t l1_bytes = uint64_t{h.l1_size} * 8;
    if (h.l1_size > 0 && (!qcow2_table_offset_valid(h, h.l1_table_offset, h.l1_size, 8) ||
                          !in_file(h.l1_table_offset, l1_bytes))) {
        ReasonText r;
        r.add("L1 table offset ").hex(h.l1_table_offset).add(" invalid or past the end of the image file");
        return corrupt(host, r);
    }
    const uint64_t rt_bytes = uint64_t{h.refcount_table_clusters} * cs;
    if (h.refcount_table_clusters == 0 || rt_bytes > EMPTY_MAX_REFTABLE_BYTES ||
        !qcow2_table_offset_valid(h, h.refcount_table_offset, rt_bytes / 8, 8) ||
        !in_file(h.refcount_table_offset, rt_bytes)) {
        ReasonText r;
        r.add("Refcount table offset ").hex(h.refcount_table_offset).add(" invalid or past the end of the image file");
        return corrupt(host, r);
    }

    // The refcount table, and the sorted list of its blocks (every one inside the file).
    auto* rt = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(rt_bytes), 64));
    auto* blocks = static_cast<uint64_t*>(alloc.allocate(static_cast<size_t>(rt_bytes / 8 * sizeof(uint64_t)), 8));
    auto* old_rb = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(cs), 64));
    auto* new_rb = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(cs), 64));
    const uint64_t zero_len = cs > EMPTY_ZERO_CHUNK ? cs : EMPTY_ZERO_CHUNK;
    auto* zeros = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(zero_len), 64));
    if (rt == nullptr || blocks == nullptr || old_rb == nullptr || new_rb == nullptr || zeros == nullptr)
        return Status::NoMemory;
    __builtin_memset(zeros, 0, static_cast<size_t>(zero_len));
    if (dev.read(h.refcount_table_offset, rt, static_cast<size_t>(rt_bytes)) != Status::Ok)
        return Status::IoError;
    const uint64_t rt_entries = rt_bytes / 8;
    uint64_t nblocks = 0;
    if (const Status st = sorted_offsets(host, rt, rt_entries, REFT_OFFSET_MASK, "Refblock", cs, file, blocks, &nblocks);
        st != Status::Ok)
        return st;

    // LUKS: the L2 tables (they stay, zeroed: sorted like the blocks) and the LUKS header (qemu's
    // crypto header extension: checked inside the file, as qemu's open checks it).
    uint64_t* tables = nullptr;
    uint64_t ntables = 0;
    uint64_t luks_first = 0, luks_end = 0;
    if (luks) {
        auto* header = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(cs), 64));
        if (header == nullptr)
            return Status::NoMemory;
        __builtin_memset(header, 0, static_cast<size_t>(cs));
        if (dev.read(0, header, static_cast<size_t>(file < cs ? file : cs)) != Status::Ok)
            return Status::IoError;
        Qcow2Extensions ext;
        if (qcow2_extensions_parse(h, header, h.header_length, h.extensions_end(), &ext) != Status::Ok ||
            !ext.has_crypto_header || ext.crypto_header_length == 0 ||
            !in_file(ext.crypto_header_offset, ext.crypto_header_length)) {
            ReasonText r;
            r.add("Invalid crypto header offset or length");
            return corrupt(host, r);
        }
        luks_first = ext.crypto_header_offset / cs;
        luks_end = (ext.crypto_header_offset + ext.crypto_header_length + cs - 1) / cs;
        if (l1_bytes > QCOW_MAX_L1_SIZE)
            return refuse(host, "an L1 table larger than qemu's limit");
        auto* l1 = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(l1_bytes) + 8, 64));
        tables = static_cast<uint64_t*>(alloc.allocate(static_cast<size_t>(h.l1_size) * 8 + 8, 8));
        if (l1 == nullptr || tables == nullptr)
            return Status::NoMemory;
        if (l1_bytes > 0 && dev.read(h.l1_table_offset, l1, static_cast<size_t>(l1_bytes)) != Status::Ok)
            return Status::IoError;
        if (const Status st =
                sorted_offsets(host, l1, h.l1_size, QCOW2_L1E_OFFSET_MASK, "L2 table", cs, file, tables, &ntables);
            st != Status::Ok)
            return st;
    }

    // 1. Every guest cluster now reads from the backing file: the L1 table zeroed (LUKS: every L2
    // table that holds an entry).
    for (uint64_t t = 0; t < ntables; ++t) {
        if (dev.read(tables[t], old_rb, static_cast<size_t>(cs)) != Status::Ok)
            return Status::IoError;
        __builtin_memset(new_rb, 0, static_cast<size_t>(cs));
        if (__builtin_memcmp(old_rb, new_rb, static_cast<size_t>(cs)) == 0)
            continue;
        if (const Status st = dev.write(tables[t], new_rb, static_cast<size_t>(cs)); st != Status::Ok)
            return st;
    }
    for (uint64_t done = 0; !luks && done < l1_bytes;) {
        const uint64_t n = l1_bytes - done < zero_len ? l1_bytes - done : zero_len;
        if (const Status st = dev.write(h.l1_table_offset + done, zeros, static_cast<size_t>(n)); st != Status::Ok)
            return st;
        done += n;
    }
    if (const Status st = host.flush(dev); st != Status::Ok)
        return st;

    // 2. Only the structures that remain keep their refcounts. A structure's clusters: the header
    // (cluster 0), the L1 table, the refcount table, each refcount block (LUKS: each L2 table and
    // the LUKS header too).
    const uint32_t bits = uint32_t{1} << h.refcount_order;
    const uint64_t rb_entries = cs * 8 / bits;
    const uint64_t l1_first = h.l1_table_offset / cs, l1_end = (h.l1_table_offset + l1_bytes + cs - 1) / cs;
    const uint64_t rt_first = h.refcount_table_offset / cs, rt_end = rt_first + h.refcount_table_clusters;
    uint64_t kept_end = 1; // in clusters: the file's new end
    if (h.l1_size > 0 && l1_end > kept_end)
        kept_end = l1_end;
    if (rt_end > kept_end)
        kept_end = rt_end;
    if (nblocks > 0 && blocks[nblocks - 1] / cs + 1 > kept_end)
        kept_end = blocks[nblocks - 1] / cs + 1;
    uint64_t next_block = 0; // blocks[] below this index lie before the current block's range
    for (uint64_t i = 0; i < rt_entries; ++i) {
        const uint64_t off = load_be64(rt + i * 8) & REFT_OFFSET_MASK;
        if (off == 0)
            continue;
        if (dev.read(off, old_rb, static_cast<size_t>(cs)) != Status::Ok)
            return Status::IoError;
        __builtin_memset(new_rb, 0, static_cast<size_t>(cs));
        const uint64_t lo = i * rb_entries, hi = lo + rb_entries;
        auto keep_range = [&](uint64_t first, uint64_t end) {
            for (uint64_t c = first > lo ? first : lo; c < end && c < hi; ++c)
                copy_entry(old_rb, new_rb, c - lo, bits);
        };
        keep_range(0, 1);
        if (h.l1_size > 0)
            keep_range(l1_first, l1_end);
        keep_range(rt_first, rt_end);
        // Refcount blocks (and L2 tables) in [lo, hi): a binary search for the first, then in order.
        for (next_block = lower_bound(blocks, nblocks, cs, lo); next_block < nblocks && blocks[next_block] / cs < hi;
             ++next_block)
            keep_range(blocks[next_block] / cs, blocks[next_block] / cs + 1);
        if (luks) {
            keep_range(luks_first, luks_end);
            for (uint64_t t = lower_bound(tables, ntables, cs, lo); t < ntables && tables[t] / cs < hi; ++t)
                keep_range(tables[t] / cs, tables[t] / cs + 1);
        }
        if (__builtin_memcmp(old_rb, new_rb, static_cast<size_t>(cs)) == 0)
            continue;
        if (const Status st = dev.write(off, new_rb, static_cast<size_t>(cs)); st != Status::Ok)
            return st;
        if (!luks)
            continue;
        // LUKS: the clusters this block freed read as zeros, once the block is durable (qemu's
        // discard of each cluster whose refcount dropped to 0), in runs.
        if (const Status st = host.flush(dev); st != Status::Ok)
            return st;
        const uint64_t file_clusters = file / cs;
        for (uint64_t c = lo; c < hi && c < file_clusters;) {
            if (!entry_set(old_rb, c - lo, bits) || entry_set(new_rb, c - lo, bits)) {
                ++c;
                continue;
            }
            uint64_t e = c + 1;
            while (e < hi && e < file_clusters && entry_set(old_rb, e - lo, bits) && !entry_set(new_rb, e - lo, bits))
                ++e;
            if (const Status st = discard_clusters(dev, c, e, cs, zeros, zero_len); st != Status::Ok)
                return st;
            c = e;
        }
    }
    if (const Status st = host.flush(dev); st != Status::Ok)
        return st;

    // 3. The file ends after its last structure, as qemu's emptied image does (LUKS: qemu's
    // discards leave the file's length as it was).
    if (luks)
        return Status::Ok;
    uint64_t new_length = 0;
    if (mul_overflow(kept_end, cs, &new_length))
        return Status::Invalid;
    if (new_length < file)
        if (const Status st = host.set_length(dev, new_length, guest::Prealloc::Off); st != Status::Ok)
            return st;
    return Status::Ok;
}

} // namespace instar::qcow2
