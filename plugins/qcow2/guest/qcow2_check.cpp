// qemu-img check for qcow2, read-only: the same walk as qemu 7.2/10.0's qcow2_co_check_locked
// (qcow2_check_read_snapshot_table, qcow2_check_refcounts: calculate_refcounts, compare_refcounts,
// check_oflag_copied), the same counters and stderr lines in the same order. Facts from qemu's
// block/qcow2-refcount.c and qcow2-snapshot.c; the code is instar's. docs/check.md.
//
// Like qemu's block layer, reads past the end of the file return zeros (qemu's file driver pads
// them), so a table pointing past EOF is checked as a table of zeros, never as an I/O error.
#include "qcow2_check.h"

#include "qcow2_bytes.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_edit.h"
#include "qcow2_inplace.h"

#include <instar/guest/create_api.h>
#include <instar/guest/edit_bitmap.h>
#include "qcow2_limits.h"
#include "qcow2_reader.h"
#include "qcow2_snapshot.h"

namespace instar::qcow2 {
namespace {

using guest::CheckLine;
using guest::CheckResult;
using guest::CheckSink;

constexpr uint64_t QCOW_OFLAG_COPIED = uint64_t{1} << 63;
constexpr uint64_t QCOW_OFLAG_COMPRESSED = uint64_t{1} << 62;
constexpr uint64_t QCOW_OFLAG_ZERO = 1;
constexpr uint64_t L1E_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t L2E_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t L1E_RESERVED_MASK = 0x7f000000000001ffull;
constexpr uint64_t L2E_STD_RESERVED_MASK = 0x3f000000000001feull;
constexpr uint64_t REFT_OFFSET_MASK = 0xfffffffffffffe00ull;
constexpr uint64_t REFT_RESERVED_MASK = 0x1ffull;
constexpr uint64_t QCOW_L2_BITMAP_ALL_ALLOC = (uint64_t{1} << 32) - 1;
constexpr uint64_t BME_TABLE_ENTRY_RESERVED_MASK = 0xff000000000001feull;
constexpr uint64_t BME_TABLE_ENTRY_OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr uint64_t BME_TABLE_ENTRY_FLAG_ALL_ONES = 1;
constexpr uint64_t SNAPSHOT_HEADER_SIZE = 40; // sizeof(QCowSnapshotHeader)
constexpr uint32_t CHECK_FRAG_INFO = 2;
constexpr uint64_t INT64_MAX_U = 0x7fffffffffffffffull;
constexpr uint64_t INT_MAX_U = 0x7fffffff;

enum class ClusterType { Unallocated, ZeroPlain, ZeroAlloc, Normal, Compressed };

const char* errno_text(int32_t e) {
    switch (e) {
    case guest::CHECK_EIO: return "Input/output error";
    case guest::CHECK_ENOMEM: return "Cannot allocate memory";
    case guest::CHECK_EINVAL: return "Invalid argument";
    case guest::CHECK_EFBIG: return "File too large";
    default: return "Unknown error";
    }
}

struct Checker {
    BlockDevice& dev;
    guest::Allocator& alloc;
    CheckSink& sink;
    CheckResult& res;

    Qcow2Header h = {};
    Qcow2Extensions ext = {};
    uint32_t bits = 0;
    uint64_t cs = 0;
    bool extl2 = false;
    bool data_file = false;
    uint64_t l2_entries = 0; // s->l2_size
    uint64_t l2_entry_bytes = 8;
    uint64_t file_len = 0;
    uint64_t csize_shift = 0, csize_mask = 0, cluster_offset_mask = 0;

    // The in-memory refcount table (qemu's IMRT), 32 bits per cluster.
    uint32_t* imrt = nullptr;
    uint64_t imrt_cap = 0;
    uint64_t nb_clusters = 0;
    uint64_t imrt_max = 0; // min(refcount_max, UINT32_MAX): see docs/check.md

    // The on-disk refcount structure as qemu loaded it at open.
    uint8_t* reftable = nullptr; // big-endian entries
    uint64_t reftable_size = 0;  // entries
    uint32_t refcount_order = 4;
    uint32_t refblock_bits = 0;
    uint8_t* refblock = nullptr; // one cached refcount block
    uint64_t refblock_offset = UINT64_MAX;
    bool signaled_corruption = false;
    // Repair batches like qemu's refcount-block cache: the cached block's changed bytes are written
    // once, before another block is loaded and at the end; freed clusters are discarded in runs.
    uint64_t dirty_lo = UINT64_MAX, dirty_hi = 0;
    uint64_t discard_start = 0, discard_len = 0;

    uint64_t snapshots_size = 0;

    uint32_t fix = 0;                            // guest::CHECK_FIX_*
    Status (*flush)(BlockDevice&) = nullptr;     // with fix: makes writes durable

    bool fix_errors() const { return (fix & guest::CHECK_FIX_ERRORS) != 0; }
    // calculate_refcounts' fix argument: the repair's, except in the recount after a rebuild (0).
    bool calc_fix_errors = false;
    bool fix_leaks() const { return (fix & guest::CHECK_FIX_LEAKS) != 0; }

    void text(const char* t) { CheckLine().s(t).emit(sink); }

    uint64_t* alloc_u64(uint64_t n) {
        return static_cast<uint64_t*>(alloc.allocate(static_cast<size_t>(n * 8), 16));
    }

    ClusterType type_of(uint64_t e) const {
        if (e & QCOW_OFLAG_COMPRESSED)
            return ClusterType::Compressed;
        if ((e & QCOW_OFLAG_ZERO) && !extl2)
            return (e & L2E_OFFSET_MASK) ? ClusterType::ZeroAlloc : ClusterType::ZeroPlain;
        if (!(e & L2E_OFFSET_MASK))
            return data_file && (e & QCOW_OFLAG_COPIED) ? ClusterType::Normal : ClusterType::Unallocated;
        return ClusterType::Normal;
    }

    // qcow2_inc_refcounts_imrt. Returns a negative errno on an internal error.
    int32_t inc(uint64_t offset, uint64_t size) {
        if (size == 0 || static_cast<int64_t>(size) <= 0)
            return 0;
        // offset + size - file_len >= cluster_size, in qemu's int64 arithmetic (offsets here are at
        // most 2^63 - 1, sizes at most 2^32 * 8).
        uint64_t end = 0;
        if (add_overflow(offset, size, &end) || end > INT64_MAX_U ||
            (end >= file_len && end - file_len >= cs)) {
            CheckLine()
                .s("ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x")
                .x(offset)
                .s(" size 0x")
                .x(size)
                .emit(sink);
            res.corruptions++;
            return 0;
        }
        const uint64_t first = offset >> bits;
        const uint64_t last = (end - 1) >> bits;
        for (uint64_t k = first; k <= last; ++k) {
            if (k >= nb_clusters) {
                if (k >= imrt_cap) {
                    res.check_errors++;
                    return -guest::CHECK_ENOMEM;
                }
                nb_clusters = k + 1; // the array was zeroed up to its capacity
            }
            if (imrt[k] == imrt_max) {
                CheckLine().s("ERROR: overflow cluster offset=0x").x(k << bits).emit(sink);
                text("Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a "
                     "clean copy if the image cannot be opened for writing");
                res.corruptions++;
                continue;
            }
            imrt[k]++;
        }
        return 0;
    }

    // qcow2_get_refcount on the on-disk structure. Returns 0 or a negative errno.
    int32_t disk_refcount(uint64_t cluster, uint64_t* out) {
        const uint64_t index = cluster >> refblock_bits;
        if (index >= reftable_size) {
            *out = 0;
            return 0;
        }
        const uint64_t block = load_be64(reftable + index * 8) & REFT_OFFSET_MASK;
        if (block == 0) {
            *out = 0;
            return 0;
        }
        if (block & (cs - 1)) {
            if (!signaled_corruption) {
                // qemu's qcow2_signal_corruption: read-write, it also marks the image corrupt.
                CheckLine()
                    .s(fix ? "qcow2: Marking image as corrupt: Refblock offset " : "qcow2: Image is corrupt: Refblock offset ")
                    .alt_x(block)
                    .s(" unaligned (reftable index: ")
                    .alt_x(index)
                    .s(fix ? "); further corruption events will be suppressed"
                           : "); further non-fatal corruption events will be suppressed")
                    .emit(sink);
                signaled_corruption = true;
                if (fix)
                    mark_corrupt();
            }
            return -guest::CHECK_EIO;
        }
        if (block != refblock_offset) {
            if (write_back() != 0) {
                refblock_offset = UINT64_MAX;
                return -guest::CHECK_EIO;
            }
            if (read_zero_padded(dev, block, refblock, static_cast<size_t>(cs)) != Status::Ok) {
                refblock_offset = UINT64_MAX;
                return -guest::CHECK_EIO;
            }
            refblock_offset = block;
        }
        const uint64_t i = cluster & ((uint64_t{1} << refblock_bits) - 1);
        switch (refcount_order) {
        case 0: *out = (refblock[i / 8] >> (i % 8)) & 1; break;
        case 1: *out = (refblock[i / 4] >> (2 * (i % 4))) & 3; break;
        case 2: *out = (refblock[i / 2] >> (4 * (i % 2))) & 15; break;
        case 3: *out = refblock[i]; break;
        case 4: *out = load_be16(refblock + 2 * i); break;
        case 5: *out = load_be32(refblock + 4 * i); break;
        default: *out = load_be64(refblock + 8 * i); break;
        }
        return 0;
    }

    // qemu's fix_l2_entry_by_zero: a preallocated entry whose offset is misaligned becomes a plain
    // zero cluster (extended L2: allocated subclusters become zero ones), written at once (qemu's
    // bdrv_pwrite_sync). Dropping a reference can only leak the cluster it named. 0 or -errno.
    int32_t fix_l2_entry_by_zero(uint64_t l2_offset, uint8_t* l2, uint64_t index, bool active, bool* overlap) {
        uint8_t* entry = l2 + index * l2_entry_bytes;
        if (extl2) {
            uint64_t bitmap = load_be64(entry + 8);
            bitmap |= bitmap << 32;
            bitmap &= ~QCOW_L2_BITMAP_ALL_ALLOC; // QCOW_L2_BITMAP_ALL_ZEROES: the upper half
            store_be64(entry + 8, bitmap);
            store_be64(entry, 0);
        } else {
            store_be64(entry, QCOW_OFLAG_ZERO);
        }
        const uint64_t at = l2_offset + index * l2_entry_bytes;
        int32_t r = pre_write_check(at, l2_entry_bytes, active ? IGN_ACTIVE_L2 : 0);
        *overlap = r < 0;
        if (r < 0) {
            text("ERROR: Overlap check failed");
        } else if (dev.write(at, entry, static_cast<size_t>(l2_entry_bytes)) != Status::Ok || flush(dev) != Status::Ok) {
            r = -guest::CHECK_EIO;
            text("ERROR: Failed to overwrite L2 table entry: Input/output error");
        } else {
            res.corruptions--;
            res.corruptions_fixed++;
            return 0;
        }
        res.check_errors++;
        return r;
    }

    int32_t check_l2(uint64_t l2_offset, uint32_t flags, uint8_t* l2) {
        if (read_zero_padded(dev, l2_offset, l2, static_cast<size_t>(l2_entries * l2_entry_bytes)) != Status::Ok) {
            text("ERROR: I/O error in check_refcounts_l2");
            res.check_errors++;
            return -guest::CHECK_EIO;
        }
        uint64_t next_contiguous = 0;
        for (uint64_t i = 0; i < l2_entries; ++i) {
            uint64_t e = load_be64(l2 + i * l2_entry_bytes);
            const uint64_t bitmap = extl2 ? load_be64(l2 + i * l2_entry_bytes + 8) : 0;
            const ClusterType type = type_of(e);
            if (type != ClusterType::Compressed && (e & L2E_STD_RESERVED_MASK)) {
                CheckLine().s("ERROR found l2 entry with reserved bits set: ").x(e).emit(sink);
                res.corruptions++;
            }
            switch (type) {
            case ClusterType::Compressed: {
                if (e & QCOW_OFLAG_COPIED) {
                    CheckLine()
                        .s("ERROR: coffset=0x")
                        .x(e & cluster_offset_mask)
                        .s(": copied flag must never be set for compressed clusters")
                        .emit(sink);
                    e &= ~QCOW_OFLAG_COPIED;
                    res.corruptions++;
                }
                if (data_file) {
                    CheckLine().s("ERROR compressed cluster ").i(static_cast<int32_t>(i)).s(" with data file, entry=0x").x(e).emit(sink);
                    res.corruptions++;
                    break;
                }
                if (bitmap) {
                    CheckLine()
                        .s("ERROR compressed cluster ")
                        .i(static_cast<int32_t>(i))
                        .s(" with non-zero subcluster allocation bitmap, entry=0x")
                        .x(e)
                        .emit(sink);
                    res.corruptions++;
                    break;
                }
                const uint64_t coffset = e & cluster_offset_mask;
                const uint64_t nb_csectors = ((e >> csize_shift) & csize_mask) + 1;
                const uint64_t csize = nb_csectors * 512 - (coffset & 511);
                if (const int32_t r = inc(coffset, csize); r < 0)
                    return r;
                if (flags & CHECK_FRAG_INFO) {
                    res.allocated_clusters++;
                    res.compressed_clusters++;
                    res.fragmented_clusters++;
                }
                break;
            }
            case ClusterType::ZeroAlloc:
            case ClusterType::Normal: {
                const uint64_t offset = e & L2E_OFFSET_MASK;
                if ((bitmap >> 32) & bitmap) {
                    res.corruptions++;
                    CheckLine().s("ERROR offset=").x(offset).s(": Allocated cluster has corrupted subcluster allocation bitmap").emit(sink);
                }
                if (offset & (cs - 1)) {
                    res.corruptions++;
                    const bool contains_data = extl2 ? (bitmap & QCOW_L2_BITMAP_ALL_ALLOC) != 0 : !(e & QCOW_OFLAG_ZERO);
                    if (!contains_data) {
                        CheckLine()
                            .s(calc_fix_errors ? "Repairing" : "ERROR")
                            .s(" offset=")
                            .x(offset)
                            .s(": Preallocated cluster is not properly aligned; L2 entry corrupted.")
                            .emit(sink);
                        if (calc_fix_errors) {
                            bool overlap = false;
                            const int32_t r = fix_l2_entry_by_zero(l2_offset, l2, i, (flags & CHECK_FRAG_INFO) != 0, &overlap);
                            if (overlap)
                                return r; // qemu stops checking this table (and the check)
                            if (r == 0)
                                continue; // the cluster is unused now: not counted
                        }
                    }
                    else
                        CheckLine().s("ERROR offset=").x(offset).s(": Data cluster is not properly aligned; L2 entry corrupted.").emit(sink);
                }
                if (flags & CHECK_FRAG_INFO) {
                    res.allocated_clusters++;
                    if (next_contiguous && offset != next_contiguous)
                        res.fragmented_clusters++;
                    next_contiguous = offset + cs;
                }
                if (!data_file)
                    if (const int32_t r = inc(offset, cs); r < 0)
                        return r;
                break;
            }
            case ClusterType::ZeroPlain:
                break;
            case ClusterType::Unallocated:
                if (bitmap & QCOW_L2_BITMAP_ALL_ALLOC) {
                    res.corruptions++;
                    text("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                }
                break;
            }
        }
        return 0;
    }

    int32_t check_l1(uint64_t l1_offset, uint64_t l1_size, uint32_t flags) {
        if (l1_size == 0)
            return 0;
        if (const int32_t r = inc(l1_offset, l1_size * 8); r < 0)
            return r;
        ArenaBuffer l1(alloc, static_cast<size_t>(l1_size * 8));
        ArenaBuffer l2(alloc, static_cast<size_t>(l2_entries * l2_entry_bytes));
        if (!l1.ok() || !l2.ok()) {
            res.check_errors++;
            return -guest::CHECK_ENOMEM;
        }
        if (read_zero_padded(dev, l1_offset, l1.data(), l1.size()) != Status::Ok) {
            text("ERROR: I/O error in check_refcounts_l1");
            res.check_errors++;
            return -guest::CHECK_EIO;
        }
        for (uint64_t i = 0; i < l1_size; ++i) {
            const uint64_t e = load_be64(l1.data() + i * 8);
            if (e == 0)
                continue;
            if (e & L1E_RESERVED_MASK) {
                CheckLine().s("ERROR found L1 entry with reserved bits set: ").x(e).emit(sink);
                res.corruptions++;
            }
            const uint64_t l2_offset = e & L1E_OFFSET_MASK;
            if (const int32_t r = inc(l2_offset, cs); r < 0)
                return r;
            if (l2_offset & (cs - 1)) {
                CheckLine().s("ERROR l2_offset=").x(l2_offset).s(": Table is not cluster aligned; L1 entry corrupted").emit(sink);
                res.corruptions++;
            }
            if (const int32_t r = check_l2(l2_offset, flags, l2.data()); r < 0)
                return r;
        }
        return 0;
    }

    // One snapshot table entry as qemu's qcow2_do_read_snapshots reads it (read-only: no repair).
    struct Snap {
        Qcow2Snapshot sn;
        char id[1024]; // id_str as printed: CheckLine cuts lines at 2048 bytes anyway
        size_t id_len;
        char name[1024];
        size_t name_len;
        uint64_t next; // offset after the name
        uint32_t dropped_extra; // with repair: the extra data size over the limit (0: none)
    };

    // Snapshot-table corruptions (qemu's snapshot_res, kept apart from the refcount check's counters
    // as qemu does): incomplete v3 entries and dropped extra data; repaired by rewriting the table.
    uint64_t snap_corruptions = 0;

    // Snapshot table reads go through one cached window: qemu reads the table with a few large
    // reads, and 65536 entries read field by field would be a million device calls. The table is
    // not written while it is read (a rewrite goes to new clusters and drops the window).
    static constexpr size_t TABLE_WINDOW = 64u << 10;
    uint8_t* window = nullptr;
    uint64_t window_off = 0, window_len = 0;
    Status table_read(uint64_t offset, void* out, size_t len) {
        if (len > TABLE_WINDOW)
            return read_zero_padded(dev, offset, static_cast<uint8_t*>(out), len);
        if (window == nullptr) {
            window = static_cast<uint8_t*>(alloc.allocate(TABLE_WINDOW, 16));
            if (window == nullptr)
                return read_zero_padded(dev, offset, static_cast<uint8_t*>(out), len);
        }
        if (offset < window_off || offset - window_off > window_len || len > window_len - (offset - window_off)) {
            window_len = 0;
            if (const Status st = read_zero_padded(dev, offset, window, TABLE_WINDOW); st != Status::Ok)
                return st;
            window_off = offset;
            window_len = TABLE_WINDOW;
        }
        __builtin_memcpy(out, window + (offset - window_off), len);
        return Status::Ok;
    }

    // Reads entry at *offset (already rounded); returns 0 or -errno with the reason in `why`.
    // With -r all (qemu's repair read), extra data over QCOW_MAX_SNAPSHOT_EXTRA_DATA is kept only up
    // to the limit (s->dropped_extra says so) instead of failing.
    int32_t read_snapshot(uint64_t offset, Snap* s, const char** why) {
        uint8_t hdr[SNAPSHOT_HEADER_SIZE];
        if (table_read(offset, hdr, sizeof hdr) != Status::Ok) {
            *why = "Failed to read snapshot table: Input/output error";
            return -guest::CHECK_EIO;
        }
        offset += sizeof hdr;
        const uint32_t extra_size = load_be32(hdr + 36);
        s->dropped_extra = 0;
        if (extra_size > QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
            if (!fix_errors()) {
                *why = nullptr; // worded by the caller with the index
                return -guest::CHECK_EFBIG;
            }
            s->dropped_extra = extra_size;
            store_be32(hdr + 36, QCOW_MAX_SNAPSHOT_EXTRA_DATA); // parsed as truncated, skipped whole
        }
        uint8_t extra[sizeof(Qcow2SnapshotExtraDisk)] = {};
        const size_t extra_len = extra_size < sizeof extra ? extra_size : sizeof extra;
        if (table_read(offset, extra, extra_len) != Status::Ok) {
            *why = "Failed to read snapshot table: Input/output error";
            return -guest::CHECK_EIO;
        }
        offset += extra_size;
        if (qcow2_snapshot_parse(hdr, sizeof hdr, extra, extra_len, &s->sn) != Status::Ok) {
            *why = "Failed to read snapshot table";
            return -guest::CHECK_EINVAL;
        }
        uint8_t buf[0x10000]; // id_str_size and name_size are 16-bit: one field fits
        s->id_len = 0;
        s->name_len = 0;
        if (table_read(offset, buf, s->sn.id_str_size) != Status::Ok)
            return *why = "Failed to read snapshot table: Input/output error", -guest::CHECK_EIO;
        for (size_t i = 0; i < s->sn.id_str_size && buf[i] != 0 && s->id_len < sizeof s->id; ++i)
            s->id[s->id_len++] = static_cast<char>(buf[i]);
        offset += s->sn.id_str_size;
        if (table_read(offset, buf, s->sn.name_size) != Status::Ok)
            return *why = "Failed to read snapshot table: Input/output error", -guest::CHECK_EIO;
        for (size_t i = 0; i < s->sn.name_size && buf[i] != 0 && s->name_len < sizeof s->name; ++i)
            s->name[s->name_len++] = static_cast<char>(buf[i]);
        offset += s->sn.name_size;
        s->next = offset;
        return 0;
    }

    // qcow2_check_read_snapshot_table without repair. Returns 0 or -errno (the check stops).
    int32_t read_snapshot_table() {
        uint64_t n = h.nb_snapshots;
        const uint64_t off = h.snapshots_offset;
        // qemu's nb_clusters_reduced: snapshots -r all drops off the end of the table (their
        // clusters become leaks the refcount repair frees).
        uint64_t reduced = 0;
        if (n > QCOW_MAX_SNAPSHOTS && fix_errors()) {
            CheckLine().s("Discarding ").u(n - QCOW_MAX_SNAPSHOTS).s(" overhanging snapshots").emit(sink);
            reduced = n - QCOW_MAX_SNAPSHOTS;
            n = QCOW_MAX_SNAPSHOTS;
            h.nb_snapshots = QCOW_MAX_SNAPSHOTS;
        }
        if (n > (SNAPSHOT_HEADER_SIZE * QCOW_MAX_SNAPSHOTS) / SNAPSHOT_HEADER_SIZE ||
            off > INT64_MAX_U - n * SNAPSHOT_HEADER_SIZE || (off & (cs - 1))) {
            res.check_errors++;
            const bool too_large = n > QCOW_MAX_SNAPSHOTS;
            CheckLine().s("\x01" "ERROR snapshot table ").s(too_large ? "too large" : "offset invalid").emit(sink);
            if (too_large)
                CheckLine()
                    .s("You can force-remove all ")
                    .u(n - QCOW_MAX_SNAPSHOTS)
                    .s(" overhanging snapshots with qemu-img check -r all")
                    .emit(sink);
            h.nb_snapshots = 0;
            h.snapshots_offset = 0;
            return too_large ? -guest::CHECK_EFBIG : -guest::CHECK_EINVAL;
        }
        if (n == 0)
            return 0;
        Snap* s = static_cast<Snap*>(alloc.allocate(sizeof(Snap), 16));
        if (s == nullptr)
            return -guest::CHECK_ENOMEM;
        // Repairs keep the L1 tables for their overlap check (n <= QCOW_MAX_SNAPSHOTS: 1 MiB at most).
        if (fix)
            snap_l1s = alloc_u64(n * 2);
        uint64_t offset = off;
        // qemu's table_length: the table's size with dropped extra data not counted (the same as
        // offset - off when nothing was dropped).
        uint64_t table_length = 0;
        for (uint64_t i = 0; i < n; ++i) {
            const uint64_t pre_sn_offset = offset; // before the alignment: where a cut table ends
            offset = (offset + 7) & ~uint64_t{7};
            table_length = (table_length + 7) & ~uint64_t{7};
            const char* why = nullptr;
            const uint64_t entry_start = offset;
            const int32_t r = read_snapshot(offset, s, &why);
            if (r == 0) {
                offset = s->next;
                table_length += (offset - entry_start) -
                                (s->dropped_extra ? s->dropped_extra - QCOW_MAX_SNAPSHOT_EXTRA_DATA : 0);
            }
            if (r == 0 && s->dropped_extra) {
                CheckLine()
                    .s("Discarding too much extra metadata in snapshot table entry ")
                    .u(i)
                    .s(" (")
                    .u(s->dropped_extra)
                    .s(" > ")
                    .u(QCOW_MAX_SNAPSHOT_EXTRA_DATA)
                    .s(")")
                    .emit(sink);
                snap_corruptions++;
            }
            if (r == 0 && snap_l1s) {
                snap_l1s[2 * i] = s->sn.l1_table_offset;
                snap_l1s[2 * i + 1] = s->sn.l1_size;
                snap_l1_count = i + 1;
            }
            if (fix_errors() && r == 0 && (table_length > QCOW_MAX_SNAPSHOTS_SIZE || offset - off > INT_MAX_U)) {
                CheckLine()
                    .s("Discarding ")
                    .u(n - i)
                    .s(" overhanging snapshots (snapshot table is too big)")
                    .emit(sink);
                reduced += n - i;
                n = i;
                h.nb_snapshots = static_cast<uint32_t>(i);
                snap_l1_count = snap_l1_count < i ? snap_l1_count : i;
                offset = pre_sn_offset;
                break;
            }
            const bool too_big = r == 0 && (table_length > QCOW_MAX_SNAPSHOTS_SIZE || offset - off > INT_MAX_U);
            if (too_big) {
                why = "Snapshot table is too big";
            } else if (r == 0) {
                continue;
            }
            res.check_errors++;
            CheckLine line;
            line.s("\x01" "ERROR failed to read the snapshot table: ");
            if (why != nullptr)
                line.s(why);
            else
                line.s("Too much extra metadata in snapshot table entry ").u(i);
            line.emit(sink);
            if (why == nullptr)
                text("You can force-remove this extra metadata with qemu-img check -r all");
            else if (too_big) // qemu's error_append_hint in qcow2_do_read_snapshots
                CheckLine()
                    .s("You can force-remove all ")
                    .u(n - i)
                    .s(" overhanging snapshots with qemu-img check -r all")
                    .emit(sink);
            alloc.deallocate(s, sizeof(Snap));
            h.nb_snapshots = 0;
            h.snapshots_offset = 0;
            return r < 0 ? r : -guest::CHECK_EFBIG;
        }
        snapshots_size = offset - off;
        snap_corruptions += reduced;
        if (reduced) {
            // The header's count now (qemu: pwrite_sync), before the refcount check relies on it.
            uint8_t field[4];
            store_be32(field, static_cast<uint32_t>(n));
            if (dev.write(offsetof(Qcow2HeaderDisk, nb_snapshots), field, sizeof field) != Status::Ok ||
                flush(dev) != Status::Ok) {
                res.check_errors++;
                text("ERROR failed to update the snapshot count in the image header: Input/output error");
                alloc.deallocate(s, sizeof(Snap));
                return -guest::CHECK_EIO;
            }
            res.corruptions_fixed += reduced;
            snap_corruptions -= reduced;
        }
        // Only a table read whole gets qemu's per-entry check: v3 entries need 16 bytes of extra data.
        offset = off;
        for (uint64_t i = 0; i < n && h.version >= 3; ++i) {
            offset = (offset + 7) & ~uint64_t{7};
            const char* why = nullptr;
            if (read_snapshot(offset, s, &why) != 0)
                break;
            offset = s->next;
            if (s->sn.extra_data_size < 16) {
                snap_corruptions++;
                CheckLine().s(fix_errors() ? "Repairing" : "ERROR").s(" snapshot table entry ").u(i).s(" is incomplete").emit(sink);
            }
        }
        alloc.deallocate(s, sizeof(Snap));
        return 0;
    }

    int32_t check_snapshot_l1s() {
        if (data_file && h.nb_snapshots) {
            CheckLine().s("ERROR ").i(static_cast<int32_t>(h.nb_snapshots)).s(" snapshots in image with data file").emit(sink);
            res.corruptions++;
        }
        if (h.nb_snapshots == 0)
            return 0;
        Snap* s = static_cast<Snap*>(alloc.allocate(sizeof(Snap), 16));
        if (s == nullptr) {
            res.check_errors++;
            return -guest::CHECK_ENOMEM;
        }
        uint64_t offset = h.snapshots_offset;
        int32_t ret = 0;
        for (uint64_t i = 0; i < h.nb_snapshots && ret == 0; ++i) {
            offset = (offset + 7) & ~uint64_t{7};
            const char* why = nullptr;
            if (read_snapshot(offset, s, &why) != 0) {
                res.check_errors++;
                ret = -guest::CHECK_EIO;
                break;
            }
            offset = s->next;
            if (s->sn.l1_table_offset & (cs - 1)) {
                CheckLine()
                    .s("ERROR snapshot ")
                    .s(s->id, s->id_len)
                    .s(" (")
                    .s(s->name, s->name_len)
                    .s(") l1_offset=")
                    .alt_x(s->sn.l1_table_offset)
                    .s(": L1 table is not cluster aligned; snapshot table entry corrupted")
                    .emit(sink);
                res.corruptions++;
                continue;
            }
            if (s->sn.l1_size > QCOW_MAX_L1_SIZE / 8) {
                CheckLine()
                    .s("ERROR snapshot ")
                    .s(s->id, s->id_len)
                    .s(" (")
                    .s(s->name, s->name_len)
                    .s(") l1_size=")
                    .alt_x(s->sn.l1_size)
                    .s(": L1 table is too large; snapshot table entry corrupted")
                    .emit(sink);
                res.corruptions++;
                continue;
            }
            ret = check_l1(s->sn.l1_table_offset, s->sn.l1_size, 0);
        }
        alloc.deallocate(s, sizeof(Snap));
        return ret;
    }

    // qcow2_check_bitmaps_refcounts.
    int32_t check_bitmaps() {
        if (ext.nb_bitmaps == 0)
            return 0;
        if (const int32_t r = inc(ext.bitmap_directory_offset, ext.bitmap_directory_size); r < 0)
            return r;
        const uint64_t dir_size = ext.bitmap_directory_size;
        if (dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
            res.corruptions++;
            return -guest::CHECK_EINVAL;
        }
        ArenaBuffer dir(alloc, static_cast<size_t>(dir_size));
        if (!dir.ok()) {
            res.check_errors++;
            return -guest::CHECK_ENOMEM;
        }
        if (read_zero_padded(dev, ext.bitmap_directory_offset, dir.data(), dir.size()) != Status::Ok) {
            res.corruptions++;
            return -guest::CHECK_EINVAL;
        }
        // bitmap_list_load's validation is the one info already applied (qcow2_bitmaps_check): an
        // image whose directory is broken does not get this far.
        uint64_t pos = 0;
        for (uint32_t b = 0; b < ext.nb_bitmaps; ++b) {
            Qcow2BitmapDirEntryDiskView e;
            if (dir_size - pos < 24) {
                res.corruptions++;
                return -guest::CHECK_EINVAL;
            }
            const uint8_t* p = dir.data() + pos;
            e.table_offset = load_be64(p);
            e.table_size = load_be32(p + 8);
            const uint64_t extra = load_be32(p + 20);
            const uint64_t name = load_be16(p + 18);
            pos += (24 + extra + name + 7) & ~uint64_t{7};
            if (pos > dir_size) {
                res.corruptions++;
                return -guest::CHECK_EINVAL;
            }
            if (const int32_t r = inc(e.table_offset, uint64_t{e.table_size} * 8); r < 0)
                return r;
            if (e.table_size > BME_MAX_TABLE_SIZE) {
                res.corruptions++;
                return -guest::CHECK_EINVAL;
            }
            ArenaBuffer table(alloc, static_cast<size_t>(uint64_t{e.table_size} * 8));
            if (!table.ok()) {
                res.check_errors++;
                return -guest::CHECK_ENOMEM;
            }
            if (read_zero_padded(dev, e.table_offset, table.data(), table.size()) != Status::Ok) {
                res.corruptions++;
                return -guest::CHECK_EIO;
            }
            for (uint64_t i = 0; i < e.table_size; ++i) {
                const uint64_t entry = load_be64(table.data() + i * 8);
                const uint64_t offset = entry & BME_TABLE_ENTRY_OFFSET_MASK;
                if ((entry & BME_TABLE_ENTRY_RESERVED_MASK) ||
                    (offset != 0 && ((entry & BME_TABLE_ENTRY_FLAG_ALL_ONES) || (offset & (cs - 1))))) {
                    res.corruptions++;
                    continue;
                }
                if (offset == 0)
                    continue;
                if (const int32_t r = inc(offset, cs); r < 0)
                    return r;
            }
        }
        return 0;
    }
    struct Qcow2BitmapDirEntryDiskView {
        uint64_t table_offset = 0;
        uint32_t table_size = 0;
    };

    int32_t check_refblocks(bool* rebuild) {
        for (uint64_t i = 0; i < reftable_size; ++i) {
            const uint64_t raw = load_be64(reftable + i * 8);
            const uint64_t offset = raw & REFT_OFFSET_MASK;
            const uint64_t cluster = offset >> bits;
            if (raw & REFT_RESERVED_MASK) {
                CheckLine().s("ERROR refcount table entry ").u(i).s(" has reserved bits set").emit(sink);
                res.corruptions++;
                *rebuild = true;
                continue;
            }
            if (offset & (cs - 1)) {
                CheckLine().s("ERROR refcount block ").u(i).s(" is not cluster aligned; refcount table entry corrupted").emit(sink);
                res.corruptions++;
                *rebuild = true;
                continue;
            }
            if (cluster >= nb_clusters) {
                res.corruptions++;
                CheckLine().s(calc_fix_errors ? "Repairing" : "ERROR").s(" refcount block ").u(i).s(" is outside image").emit(sink);
                if (calc_fix_errors) {
                    // qemu grows the file to end with the block (bdrv_truncate to offset + cluster).
                    // A block beyond the array: check() tried that grow before anything else was
                    // written, and it failed (had it worked, the repair would have stopped there).
                    if (cluster + 1 >= imrt_cap) {
                        resize_failed(rebuild);
                        continue;
                    }
                    if (grow_file_to(offset + cs) < 0) {
                        resize_failed(rebuild);
                        continue;
                    }
                    nb_clusters = (file_len + cs - 1) >> bits;
                    res.corruptions--;
                    res.corruptions_fixed++;
                    if (const int32_t r = inc(offset, cs); r < 0)
                        return r;
                }
                continue;
            }
            if (offset != 0) {
                if (const int32_t r = inc(offset, cs); r < 0)
                    return r;
                if (imrt[cluster] != 1) {
                    CheckLine().s("ERROR refcount block ").u(i).s(" refcount=").u(imrt[cluster]).emit(sink);
                    res.corruptions++;
                    *rebuild = true;
                }
            }
        }
        return 0;
    }

    // qemu's failed bdrv_co_truncate in check_refblocks: the file driver's error_report_err, then
    // the check's line, and a rebuild. The errno is the host's (the run's first failed device
    // operation): the guest only learns that the write failed, so the lines carry the check text's
    // errno marker (0x02 at the line start; ops/check_op and docs/guest-abi.md).
    void resize_failed(bool* rebuild) {
        *rebuild = true;
        CheckLine().s("\x01\x02" "Could not resize file: ").emit(sink);
        CheckLine().s("\x02" "ERROR could not resize image: ").emit(sink);
    }

    // Extends the file with zeros to `end` (qemu's bdrv_truncate, PREALLOC_MODE_OFF): one zeroed
    // cluster written at the end, the gap before it left as a hole. 0 or -errno.
    int32_t grow_file_to(uint64_t end) {
        if (end <= file_len)
            return 0;
        ArenaBuffer zero(alloc, static_cast<size_t>(cs));
        if (!zero.ok())
            return -guest::CHECK_ENOMEM;
        __builtin_memset(zero.data(), 0, zero.size());
        const uint64_t start = end - cs > file_len ? end - cs : file_len;
        if (dev.write(start, zero.data(), static_cast<size_t>(end - start)) != Status::Ok)
            return -guest::CHECK_EIO;
        file_len = dev.size();
        return file_len >= end ? 0 : -guest::CHECK_EIO;
    }

    uint64_t imrt_get(uint64_t cluster) const { return cluster < nb_clusters ? imrt[cluster] : 0; }

    // alloc_clusters_imrt: the first run of `count` clusters with refcount 0 in the array, from
    // *first_free on, growing the array (the file's end) when none is found. Offset or -errno.
    int64_t alloc_imrt(uint64_t count, uint64_t* first_free) {
        uint64_t cluster = *first_free;
        bool first_gap = true;
        uint64_t contiguous = 0;
        for (; cluster < nb_clusters && contiguous < count; ++cluster) {
            if (imrt[cluster] == 0) {
                contiguous++;
                if (first_gap) {
                    *first_free = cluster;
                    first_gap = false;
                }
            } else {
                contiguous = 0;
            }
        }
        if (contiguous < count) {
            const uint64_t need = cluster + count - contiguous;
            if (need > imrt_cap)
                return -guest::CHECK_ENOMEM; // beyond the headroom sized up front (rebuild_headroom)
            nb_clusters = need; // the array is zero past nb_clusters
        }
        cluster -= contiguous;
        for (uint64_t i = 0; i < count; ++i)
            imrt[cluster + i] = 1;
        return static_cast<int64_t>(cluster << bits);
    }

    // The refcount block for clusters [start, start + 2^refblock_bits) in the image's width, from the
    // array (qemu writes the array's slice; past nb_clusters it is zero).
    void encode_refblock(uint64_t start, uint8_t* out) const {
        __builtin_memset(out, 0, static_cast<size_t>(cs));
        const uint64_t n = uint64_t{1} << refblock_bits;
        for (uint64_t i = 0; i < n; ++i) {
            const uint64_t v = imrt_get(start + i);
            if (v == 0)
                continue;
            switch (refcount_order) {
            case 0: out[i / 8] = static_cast<uint8_t>(out[i / 8] | ((v & 1) << (i % 8))); break;
            case 1: out[i / 4] = static_cast<uint8_t>(out[i / 4] | ((v & 3) << (2 * (i % 4)))); break;
            case 2: out[i / 2] = static_cast<uint8_t>(out[i / 2] | ((v & 15) << (4 * (i % 2)))); break;
            case 3: out[i] = static_cast<uint8_t>(v); break;
            case 4: store_be16(out + 2 * i, static_cast<uint16_t>(v)); break;
            case 5: store_be32(out + 4 * i, static_cast<uint32_t>(v)); break;
            default: store_be64(out + 8 * i, v); break;
            }
        }
    }

    // The reftable being built (host order) and its size in entries.
    uint64_t* new_reftable = nullptr;
    uint64_t new_entries = 0;

    // qemu's error_setg_errno + error_report_err: "qemu-img: WHAT: strerror".
    void report(const char* what, int32_t err) {
        CheckLine().s("\x01").s(what).s(": ").s(errno_text(-err)).emit(sink);
    }

    // rebuild_refcounts_write_refblocks: a refcount block for every block of clusters in
    // [first, end) with a used cluster, allocated in the array, written as the array's slice.
    // 1 when the reftable grew, 0 when not, -errno (reported) on error.
    int32_t write_refblocks(uint64_t first, uint64_t end, uint8_t* block) {
        uint64_t first_free = 0;
        bool grown = false;
        const uint64_t per_block = uint64_t{1} << refblock_bits;
        for (uint64_t cluster = first; cluster < end; ++cluster) {
            if (imrt_get(cluster) == 0)
                continue;
            const uint64_t index = cluster >> refblock_bits;
            const uint64_t start = index << refblock_bits;
            uint64_t offset = 0;
            if (new_entries > index && new_reftable[index] != 0) {
                offset = new_reftable[index];
            } else {
                if (first_free < start)
                    first_free = start;
                const int64_t got = alloc_imrt(1, &first_free);
                if (got < 0) {
                    report("ERROR allocating refblock", static_cast<int32_t>(got));
                    return static_cast<int32_t>(got);
                }
                offset = static_cast<uint64_t>(got);
                if ((offset >> bits) >= end)
                    end = (offset >> bits) + 1; // the block holding this block's own refcount
                if (new_entries <= index) {
                    const uint64_t per_cluster = cs / 8;
                    const uint64_t entries = (index + 1 + per_cluster - 1) / per_cluster * per_cluster;
                    uint64_t* grown_table = alloc_u64(entries);
                    if (grown_table == nullptr) {
                        report("ERROR allocating reftable memory", -guest::CHECK_ENOMEM);
                        return -guest::CHECK_ENOMEM;
                    }
                    for (uint64_t k = 0; k < entries; ++k)
                        grown_table[k] = k < new_entries ? new_reftable[k] : 0;
                    if (new_reftable)
                        alloc.deallocate(new_reftable, static_cast<size_t>(new_entries * 8));
                    new_reftable = grown_table;
                    new_entries = entries;
                    grown = true;
                }
                new_reftable[index] = offset;
            }
            if (const int32_t r = pre_write_check(offset, cs); r < 0) {
                report("ERROR writing refblock", r);
                return r;
            }
            encode_refblock(start, block);
            if (dev.write(offset, block, static_cast<size_t>(cs)) != Status::Ok) {
                report("ERROR writing refblock", -guest::CHECK_EIO);
                return -guest::CHECK_EIO;
            }
            cluster = start + per_block - 1;
        }
        return grown ? 1 : 0;
    }

    // rebuild_refcount_structure: new refcount blocks and a new refcount table from the array, in
    // clusters the array says are free (the old structure is then leaked, and the leak repair that
    // follows frees it). Crash consistency: everything new is written into clusters nothing uses
    // and made durable before the header's two fields switch to it (one write, then a flush); a
    // kill before the switch leaves the old image, after it a correct structure plus leaks.
    int32_t rebuild_structure() {
        // qcow2_cache_empty: the cached old block has no pending writes (nothing was repaired yet).
        refblock_offset = UINT64_MAX;
        window_len = 0;
        ArenaBuffer block(alloc, static_cast<size_t>(cs));
        if (!block.ok()) {
            res.check_errors++;
            report("ERROR allocating refblock", -guest::CHECK_ENOMEM);
            return -guest::CHECK_ENOMEM;
        }
        int32_t changed = write_refblocks(0, nb_clusters, block.data());
        if (changed < 0) {
            res.check_errors++;
            return changed;
        }
        uint64_t rt_offset = 0, rt_clusters = 0;
        do {
            uint64_t first_free = 0;
            rt_clusters = (new_entries * 8 + cs - 1) >> bits;
            const int64_t got = alloc_imrt(rt_clusters, &first_free);
            if (got < 0) {
                report("ERROR allocating reftable", static_cast<int32_t>(got));
                res.check_errors++;
                return static_cast<int32_t>(got);
            }
            rt_offset = static_cast<uint64_t>(got);
            changed = write_refblocks(rt_offset >> bits, (rt_offset >> bits) + rt_clusters, block.data());
            if (changed < 0) {
                res.check_errors++;
                return changed;
            }
        } while (changed);
        const uint64_t rt_len = new_entries * 8;
        ArenaBuffer disk(alloc, static_cast<size_t>(rt_len));
        if (!disk.ok()) {
            report("ERROR writing reftable", -guest::CHECK_ENOMEM);
            return -guest::CHECK_ENOMEM;
        }
        for (uint64_t k = 0; k < new_entries; ++k)
            store_be64(disk.data() + k * 8, new_reftable[k]);
        if (const int32_t r = pre_write_check(rt_offset, rt_len); r < 0) {
            report("ERROR writing reftable", r);
            return r;
        }
        if (dev.write(rt_offset, disk.data(), static_cast<size_t>(rt_len)) != Status::Ok) {
            report("ERROR writing reftable", -guest::CHECK_EIO);
            return -guest::CHECK_EIO;
        }
        // instar flushes before the switch (qemu's bdrv_pwrite_sync flushes only after it).
        if (flush(dev) != Status::Ok) {
            report("ERROR setting reftable", -guest::CHECK_EIO);
            return -guest::CHECK_EIO;
        }
        uint8_t field[12];
        store_be64(field, rt_offset);
        store_be32(field + 8, static_cast<uint32_t>(rt_clusters));
        if (dev.write(offsetof(Qcow2HeaderDisk, refcount_table_offset), field, sizeof field) != Status::Ok ||
            flush(dev) != Status::Ok) {
            report("ERROR setting reftable", -guest::CHECK_EIO);
            return -guest::CHECK_EIO;
        }
        // The new table replaces the one loaded at open (big-endian, as `reftable` holds it).
        uint8_t* table = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(rt_len), 16));
        if (table == nullptr)
            return -guest::CHECK_ENOMEM;
        __builtin_memcpy(table, disk.data(), static_cast<size_t>(rt_len));
        reftable = table;
        reftable_size = new_entries;
        h.refcount_table_offset = rt_offset;
        h.refcount_table_clusters = static_cast<uint32_t>(rt_clusters);
        file_len = dev.size();
        return 0;
    }

    int32_t calculate(bool* rebuild) {
        if (const int32_t r = inc(0, cs); r < 0)
            return r;
        if (const int32_t r = check_l1(h.l1_table_offset, h.l1_size, CHECK_FRAG_INFO); r < 0)
            return r;
        if (const int32_t r = check_snapshot_l1s(); r < 0)
            return r;
        if (const int32_t r = inc(h.snapshots_offset, snapshots_size); r < 0)
            return r;
        if (const int32_t r = inc(h.refcount_table_offset, reftable_size * 8); r < 0)
            return r;
        if (ext.has_crypto_header && ext.crypto_header_length)
            if (const int32_t r = inc(ext.crypto_header_offset, ext.crypto_header_length); r < 0)
                return r;
        if (const int32_t r = check_bitmaps(); r < 0)
            return r;
        return check_refblocks(rebuild);
    }

    // qemu's update_refcount for one cluster: the entry in its refcount block, and a discard of the
    // cluster when its refcount drops to 0 (QCOW2_DISCARD_ALWAYS).
    int32_t write_refcount(uint64_t cluster, uint64_t value) {
        const uint64_t index = cluster >> refblock_bits;
        if (index >= reftable_size)
            return -guest::CHECK_EIO;
        const uint64_t block = load_be64(reftable + index * 8) & REFT_OFFSET_MASK;
        if (block == 0 || (block & (cs - 1)))
            return -guest::CHECK_EIO;
        uint64_t dummy = 0;
        if (disk_refcount(cluster, &dummy) < 0) // loads the block into the cache
            return -guest::CHECK_EIO;
        const uint64_t i = cluster & ((uint64_t{1} << refblock_bits) - 1);
        uint64_t pos = 0;
        size_t len = 1;
        switch (refcount_order) {
        case 0:
            pos = i / 8;
            refblock[pos] = static_cast<uint8_t>((refblock[pos] & ~(1u << (i % 8))) | ((value & 1) << (i % 8)));
            break;
        case 1:
            pos = i / 4;
            refblock[pos] = static_cast<uint8_t>((refblock[pos] & ~(3u << (2 * (i % 4)))) | ((value & 3) << (2 * (i % 4))));
            break;
        case 2:
            pos = i / 2;
            refblock[pos] = static_cast<uint8_t>((refblock[pos] & ~(15u << (4 * (i % 2)))) | ((value & 15) << (4 * (i % 2))));
            break;
        case 3: pos = i; refblock[pos] = static_cast<uint8_t>(value); break;
        case 4: pos = 2 * i; len = 2; store_be16(refblock + pos, static_cast<uint16_t>(value)); break;
        case 5: pos = 4 * i; len = 4; store_be32(refblock + pos, static_cast<uint32_t>(value)); break;
        default: pos = 8 * i; len = 8; store_be64(refblock + pos, value); break;
        }
        if (pos < dirty_lo)
            dirty_lo = pos;
        if (pos + len > dirty_hi)
            dirty_hi = pos + len;
        if (value == 0) {
            const uint64_t at = cluster << bits;
            if (discard_len && discard_start + discard_len == at) {
                discard_len += cs;
            } else {
                flush_discard();
                discard_start = at;
                discard_len = cs;
            }
        }
        return 0;
    }

    // Writes the cached refcount block's changed bytes. 0 or -EIO.
    int32_t write_back() {
        if (dirty_hi == 0)
            return 0;
        const uint64_t lo = dirty_lo, hi = dirty_hi;
        dirty_lo = UINT64_MAX;
        dirty_hi = 0;
        if (dev.write(refblock_offset + lo, refblock + lo, static_cast<size_t>(hi - lo)) != Status::Ok)
            return -guest::CHECK_EIO;
        return 0;
    }

    void flush_discard() {
        if (discard_len)
            (void)dev.discard(discard_start, discard_len); // qemu ignores discard failures too
        discard_len = 0;
    }

    // qemu's qcow2_mark_corrupt (read-write only). qemu sets the bit at once; instar sets it with
    // the other header bits at the end of the run (check()), so a repair refused as unimplemented
    // leaves the file untouched. Either way the bit is on disk when the command returns.
    bool pending_corrupt = false;
    void mark_corrupt() { pending_corrupt = true; }

    void compare(bool* rebuild, uint64_t* highest, uint32_t how = 0) {
        *highest = 0;
        for (uint64_t i = 0; i < nb_clusters; ++i) {
            uint64_t r1 = 0;
            if (const int32_t e = disk_refcount(i, &r1); e < 0) {
                CheckLine().s("Can't get refcount for cluster ").u(i).s(": ").s(errno_text(-e)).emit(sink);
                res.check_errors++;
                continue;
            }
            const uint64_t r2 = imrt[i];
            if (r1 > 0 || r2 > 0)
                *highest = i;
            if (r1 != r2) {
                uint64_t* num_fixed = nullptr;
                if (r1 == 0)
                    *rebuild = true;
                else if (r1 > r2 && (how & guest::CHECK_FIX_LEAKS))
                    num_fixed = &res.leaks_fixed;
                else if (r1 < r2 && (how & guest::CHECK_FIX_ERRORS))
                    num_fixed = &res.corruptions_fixed;
                CheckLine()
                    .s(num_fixed ? "Repairing" : r1 < r2 ? "ERROR" : "Leaked")
                    .s(" cluster ")
                    .u(i)
                    .s(" refcount=")
                    .u(r1)
                    .s(" reference=")
                    .u(r2)
                    .emit(sink);
                if (num_fixed && write_refcount(i, r2) == 0) {
                    (*num_fixed)++;
                    continue;
                }
                if (r1 < r2)
                    res.corruptions++;
                else
                    res.leaks++;
            }
        }
    }

    // Snapshot L1 tables (offset, entries) as read from the table: qemu's s->snapshots, for its
    // inactive-L1 overlap check. At most QCOW_MAX_SNAPSHOTS entries.
    uint64_t* snap_l1s = nullptr;
    uint64_t snap_l1_count = 0;

    // qcow2_check_metadata_overlap with qemu's default "cached" checks, as a repair write would
    // meet it: the name of the first structure [offset, offset + size) overlaps, or nullptr.
    static constexpr uint32_t IGN_ACTIVE_L1 = 1, IGN_ACTIVE_L2 = 2; // qemu's ign argument
    const char* overlap_name(uint64_t offset, uint64_t size, uint32_t ign) {
        if (size == 0)
            return nullptr;
        if (offset < cs)
            return "qcow2_header";
        size = ((offset & (cs - 1)) + size + cs - 1) & ~(cs - 1);
        offset &= ~(cs - 1);
        auto hit = [&](uint64_t start, uint64_t len) {
            return len != 0 && offset < start + len && start < offset + size;
        };
        if (!(ign & IGN_ACTIVE_L1) && h.l1_size && hit(h.l1_table_offset, uint64_t{h.l1_size} * 8))
            return "active L1 table";
        if (reftable_size && hit(h.refcount_table_offset, reftable_size * 8))
            return "refcount table";
        if (snapshots_size && hit(h.snapshots_offset, snapshots_size))
            return "snapshot table";
        for (uint64_t i = 0; i < snap_l1_count; ++i)
            if (snap_l1s[2 * i + 1] && hit(snap_l1s[2 * i], snap_l1s[2 * i + 1] * 8))
                return "inactive L1 table";
        if (!(ign & IGN_ACTIVE_L2) && h.l1_size) {
            ArenaBuffer l1(alloc, static_cast<size_t>(uint64_t{h.l1_size} * 8));
            if (l1.ok() && read_zero_padded(dev, h.l1_table_offset, l1.data(), l1.size()) == Status::Ok)
                for (uint64_t i = 0; i < h.l1_size; ++i) {
                    const uint64_t l2 = load_be64(l1.data() + i * 8) & L1E_OFFSET_MASK;
                    if (l2 && hit(l2, cs))
                        return "active L2 table";
                }
        }
        for (uint64_t i = 0; i < reftable_size; ++i) {
            const uint64_t b = load_be64(reftable + i * 8) & REFT_OFFSET_MASK;
            if (b && hit(b, cs))
                return "refcount block";
        }
        if ((h.autoclear_features & 1) && hit(ext.bitmap_directory_offset, ext.bitmap_directory_size))
            return "bitmap directory";
        return nullptr;
    }

    // qcow2_pre_write_overlap_check on a read-write image: an overlap is a fatal corruption
    // (qcow2_signal_corruption: the line once, the corrupt bit) and -EIO.
    int32_t pre_write_check(uint64_t offset, uint64_t size, uint32_t ign = 0) {
        const char* name = overlap_name(offset, size, ign);
        if (name == nullptr)
            return 0;
        const bool corrupt = pending_corrupt || (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT);
        if (!(signaled_corruption && corrupt)) {
            CheckLine()
                .s("qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with ")
                .s(name)
                .s("); further corruption events will be suppressed")
                .emit(sink);
            mark_corrupt();
            signaled_corruption = true;
        }
        return -guest::CHECK_EIO;
    }

    int32_t check_oflag_copied() {
        const bool repair = fix_errors() || (fix_leaks() && !res.check_errors && !res.corruptions && !res.leaks);
        ArenaBuffer l1(alloc, static_cast<size_t>(uint64_t{h.l1_size} * 8));
        ArenaBuffer l2(alloc, static_cast<size_t>(cs));
        if (!l1.ok() || !l2.ok())
            return -guest::CHECK_ENOMEM;
        // qemu uses the L1 table it loaded at open: the same bytes.
        if (read_zero_padded(dev, h.l1_table_offset, l1.data(), l1.size()) != Status::Ok)
            return -guest::CHECK_EIO;
        for (uint64_t i = 0; i < h.l1_size; ++i) {
            const uint64_t e = load_be64(l1.data() + i * 8);
            const uint64_t l2_offset = e & L1E_OFFSET_MASK;
            if (!l2_offset)
                continue;
            uint64_t refcount = 0;
            if (disk_refcount(l2_offset >> bits, &refcount) < 0)
                continue;
            if ((refcount == 1) != ((e & QCOW_OFLAG_COPIED) != 0)) {
                res.corruptions++;
                CheckLine()
                    .s(repair ? "Repairing" : "ERROR")
                    .s(" OFLAG_COPIED L2 cluster: l1_index=")
                    .i(static_cast<int32_t>(i))
                    .s(" l1_entry=")
                    .x(e)
                    .s(" refcount=")
                    .u(refcount)
                    .emit(sink);
                if (repair) {
                    store_be64(l1.data() + i * 8, refcount == 1 ? e | QCOW_OFLAG_COPIED : e & ~QCOW_OFLAG_COPIED);
                    // qcow2_write_l1_entry checks the 512-byte sector of entries it rewrites.
                    if (pre_write_check(h.l1_table_offset + (i & ~uint64_t{63}) * 8, 512, IGN_ACTIVE_L1) < 0) {
                        res.check_errors++;
                        return -guest::CHECK_EIO;
                    }
                    if (dev.write(h.l1_table_offset + i * 8, l1.data() + i * 8, 8) != Status::Ok) {
                        res.check_errors++;
                        return -guest::CHECK_EIO;
                    }
                    res.corruptions--;
                    res.corruptions_fixed++;
                }
            }
            if (read_zero_padded(dev, l2_offset, l2.data(), static_cast<size_t>(l2_entries * l2_entry_bytes)) != Status::Ok) {
                CheckLine().s("ERROR: Could not read L2 table: Input/output error").emit(sink);
                res.check_errors++;
                return -guest::CHECK_EIO;
            }
            uint64_t l2_dirty = 0;
            for (uint64_t j = 0; j < l2_entries; ++j) {
                const uint64_t l2e = load_be64(l2.data() + j * l2_entry_bytes);
                const ClusterType t = type_of(l2e);
                if (t != ClusterType::Normal && t != ClusterType::ZeroAlloc)
                    continue;
                uint64_t rc = 1;
                if (!data_file && disk_refcount((l2e & L2E_OFFSET_MASK) >> bits, &rc) < 0)
                    continue;
                if ((rc == 1) != ((l2e & QCOW_OFLAG_COPIED) != 0)) {
                    res.corruptions++;
                    CheckLine()
                        .s(repair ? "Repairing" : "ERROR")
                        .s(" OFLAG_COPIED data cluster: l2_entry=")
                        .x(l2e)
                        .s(" refcount=")
                        .u(rc)
                        .emit(sink);
                    if (repair) {
                        store_be64(l2.data() + j * l2_entry_bytes, rc == 1 ? l2e | QCOW_OFLAG_COPIED : l2e & ~QCOW_OFLAG_COPIED);
                        l2_dirty++;
                    }
                }
            }
            if (l2_dirty > 0) {
                if (pre_write_check(l2_offset, cs, IGN_ACTIVE_L2) < 0) {
                    text("ERROR: Could not write L2 table; metadata overlap check failed: Input/output error");
                    res.check_errors++;
                    return -guest::CHECK_EIO;
                }
                if (dev.write(l2_offset, l2.data(), static_cast<size_t>(cs)) != Status::Ok) {
                    text("ERROR: Could not write L2 table: Input/output error");
                    res.check_errors++;
                    return -guest::CHECK_EIO;
                }
                res.corruptions -= l2_dirty;
                res.corruptions_fixed += l2_dirty;
            }
        }
        return 0;
    }

    // Clusters a rebuild of the refcount structure for n clusters may append: a refcount block per
    // 2^refblock_bits clusters (counting the appended ones: twice the blocks n needs, plus two), and
    // the refcount table, allocated anew each time it grows (qemu never frees the earlier ones;
    // four sizes are far more than the loop takes, it grows by a cluster at a time), plus slack.
    uint64_t rebuild_headroom(uint64_t n) const {
        const uint64_t blocks = 2 * ((n >> refblock_bits) + 2);
        const uint64_t table_clusters = (blocks * 8 + cs - 1) / cs + 1;
        return blocks + 4 * table_clusters + 8;
    }

    // The EditHost Qcow2Inplace needs for its ordering points: flushes go to the check's flush.
    struct InplaceHost final : guest::EditHost {
        Status (*flush_fn)(BlockDevice&) = nullptr;
        Status set_length(BlockDevice&, uint64_t, guest::Prealloc) override { return Status::Unsupported; }
        Status flush(BlockDevice& file) override { return flush_fn(file); }
        Status add_file(const char*, BlockDevice**) override { return Status::Unsupported; }
        Status out(const char*, size_t) override { return Status::Ok; }
        Status err(const char*, size_t) override { return Status::Ok; }
        void reason(const char*, size_t) override {}
        Status data(uint32_t, const void*, size_t) override { return Status::Ok; }
        void progress(uint64_t, uint64_t) override {}
    };

    // qcow2_check_fix_snapshot_table's qcow2_write_snapshots: the snapshot table as qemu holds it
    // after its repair read (extra data cut to QCOW_MAX_SNAPSHOT_EXTRA_DATA, every entry with at
    // least the 24 bytes of known extra data, v3's disk size filled in) written to new clusters
    // allocated as qemu allocates (first fit, refcounts durable first), then the header's two
    // snapshot fields switched in one write after a flush, then the old table freed and discarded.
    // A kill before the switch leaves the old table (and a leak); after it, the new one.
    // 0 or -errno.
    int32_t rewrite_snapshot_table() {
        const uint64_t n = h.nb_snapshots;
        const uint64_t old_offset = h.snapshots_offset;
        constexpr uint64_t EXTRA_KNOWN = 24; // sizeof(QCowSnapshotExtraData): qemu writes at least this
        // Pass 1 sizes the new table (qemu's: 8-aligned entries, strlen of id and name).
        uint64_t size = 0;
        for (int pass = 0; pass < 2; ++pass) {
            uint8_t* buf = nullptr;
            if (pass == 1) {
                if (size > QCOW_MAX_SNAPSHOTS_SIZE)
                    return -guest::CHECK_EFBIG;
                buf = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(size ? size : 1), 16));
                if (buf == nullptr)
                    return -guest::CHECK_ENOMEM;
                __builtin_memset(buf, 0, static_cast<size_t>(size ? size : 1));
            }
            uint64_t in = old_offset, out = 0;
            ArenaBuffer field(alloc, 0x10000); // id_str_size and name_size are 16-bit
            if (!field.ok())
                return -guest::CHECK_ENOMEM;
            for (uint64_t i = 0; i < n; ++i) {
                in = (in + 7) & ~uint64_t{7};
                out = (out + 7) & ~uint64_t{7};
                uint8_t hdr[SNAPSHOT_HEADER_SIZE];
                uint8_t extra[EXTRA_KNOWN] = {};
                if (read_zero_padded(dev, in, hdr, sizeof hdr) != Status::Ok)
                    return -guest::CHECK_EIO;
                in += sizeof hdr;
                const uint32_t extra_size = load_be32(hdr + 36);
                const uint32_t kept = extra_size > QCOW_MAX_SNAPSHOT_EXTRA_DATA ? QCOW_MAX_SNAPSHOT_EXTRA_DATA : extra_size;
                const uint64_t known = kept < EXTRA_KNOWN ? kept : EXTRA_KNOWN;
                if (read_zero_padded(dev, in, extra, static_cast<size_t>(known)) != Status::Ok)
                    return -guest::CHECK_EIO;
                const uint64_t unknown = kept > EXTRA_KNOWN ? kept - EXTRA_KNOWN : 0;
                const uint64_t unknown_at = in + EXTRA_KNOWN;
                in += extra_size;
                const uint64_t id_size = load_be16(hdr + 12), name_size = load_be16(hdr + 14);
                const uint64_t id_at = in, name_at = in + id_size;
                in += id_size + name_size;
                // qemu keeps the names as C strings: a NUL inside cuts them.
                uint64_t id_len = 0, name_len = 0;
                if (read_zero_padded(dev, id_at, field.data(), static_cast<size_t>(id_size)) != Status::Ok)
                    return -guest::CHECK_EIO;
                while (id_len < id_size && field.data()[id_len] != 0)
                    ++id_len;
                if (pass == 1)
                    __builtin_memcpy(buf + out + SNAPSHOT_HEADER_SIZE + EXTRA_KNOWN + unknown, field.data(),
                                     static_cast<size_t>(id_len));
                if (read_zero_padded(dev, name_at, field.data(), static_cast<size_t>(name_size)) != Status::Ok)
                    return -guest::CHECK_EIO;
                while (name_len < name_size && field.data()[name_len] != 0)
                    ++name_len;
                if (pass == 1) {
                    uint8_t* p = buf + out;
                    uint64_t vm_state = load_be32(hdr + 32);
                    if (known >= 8)
                        vm_state = load_be64(extra);
                    const uint64_t disk_size = known >= 16 ? load_be64(extra + 8) : (h.size + 511) & ~uint64_t{511};
                    const uint64_t icount = known >= 24 ? load_be64(extra + 16) : UINT64_MAX;
                    __builtin_memcpy(p, hdr, 12); // l1_table_offset, l1_size
                    store_be16(p + 12, static_cast<uint16_t>(id_len));
                    store_be16(p + 14, static_cast<uint16_t>(name_len));
                    __builtin_memcpy(p + 16, hdr + 16, 16); // date_sec, date_nsec, vm_clock_nsec
                    store_be32(p + 32, vm_state <= 0xffffffffull ? static_cast<uint32_t>(vm_state) : 0);
                    store_be32(p + 36, static_cast<uint32_t>(kept > EXTRA_KNOWN ? kept : EXTRA_KNOWN));
                    store_be64(p + 40, vm_state);
                    store_be64(p + 48, disk_size);
                    store_be64(p + 56, icount);
                    if (unknown &&
                        read_zero_padded(dev, unknown_at, p + SNAPSHOT_HEADER_SIZE + EXTRA_KNOWN, static_cast<size_t>(unknown)) != Status::Ok)
                        return -guest::CHECK_EIO;
                    __builtin_memcpy(p + SNAPSHOT_HEADER_SIZE + EXTRA_KNOWN + unknown + id_len, field.data(),
                                     static_cast<size_t>(name_len));
                }
                out += SNAPSHOT_HEADER_SIZE + EXTRA_KNOWN + unknown + id_len + name_len;
                if (pass == 0 && out > QCOW_MAX_SNAPSHOTS_SIZE)
                    return -guest::CHECK_EFBIG;
            }
            if (pass == 0) {
                size = out;
                continue;
            }
            InplaceHost host;
            host.flush_fn = flush;
            Qcow2Inplace ip;
            int32_t ret = 0;
            uint64_t at = 0;
            if (ip.open(dev, dev.size(), alloc, &host) != Status::Ok || ip.alloc_clusters(size, &at) != Status::Ok ||
                ip.sync() != Status::Ok) {
                ret = -guest::CHECK_EIO;
            } else if ((ret = pre_write_check(at, size)) == 0) {
                if (ip.write(at, buf, static_cast<size_t>(size)) != Status::Ok || ip.sync() != Status::Ok ||
                    ip.set_snapshots(static_cast<uint32_t>(n), at) != Status::Ok || ip.sync() != Status::Ok ||
                    ip.free_clusters(old_offset, snapshots_size, true) != Status::Ok || ip.sync() != Status::Ok)
                    ret = -guest::CHECK_EIO;
                else {
                    h.snapshots_offset = at;
                    snapshots_size = size;
                }
                window_len = 0;
            }
            ip.close();
            alloc.deallocate(buf, static_cast<size_t>(size ? size : 1));
            file_len = dev.size();
            return ret;
        }
        return 0;
    }

    // Stores the bitmaps anew through the bitmap editor (BITMAP_STORE_ONLY). Its failure leaves the
    // image consistent (the editor switches in one header write) and is not part of the check's
    // result, as qemu's close does not change the check's.
    void store_bitmaps(const guest::CheckRequest& req) {
        guest::BitmapArgs args{};
        args.flags = guest::BITMAP_STORE_ONLY;
        uint8_t bytes[sizeof args];
        __builtin_memcpy(bytes, &args, sizeof args);
        static constexpr uint8_t NO_RANDOM[guest::CREATE_RANDOM_BYTES] = {};
        const guest::EditRequest edit{guest::EditCommand::Bitmap, &dev, dev.size(), nullptr, nullptr, 0, nullptr, 0,
                                      true, bytes, sizeof bytes, 0, 0, NO_RANDOM, req.qemu_version, &alloc,
                                      req.codecs};
        InplaceHost host;
        host.flush_fn = flush;
        (void)edit_bitmap(edit, host);
    }

    // Whether a rebuild's array for a refcount block at cluster c (the file grown to end with it)
    // stays within QCOW2_CHECK_MAX_CLUSTERS.
    bool array_covers(uint64_t c) const {
        return c < QCOW2_CHECK_MAX_CLUSTERS && c + 2 + rebuild_headroom(c + 1) <= QCOW2_CHECK_MAX_CLUSTERS;
    }

    // A valid refcount table entry (no reserved bits, cluster aligned) pointing at or past cluster
    // `clusters`: its cluster, else UINT64_MAX.
    uint64_t outside_block(uint64_t i, uint64_t clusters) const {
        const uint64_t raw = load_be64(reftable + i * 8);
        const uint64_t offset = raw & REFT_OFFSET_MASK;
        if ((raw & REFT_RESERVED_MASK) || (offset & (cs - 1)) || (offset >> bits) < clusters)
            return UINT64_MAX;
        return offset >> bits;
    }

    // -r all: the array's size for a repair that may grow the file (for a refcount block outside it,
    // to that block's end, and for a rebuilt structure: rebuild_headroom), or 0 when that is over
    // QCOW2_CHECK_MAX_CLUSTERS. *far: the lowest cluster of a refcount block outside the file that
    // the array cannot cover (UINT64_MAX: none); check() tries qemu's grow for it first.
    uint64_t repair_cap(uint64_t clusters, uint64_t* far) const {
        uint64_t need = clusters;
        *far = UINT64_MAX;
        for (uint64_t i = 0; i < reftable_size; ++i) {
            const uint64_t c = outside_block(i, clusters);
            if (c == UINT64_MAX)
                continue;
            if (array_covers(c)) {
                if (c >= need)
                    need = c + 1;
            } else if (c < *far) {
                *far = c;
            }
        }
        uint64_t cap = need + 1 + rebuild_headroom(need);
        if (cap > QCOW2_CHECK_MAX_CLUSTERS)
            cap = 0;
        return cap;
    }

    // qcow2_check_refcounts (fix = 0).
    int32_t check_refcounts() {
        file_len = dev.size();
        const uint64_t clusters = (file_len + cs - 1) >> bits;
        if (clusters > INT_MAX_U) {
            res.check_errors++;
            return -guest::CHECK_EFBIG;
        }
        // qemu's size_to_clusters(total_sectors * 512): the virtual size rounded up to sectors.
        const uint64_t vsize = (h.size + 511) & ~uint64_t{511};
        res.total_clusters = (vsize + cs - 1) >> bits;
        nb_clusters = clusters;
        // One more than the file's clusters: a reference may reach less than a cluster past EOF.
        imrt_cap = clusters + 1;
        if (imrt_cap > QCOW2_CHECK_MAX_CLUSTERS)
            return 1; // TooLarge, worded by check()
        calc_fix_errors = fix_errors();
        if (fix_errors()) {
            // -r all may grow the file: for a refcount block outside it (to that block's end) and
            // for a rebuilt refcount structure (rebuild_headroom). The array is sized for both up
            // front; a repair that would need more is refused (outside block) or fails as qemu's
            // allocation failure would ("ERROR allocating refblock: Cannot allocate memory").
            uint64_t far = UINT64_MAX;
            const uint64_t cap = repair_cap(clusters, &far);
            if (cap != 0)
                imrt_cap = cap;
        }
        imrt = static_cast<uint32_t*>(alloc.allocate(static_cast<size_t>(imrt_cap * 4), 16));
        if (imrt == nullptr)
            return 2; // NoMemory
        __builtin_memset(imrt, 0, static_cast<size_t>(imrt_cap * 4));
        bool rebuild = false;
        if (const int32_t r = calculate(&rebuild); r < 0)
            return r;
        const CheckResult pre_compare = res;
        uint64_t highest = 0;
        compare(&rebuild, &highest);
        if (rebuild && fix_errors()) {
            const CheckResult old_res = res;
            uint64_t fresh_leaks = 0;
            text("Rebuilding refcount structure");
            if (const int32_t r = rebuild_structure(); r < 0)
                return r;
            res.corruptions = 0;
            res.leaks = 0;
            // The references are counted again against the new structure (calculate_refcounts, fix 0).
            rebuild = false;
            __builtin_memset(imrt, 0, static_cast<size_t>(imrt_cap * 4));
            calc_fix_errors = false;
            if (const int32_t r = calculate(&rebuild); r < 0)
                return r;
            if (fix_leaks()) {
                // The old structure is leaked now: freed, with the result kept only for leaks the
                // rebuild itself left behind.
                const CheckResult saved = res;
                res = CheckResult{};
                compare(&rebuild, &highest, guest::CHECK_FIX_LEAKS);
                flush_discard();
                if (write_back() != 0)
                    return -guest::CHECK_EIO;
                if (rebuild)
                    text("ERROR rebuilt refcount structure is still broken");
                fresh_leaks = res.leaks;
                res = saved;
            }
            if (res.corruptions < old_res.corruptions)
                res.corruptions_fixed += old_res.corruptions - res.corruptions;
            if (res.leaks < old_res.leaks)
                res.leaks_fixed += old_res.leaks - res.leaks;
            res.leaks += fresh_leaks;
            if (flush(dev) != Status::Ok)
                return -guest::CHECK_EIO;
        } else if (fix) {
            if (rebuild) {
                text("ERROR need to rebuild refcount structures");
                res.check_errors++;
                return -guest::CHECK_EIO;
            }
            if (res.leaks || res.corruptions) {
                // Crash consistency: each write moves one refcount toward its true reference count,
                // so an interrupted repair leaves a subset of the problems it found.
                res = pre_compare;
                compare(&rebuild, &highest, fix);
                flush_discard();
                if (write_back() != 0)
                    return -guest::CHECK_EIO;
            }
            if (flush(dev) != Status::Ok)
                return -guest::CHECK_EIO;
        }
        // OFLAG_COPIED only after the refcounts it follows are durable.
        if (const int32_t r = check_oflag_copied(); r < 0)
            return r;
        if (fix && flush(dev) != Status::Ok)
            return -guest::CHECK_EIO;
        res.image_end_offset = (highest + 1) * cs;
        return 0;
    }
};

} // namespace

Status check(const guest::CheckRequest& req, CheckSink& sink, CheckResult* result) {
    if (!req.image || !req.allocator || !result)
        return Status::Invalid;
    if ((req.fix & ~(guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS)) != 0 || (req.fix && req.flush == nullptr))
        return Status::Invalid;
    BlockDevice& dev = *req.image;
    guest::Allocator& alloc = *req.allocator;
    CheckResult& res = *result;
    res = CheckResult{};
    Checker c{dev, alloc, sink, res};
    c.fix = req.fix;
    c.flush = req.flush;

    Qcow2HeaderDisk disk;
    // SAFETY: Qcow2HeaderDisk is byte arrays only (alignment 1), filled as raw bytes.
    Status st = read_zero_padded(dev, 0, reinterpret_cast<uint8_t*>(&disk), sizeof disk);
    if (st != Status::Ok)
        return st;
    {
        // qemu's check-mode open ignores the snapshot table (qcow2_check_read_snapshot_table reads
        // and judges it from the header's raw fields): the header is validated without it.
        Qcow2HeaderDisk no_snapshots = disk;
        __builtin_memset(no_snapshots.nb_snapshots, 0, sizeof no_snapshots.nb_snapshots);
        __builtin_memset(no_snapshots.snapshots_offset, 0, sizeof no_snapshots.snapshots_offset);
        if ((st = qcow2_header_parse(no_snapshots, &c.h)) != Status::Ok)
            return st; // info opened it already: only a file changed under us gets here
        c.h.nb_snapshots = load_be32(disk.nb_snapshots);
        c.h.snapshots_offset = load_be64(disk.snapshots_offset);
    }
    const Qcow2Header& h = c.h;
    {
        ArenaBuffer cluster(alloc, static_cast<size_t>(h.extensions_end() < sizeof disk ? sizeof disk : h.extensions_end()));
        if (!cluster.ok())
            return Status::NoMemory;
        if ((st = read_zero_padded(dev, 0, cluster.data(), cluster.size())) != Status::Ok)
            return st;
        if ((st = qcow2_extensions_parse(h, cluster.data(), h.header_length, h.extensions_end(), &c.ext)) != Status::Ok)
            return st;
        c.ext.backing_format = nullptr; // points into the buffer released here
        c.ext.data_file = nullptr;
    }
    c.bits = h.cluster_bits;
    c.cs = h.cluster_size();
    c.extl2 = (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    c.data_file = (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    c.l2_entry_bytes = c.extl2 ? 16 : 8;
    c.l2_entries = c.cs / c.l2_entry_bytes;
    c.csize_shift = 62 - (c.bits - 8);
    c.csize_mask = (uint64_t{1} << (c.bits - 8)) - 1;
    c.cluster_offset_mask = (uint64_t{1} << c.csize_shift) - 1;
    c.refcount_order = h.refcount_order;
    // qemu's refcount_block_bits = cluster_bits - (refcount_order - 3): entries per refcount block.
    c.refblock_bits = c.bits + 3 - h.refcount_order;
    const uint64_t refcount_max = h.refcount_order == 6 ? UINT64_MAX : (uint64_t{1} << (uint64_t{1} << h.refcount_order)) - 1;
    c.imrt_max = refcount_max < 0xffffffffull ? refcount_max : 0xffffffffull;

    // The refcount table qemu loads at open (validated there: at most QCOW_MAX_REFTABLE_SIZE).
    c.reftable_size = uint64_t{h.refcount_table_clusters} << (c.bits - 3);
    if (c.reftable_size * 8 > QCOW_MAX_REFTABLE_SIZE)
        return Status::Corrupt;
    ArenaBuffer reftable(alloc, static_cast<size_t>(c.reftable_size * 8));
    ArenaBuffer refblock(alloc, static_cast<size_t>(c.cs));
    if (!reftable.ok() || !refblock.ok())
        return Status::NoMemory;
    if ((st = read_zero_padded(dev, h.refcount_table_offset, reftable.data(), reftable.size())) != Status::Ok)
        return st;
    c.reftable = reftable.data();
    c.refblock = refblock.data();

    // A refcount block outside the file beyond what the array can cover: qemu grows the file to end
    // with it. That grow is tried first, before anything else is written: where the file system
    // refuses it (e.g. past ext4's 16 TiB), qemu's truncate fails the same way, and check_refblocks
    // prints qemu's failure without counting the block (no array needed). Where it succeeds, the
    // file now reaches further than the check can follow: the one repair instar refuses, with
    // nothing but the file's length changed. One write for all such blocks: the lowest is tried,
    // and a file system that cannot reach it cannot reach the others.
    if (c.fix_errors()) {
        uint64_t far = UINT64_MAX;
        (void)c.repair_cap((dev.size() + c.cs - 1) >> c.bits, &far);
        if (far != UINT64_MAX) {
            c.file_len = dev.size();
            if (c.grow_file_to((far + 1) << c.bits) == 0)
                return Status::Unsupported;
        }
    }
    if (const int32_t r = c.read_snapshot_table(); r < 0) {
        res.error = r;
        return Status::Ok;
    }

    int32_t r = c.check_refcounts();
    if (c.imrt)
        alloc.deallocate(c.imrt, static_cast<size_t>(c.imrt_cap * 4));
    if (r == 1)
        return Status::TooLarge;
    if (r == 2)
        return Status::NoMemory;
    // qcow2_check_fix_snapshot_table: only after the refcounts are right (it allocates clusters).
    if (r == 0 && c.snap_corruptions && c.fix_errors()) {
        if (const int32_t w = c.rewrite_snapshot_table(); w < 0) {
            res.check_errors++;
            CheckLine().s("ERROR failed to update snapshot table: ").s(errno_text(-w)).emit(sink);
            r = w;
        } else {
            res.corruptions_fixed += c.snap_corruptions;
            c.snap_corruptions = 0;
        }
    }
    res.corruptions += c.snap_corruptions;
    res.error = r < 0 ? r : 0;
    // qemu's qcow2_mark_clean and qcow2_mark_consistent, last: the bits that make qemu distrust the
    // image go only after every repair is durable.
    // qemu clears the corrupt bit only after a clean repair (qcow2_co_check_locked), and the dirty
    // bit whenever it closes the image read-write (qcow2_inactivate's qcow2_mark_clean).
    uint64_t features = c.h.incompatible_features;
    if (c.pending_corrupt)
        features |= QCOW2_INCOMPAT_CORRUPT;
    if (req.fix && r == 0 && res.check_errors == 0 && res.corruptions == 0)
        features &= ~QCOW2_INCOMPAT_CORRUPT;
    if (req.fix)
        features &= ~QCOW2_INCOMPAT_DIRTY;
    if (h.version >= 3 && features != c.h.incompatible_features) {
        uint8_t field[8];
        store_be64(field, features);
        if ((dev.write(offsetof(Qcow2HeaderDisk, incompatible_features), field, sizeof field) != Status::Ok ||
             req.flush(dev) != Status::Ok) &&
            res.error == 0)
            res.error = -guest::CHECK_EIO;
    }
    // qemu's close of the read-write image (qcow2_inactivate): every consistent persistent bitmap
    // is stored anew (new tables and directory, the old ones freed), as after any qemu-img command
    // that opened the image read-write; the bitmap editor's store-only run does exactly that,
    // crash-consistently (docs/bitmap.md). Not after a fatal corruption signal: qemu then drops the
    // block driver without closing it.
    // When this run fixed something and completed, the host double-checks first and then stores
    // them (qemu closes the image after its double check): not here.
    const bool host_stores = (res.corruptions_fixed || res.leaks_fixed) && res.error == 0;
    if (req.fix && !host_stores && c.ext.nb_bitmaps > 0 && !c.signaled_corruption &&
        !(features & QCOW2_INCOMPAT_CORRUPT))
        c.store_bitmaps(req);
    return Status::Ok;
}

} // namespace instar::qcow2
