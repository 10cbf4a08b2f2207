// qcow2: `snapshot -c/-a/-d` (EditCommand::Snapshot, instar/guest/edit_snapshot.h, docs/snapshot.md):
// qemu's qcow2_snapshot_create / _goto / _delete with qcow2_update_snapshot_refcount and
// qcow2_write_snapshots, in qemu's order and with its allocations (qcow2_inplace.h), so the image
// matches qemu-img's byte for byte apart from the date. -l is the host's (info's snapshot list).
//
// Crash ordering: refcount increases are synced before anything names the clusters; the snapshot
// table is written into new clusters and synced before the one header write (nb_snapshots +
// snapshots_offset) switches to it; decreases come after the references are gone. Between a
// refcount change and the OFLAG_COPIED update that follows it, qemu-img check reports OFLAG_COPIED
// errors, as it does for qemu's own sequence (docs/snapshot.md).
#include "qcow2_bitmap_carry.h"
#include "qcow2_edit.h"
#include "qcow2_bytes.h"
#include "qcow2_inplace.h"
#include "qcow2_limits.h"
#include "qcow2_read_reason.h"
#include "qcow2_snapshot.h"
#include "qcow2_snapshot_walk.h"
#include "qcow2_truncate.h"

#include <instar/guest/edit_snapshot.h>

namespace instar::qcow2 {

namespace {

using guest::EditHost;
using guest::EditRequest;

constexpr int32_t E_NOENT = 2;
constexpr int32_t E_IO = 5;
constexpr int32_t E_AGAIN = 11;
constexpr int32_t E_BUSY = 16;
constexpr int32_t E_NOMEM = 12;
constexpr int32_t E_INVAL = 22;
constexpr int32_t E_FBIG = 27;
constexpr int32_t E_NOTSUP = 95;
constexpr uint64_t SNAPSHOT_HEADER_BYTES = sizeof(Qcow2SnapshotHeaderDisk);   // 40
constexpr uint64_t SNAPSHOT_EXTRA_BYTES = sizeof(Qcow2SnapshotExtraDisk);     // 24: qemu writes at least this
constexpr uint64_t BDRV_SECTOR = 512;
// The L2 tables a snapshot's refcount walk read are kept for its flag pass when together they fit
// this (a 1 GiB image with 64 KiB clusters has two; 1 MiB covers 8 GiB of them). Bounds the guest
// memory that copy takes; past it each table is read again.
constexpr uint64_t SNAPSHOT_L2_KEEP_BYTES = uint64_t{1} << 20;

int32_t errno_of(Status st) {
    switch (st) {
    case Status::NoMemory: return -E_NOMEM;
    case Status::TooLarge: return -E_FBIG;
    case Status::Invalid: return -E_INVAL;
    case Status::Unsupported: return -E_NOTSUP;
    default: return -E_IO;
    }
}

struct Entry {
    uint64_t l1_offset;
    uint32_t l1_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;
    uint32_t extra_size;     // as qemu keeps it (>= 24 when rewritten)
    const uint8_t* unknown;  // extra data past the 24 bytes qemu knows
    uint32_t unknown_len;
    const uint8_t* id;
    uint32_t id_len;         // strlen: qemu keeps C strings
    const uint8_t* name;
    uint32_t name_len;
};

bool str_eq(const uint8_t* a, uint32_t alen, const uint8_t* b, uint32_t blen) {
    if (alen != blen)
        return false;
    for (uint32_t i = 0; i < alen; ++i)
        if (a[i] != b[i])
            return false;
    return true;
}

// glibc's strtoul(s, NULL, 10) on a 64-bit host: spaces, a sign, digits; overflow saturates.
uint64_t strtoul10(const uint8_t* s, uint32_t len) {
    uint32_t i = 0;
    while (i < len && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')))
        ++i;
    bool neg = false;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    uint64_t v = 0;
    bool over = false;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; ++i) {
        if (__builtin_mul_overflow(v, uint64_t{10}, &v) || __builtin_add_overflow(v, uint64_t(s[i] - '0'), &v))
            over = true;
    }
    if (over)
        return ~uint64_t{0};
    return neg ? uint64_t{0} - v : v;
}

class Snapshots {
public:
    Snapshots(const EditRequest& req, EditHost& host) : req_(req), host_(host), alloc_(*req.allocator) {}
    ~Snapshots() {
        if (raw_ != nullptr)
            alloc_.deallocate(raw_, raw_len_);
        if (entries_ != nullptr)
            alloc_.deallocate(entries_, entries_bytes_);
        if (l1_ != nullptr)
            alloc_.deallocate(l1_, l1_bytes_);
        ip_.close();
    }

    Status run() {
        if (req_.args_len < sizeof(guest::SnapshotArgs) || !req_.writable)
            return Status::Invalid;
        guest::SnapshotArgs a;
        __builtin_memcpy(&a, req_.args, sizeof a);
        if (uint64_t{a.id_len} + a.name_len > req_.args_len - sizeof a)
            return Status::Invalid;
        const uint8_t* id = req_.args + sizeof a;
        const uint8_t* name = id + a.id_len;
        if (const Status st = open(); st != Status::Ok)
            return st;
        // qemu-img loads persistent bitmaps on opening and stores them anew on closing, whatever
        // the command did (qcow2_bitmap_carry.h). -a is refused by qemu's block layer before the
        // driver runs; instar says the same without the rewrite (the image untouched).
        Qcow2BitmapCarry bitmaps(req_, host_, ip_);
        if (ip_.header().autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) {
            if (a.action == guest::SNAPSHOT_ACTION_APPLY)
                return fail_message(-E_BUSY, "Device has active dirty bitmaps");
            if (const Status st = bitmaps.load(false); st != Status::Ok)
                return st;
        }
        Status st = Status::Invalid;
        switch (a.action) {
        case guest::SNAPSHOT_ACTION_CREATE: st = create(name, a.name_len); break;
        case guest::SNAPSHOT_ACTION_APPLY:
            st = apply(name, a.name_len, (a.flags & guest::SNAPSHOT_HAS_BACKING) ? &a.backing_size : nullptr,
                       (a.flags & guest::SNAPSHOT_BACKING_BYTES) != 0);
            break;
        case guest::SNAPSHOT_ACTION_DELETE: st = remove(id, a.id_len, name, a.name_len); break;
        default: break;
        }
        // Whatever happened, the cached refcounts go out, as qemu's cache does on close (a failed
        // step leaves leaked clusters, never a reference without its refcount).
        const Status fl = ip_.sync();
        if (st != Status::Ok || fl != Status::Ok)
            return st != Status::Ok ? st : fl;
        return bitmaps.present() ? bitmaps.store(ip_.header().size) : Status::Ok;
    }

private:
    Status result(int32_t error, uint32_t shape = guest::SNAPSHOT_FAIL_ERRNO) {
        guest::SnapshotResult r{error, shape};
        (void)host_.data(guest::SNAPSHOT_REC_RESULT, &r, sizeof r);
        return Status::Ok; // the command ran; the host words the failure
    }
    Status fail_message(int32_t error, const char* text, uint32_t shape = guest::SNAPSHOT_FAIL_MESSAGE) {
        size_t len = 0;
        while (text[len] != 0)
            ++len;
        host_.reason(text, len);
        return result(error, shape);
    }
    Status refuse(const char* what) {
        ReasonText r;
        r.add("instar cannot change the snapshots of a qcow2 image with ").add(what).add(" yet");
        host_.reason(r.data(), r.size());
        return Status::Unsupported;
    }

    Status open() {
        if (const Status st = ip_.open(*req_.image, req_.image_length, alloc_, &host_); st != Status::Ok)
            return st;
        const Qcow2Header& h = ip_.header();
        if (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
            const char* t = "qcow2: Image is corrupt; cannot be opened read/write";
            host_.reason(t, 52);
            return Status::Corrupt;
        }
        if (h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
            return refuse("the dirty bit set (qemu repairs it on opening)");
        cb_ = h.cluster_bits;
        cs_ = h.cluster_size();
        extl2_ = (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
        if (const Status st = load_l1(); st != Status::Ok)
            return st;
        return load_table();
    }

    // The active L1 table again, after a truncate or growth moved or resized it.
    Status reload_l1() {
        if (l1_ != nullptr)
            alloc_.deallocate(l1_, l1_bytes_);
        l1_ = nullptr;
        return load_l1();
    }

    Status load_l1() {
        const Qcow2Header& h = ip_.header();
        if (uint64_t{h.l1_size} * 8 > QCOW_MAX_L1_SIZE)
            return Status::TooLarge;
        l1_size_ = h.l1_size;
        l1_bytes_ = l1_size_ == 0 ? 8 : size_t{l1_size_} * 8;
        l1_ = static_cast<uint64_t*>(alloc_.allocate(l1_bytes_, 64));
        if (l1_ == nullptr)
            return Status::NoMemory;
        return ip_.read_table(h.l1_table_offset, l1_, l1_size_);
    }

    // qemu's qcow2_read_snapshots (the host's open already refused what qemu's open refuses).
    Status load_table() {
        const Qcow2Header& h = ip_.header();
        n_ = h.nb_snapshots;
        if (n_ > QCOW_MAX_SNAPSHOTS)
            return Status::TooLarge;
        entries_bytes_ = (size_t{n_} + 1) * sizeof(Entry);
        entries_ = static_cast<Entry*>(alloc_.allocate(entries_bytes_, 16));
        if (entries_ == nullptr)
            return Status::NoMemory;
        if (n_ == 0)
            return Status::Ok;
        // Pass 1: the table's length, entry by entry through the 40-byte headers.
        SnapshotWalk walk;
        if (qcow2_snapshot_walk(
                h.snapshots_offset, n_, [this](uint64_t at, uint8_t* buf, uint64_t len) { return ip_.read(at, buf, len); },
                [](uint32_t, const uint8_t*) {}, &walk) != Status::Ok)
            return corrupt_table();
        old_size_ = walk.length;
        raw_len_ = static_cast<size_t>(old_size_);
        raw_ = static_cast<uint8_t*>(alloc_.allocate(raw_len_, 16));
        if (raw_ == nullptr)
            return Status::NoMemory;
        if (ip_.read(h.snapshots_offset, raw_, raw_len_) != Status::Ok)
            return corrupt_table();
        // Pass 2: the entries, from memory (the lengths were checked above).
        uint64_t at = 0;
        const uint64_t total_size = h.size / BDRV_SECTOR * BDRV_SECTOR;
        for (uint32_t i = 0; i < n_; ++i) {
            at = round_up8(h.snapshots_offset + at) - h.snapshots_offset;
            // Pass 1 checked these lengths; the bytes are checked again in case they changed.
            if (at > raw_len_ || raw_len_ - at < SNAPSHOT_HEADER_BYTES)
                return corrupt_table();
            const uint8_t* p = raw_ + at;
            const uint32_t extra = load_be32(p + 36);
            if (extra > QCOW_MAX_SNAPSHOT_EXTRA_DATA ||
                raw_len_ - at < SNAPSHOT_HEADER_BYTES + extra + load_be16(p + 12) + load_be16(p + 14))
                return corrupt_table();
            const size_t known = extra < SNAPSHOT_EXTRA_BYTES ? extra : SNAPSHOT_EXTRA_BYTES;
            Qcow2Snapshot s;
            if (qcow2_snapshot_parse(p, SNAPSHOT_HEADER_BYTES, p + SNAPSHOT_HEADER_BYTES, known, &s) != Status::Ok)
                return corrupt_table();
            Entry& e = entries_[i];
            e.l1_offset = s.l1_table_offset;
            e.l1_size = s.l1_size;
            e.date_sec = s.date_sec;
            e.date_nsec = s.date_nsec;
            e.vm_clock_nsec = s.vm_clock_nsec;
            e.vm_state_size = s.vm_state_size;
            e.disk_size = s.has_disk_size ? s.disk_size : total_size;
            e.icount = extra >= 24 ? load_be64(p + SNAPSHOT_HEADER_BYTES + 16) : ~uint64_t{0};
            e.extra_size = extra;
            e.unknown = p + SNAPSHOT_HEADER_BYTES + known;
            e.unknown_len = static_cast<uint32_t>(extra - known);
            e.id = e.unknown + e.unknown_len;
            e.id_len = static_cast<uint32_t>(bounded_strlen(e.id, s.id_str_size));
            e.name = e.id + s.id_str_size;
            e.name_len = static_cast<uint32_t>(bounded_strlen(e.name, s.name_size));
            at += SNAPSHOT_HEADER_BYTES + extra + s.id_str_size + s.name_size;
        }
        return Status::Ok;
    }
    Status corrupt_table() {
        const char* t = "Failed to read snapshot table";
        host_.reason(t, 29);
        return Status::Corrupt;
    }

    // qemu's qcow2_validate_table for a snapshot's L1 table; the message as error_setg words it.
    const char* validate_l1(const Entry& e, int32_t* error) const {
        if (e.l1_size > QCOW_MAX_L1_SIZE / 8) {
            *error = -E_FBIG;
            return "Snapshot L1 table too large";
        }
        if (0x7fffffffffffffffull - uint64_t{e.l1_size} * 8 < e.l1_offset || (e.l1_offset & (cs_ - 1)) != 0) {
            *error = -E_INVAL;
            return "Snapshot L1 table offset invalid";
        }
        return nullptr;
    }

    // qemu's qcow2_update_snapshot_refcount over the L1 table `l1` (l1_size entries, host order,
    // changed in place): refcounts of every cluster it reaches change by `addend` (+1, -1 or 0),
    // then OFLAG_COPIED follows the refcounts in the L2 tables and (addend >= 0) in the L1 table,
    // written at `l1_at` when it changed. The refcount changes are synced before any flag is
    // written; the flags are not synced (the caller's next sync orders them).
    Status update_refcounts(uint64_t* l1, uint32_t l1_size, int addend, uint64_t l1_at) {
        auto* l2 = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs_), 64));
        if (l2 == nullptr)
            return Status::NoMemory;
        // The tables the walk reads stay for the flags when they fit (qemu's L2 cache holds them
        // between its refcount and flag updates too): one read each instead of two.
        uint64_t tables = 0;
        for (uint32_t i = 0; i < l1_size; ++i)
            tables += l1[i] != 0 ? 1 : 0;
        size_t kept_bytes = 0;
        uint8_t* kept = nullptr;
        if (addend != 0 && tables > 0 && tables <= SNAPSHOT_L2_KEEP_BYTES / cs_) {
            kept_bytes = static_cast<size_t>(tables * cs_);
            kept = static_cast<uint8_t*>(alloc_.allocate(kept_bytes, 64)); // none: read twice
        }
        Status st = Status::Ok;
        if (addend != 0)
            st = walk(l1, l1_size, addend, l2, kept);
        if (st == Status::Ok)
            st = ip_.sync();
        bool l1_modified = false;
        if (st == Status::Ok)
            st = flags(l1, l1_size, l2, kept, &l1_modified);
        if (kept != nullptr)
            alloc_.deallocate(kept, kept_bytes);
        alloc_.deallocate(l2, static_cast<size_t>(cs_));
        if (st != Status::Ok)
            return st;
        // The L1 flags after the L2 ones: both only ever go from "shared" to "not shared" here
        // or describe clusters nothing else names yet, so no flush is needed between them; the
        // caller flushes before the next dependent step.
        if (addend >= 0 && l1_modified)
            return ip_.write_table(l1_at, l1, l1_size);
        return Status::Ok;
    }

    Status l2_offset_of(uint64_t e, uint32_t i, uint64_t* out) {
        const uint64_t off = e & QCOW2_L1E_OFFSET_MASK;
        if ((off & (cs_ - 1)) != 0 || !ip_.cluster_in_file(off)) {
            ReasonText r;
            r.add("L2 table offset ").hex(off).add(" unaligned (L1 index: ").hex(i).add(")");
            host_.reason(r.data(), r.size());
            return Status::Corrupt;
        }
        *out = off;
        return Status::Ok;
    }

    uint32_t entry_bytes() const { return extl2_ ? 16 : 8; }

    // What an L2 entry references: 0 nothing, 1 a cluster (normal or allocated zero), 2 compressed.
    int classify(uint64_t e, uint64_t* offset, uint64_t* bytes) const {
        e &= ~QCOW_OFLAG_COPIED;
        if (e & QCOW_OFLAG_COMPRESSED) {
            const uint32_t shift = 62 - (cb_ - 8);
            const uint64_t mask = (uint64_t{1} << (cb_ - 8)) - 1;
            const uint64_t coffset = e & ((uint64_t{1} << shift) - 1);
            const uint64_t sectors = ((e >> shift) & mask) + 1;
            *offset = coffset;
            *bytes = sectors * 512 - (coffset & 511);
            return 2;
        }
        const uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
        *offset = off;
        *bytes = cs_;
        return off != 0 ? 1 : 0; // a zero flag with an offset is still allocated (ZERO_ALLOC)
    }

    Status bad_cluster(uint64_t off, uint64_t l2, uint64_t index) {
        ReasonText r;
        r.add("Cluster allocation offset ").hex(off).add(" unaligned (L2 offset: ").hex(l2).add(", L2 index: ")
            .hex(index).add(")");
        host_.reason(r.data(), r.size());
        return Status::Corrupt;
    }

    // `kept`: room for every table (in L1 order, empty entries skipped), read into it for flags();
    // nullptr: each is read into `l2`.
    Status walk(const uint64_t* l1, uint32_t l1_size, int addend, uint8_t* table, uint8_t* kept) {
        const bool dec = addend < 0;
        const uint32_t eb = entry_bytes();
        const uint64_t per_block = ip_.refcounts_per_block();
        uint64_t k = 0;
        for (uint32_t i = 0; i < l1_size; ++i) {
            if (l1[i] == 0)
                continue;
            uint64_t l2_off = 0;
            if (const Status st = l2_offset_of(l1[i], i, &l2_off); st != Status::Ok)
                return st;
            uint8_t* l2 = kept != nullptr ? kept + k++ * cs_ : table;
            if (const Status st = ip_.read(l2_off, l2, static_cast<size_t>(cs_)); st != Status::Ok)
                return st;
            Run run;
            for (uint64_t j = 0; j < cs_ / eb; ++j) {
                uint64_t off = 0, bytes = 0;
                const int kind = classify(load_be64(l2 + j * eb), &off, &bytes);
                if (kind == 0)
                    continue;
                if (kind == 1 && run.continues(off, cs_, per_block) && ip_.range_in_file(off, 1)) {
                    ++run.clusters;
                    continue;
                }
                if (const Status st = run.apply(ip_, cs_, dec); st != Status::Ok)
                    return st;
                if (kind == 1 && ((off & (cs_ - 1)) != 0 || !ip_.range_in_file(off, 1)))
                    return bad_cluster(off, l2_off, j);
                if (kind == 2 && !ip_.range_in_file(off, 1))
                    return bad_cluster(off, l2_off, j);
                if (kind == 1) {
                    run = Run{off, 1};
                    continue;
                }
                if (const Status st = ip_.update_refcount(off, bytes, 1, dec, true); st != Status::Ok)
                    return st;
            }
            if (const Status st = run.apply(ip_, cs_, dec); st != Status::Ok)
                return st;
            if (const Status st = ip_.update_refcount(l2_off, 1, 1, dec, true); st != Status::Ok)
                return st;
        }
        return Status::Ok;
    }

    // Data clusters that follow each other in the file and share a refcount block: the walk changes
    // their counts in one update_refcount call instead of one each (a 1 GiB image has 16384). A
    // refused run is replayed cluster by cluster (a refused call changes nothing), so what changes,
    // and where it stops, is what cluster-by-cluster calls would have done.
    struct Run {
        uint64_t start = 0;    // offset of the first cluster
        uint64_t clusters = 0; // 0: no run
        // `off` is the next cluster (hence aligned) in the same block.
        bool continues(uint64_t off, uint64_t cs, uint64_t per_block) const {
            const uint64_t next = start + clusters * cs;
            return clusters != 0 && off == next && (start / cs) / per_block == (next / cs) / per_block;
        }
        Status apply(Qcow2Inplace& ip, uint64_t cs, bool dec) {
            const uint64_t n = clusters;
            clusters = 0;
            if (n > 1 && ip.update_refcount(start, n * cs, 1, dec, true) == Status::Ok)
                return Status::Ok;
            for (uint64_t c = 0; c < n; ++c)
                if (const Status st = ip.update_refcount(start + c * cs, 1, 1, dec, true); st != Status::Ok)
                    return st;
            return Status::Ok;
        }
    };

    // `kept`: the tables as walk() read them, changed in place (nullptr: each is read again into
    // `table`).
    Status flags(uint64_t* l1, uint32_t l1_size, uint8_t* table, uint8_t* kept, bool* l1_modified) {
        const uint32_t eb = entry_bytes();
        uint64_t k = 0;
        for (uint32_t i = 0; i < l1_size; ++i) {
            if (l1[i] == 0)
                continue;
            uint64_t l2_off = 0;
            if (const Status st = l2_offset_of(l1[i], i, &l2_off); st != Status::Ok)
                return st;
            uint64_t l2_rc = 0;
            if (const Status st = ip_.get_refcount(l2_off >> cb_, &l2_rc); st != Status::Ok)
                return st;
            uint8_t* l2 = kept != nullptr ? kept + k++ * cs_ : table;
            if (l2_rc != 0) { // a freed table is dropped from qemu's cache unwritten
                if (kept == nullptr)
                    if (const Status st = ip_.read(l2_off, l2, static_cast<size_t>(cs_)); st != Status::Ok)
                        return st;
                bool dirty = false;
                for (uint64_t j = 0; j < cs_ / eb; ++j) {
                    const uint64_t old = load_be64(l2 + j * eb);
                    uint64_t off = 0, bytes = 0;
                    const int kind = classify(old, &off, &bytes);
                    uint64_t rc = 0;
                    if (kind == 2) {
                        rc = 2; // compressed clusters are never modified in place
                    } else if (kind == 1) {
                        if (const Status st = ip_.get_refcount(off >> cb_, &rc); st != Status::Ok)
                            return st;
                    }
                    const uint64_t e = (old & ~QCOW_OFLAG_COPIED) | (rc == 1 ? QCOW_OFLAG_COPIED : 0);
                    if (e != old) {
                        store_be64(l2 + j * eb, e);
                        dirty = true;
                    }
                }
                if (dirty)
                    if (const Status st = ip_.write(l2_off, l2, static_cast<size_t>(cs_)); st != Status::Ok)
                        return st;
            }
            const uint64_t e = l2_off | (l2_rc == 1 ? QCOW_OFLAG_COPIED : 0);
            if (e != l1[i]) {
                l1[i] = e;
                *l1_modified = true;
            }
        }
        return Status::Ok;
    }

    // qemu's qcow2_write_snapshots for entries_[0, n): a new table in new clusters, synced, the
    // header switched in one write, the old table freed (and discarded).
    Status write_table(uint32_t n, int32_t* error) {
        uint64_t size = 0;
        for (uint32_t i = 0; i < n; ++i) {
            const Entry& e = entries_[i];
            size = round_up8(size) + SNAPSHOT_HEADER_BYTES +
                   (e.extra_size > SNAPSHOT_EXTRA_BYTES ? e.extra_size : SNAPSHOT_EXTRA_BYTES) + e.id_len + e.name_len;
            if (size > QCOW_MAX_SNAPSHOTS_SIZE) {
                *error = -E_FBIG;
                return Status::Ok;
            }
        }
        uint64_t at = 0;
        if (const Status st = ip_.alloc_clusters(size, &at); st != Status::Ok) {
            *error = errno_of(st);
            return Status::Ok;
        }
        // qemu flushes here too; one flush after the table is written orders both the table's
        // refcounts and its bytes before the header names it.
        if (size > 0) {
            auto* buf = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(size), 16));
            if (buf == nullptr)
                return Status::NoMemory;
            __builtin_memset(buf, 0, static_cast<size_t>(size));
            uint64_t o = 0;
            for (uint32_t i = 0; i < n; ++i) {
                const Entry& e = entries_[i];
                o = round_up8(o);
                uint8_t* p = buf + o;
                store_be64(p, e.l1_offset);
                store_be32(p + 8, e.l1_size);
                store_be16(p + 12, static_cast<uint16_t>(e.id_len));
                store_be16(p + 14, static_cast<uint16_t>(e.name_len));
                store_be32(p + 16, e.date_sec);
                store_be32(p + 20, e.date_nsec);
                store_be64(p + 24, e.vm_clock_nsec);
                store_be32(p + 32, e.vm_state_size <= 0xffffffffull ? static_cast<uint32_t>(e.vm_state_size) : 0);
                const uint32_t extra = e.extra_size > SNAPSHOT_EXTRA_BYTES ? e.extra_size : SNAPSHOT_EXTRA_BYTES;
                store_be32(p + 36, extra);
                store_be64(p + 40, e.vm_state_size);
                store_be64(p + 48, e.disk_size);
                store_be64(p + 56, e.icount);
                p += SNAPSHOT_HEADER_BYTES + SNAPSHOT_EXTRA_BYTES;
                __builtin_memcpy(p, e.unknown, e.unknown_len);
                p += e.unknown_len;
                __builtin_memcpy(p, e.id, e.id_len);
                p += e.id_len;
                __builtin_memcpy(p, e.name, e.name_len);
                o += SNAPSHOT_HEADER_BYTES + extra + e.id_len + e.name_len;
            }
            const Status st = ip_.write(at, buf, static_cast<size_t>(size));
            alloc_.deallocate(buf, static_cast<size_t>(size));
            if (st != Status::Ok)
                return st;
        }
        if (const Status st = ip_.sync(); st != Status::Ok)
            return st;
        const uint64_t old_offset = ip_.header().snapshots_offset;
        if (const Status st = ip_.set_snapshots(n, at); st != Status::Ok)
            return st;
        if (const Status st = ip_.sync(); st != Status::Ok)
            return st;
        if (const Status st = ip_.free_clusters(old_offset, old_size_, true); st != Status::Ok)
            return st;
        old_size_ = size;
        *error = 0;
        return Status::Ok; // the decreases go out at the next sync
    }

    Status create(const uint8_t* name, uint32_t name_len) {
        if (n_ >= QCOW_MAX_SNAPSHOTS)
            return result(-E_FBIG);
        if (ip_.header().incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
            return result(-E_NOTSUP);
        uint64_t id_max = 0;
        for (uint32_t i = 0; i < n_; ++i) {
            const uint64_t v = strtoul10(entries_[i].id, entries_[i].id_len);
            if (v > id_max)
                id_max = v;
        }
        char id[24];
        uint32_t id_len = 0;
        {
            uint64_t v = id_max + 1; // qemu's "%lu" of id_max + 1 (wraps like unsigned long)
            char d[20];
            uint32_t k = 0;
            do {
                d[k++] = static_cast<char>('0' + v % 10);
                v /= 10;
            } while (v != 0);
            while (k > 0)
                id[id_len++] = d[--k];
        }
        // The active L1 table's copy, as it is in memory (flags and all), in new clusters.
        uint64_t l1_copy = 0;
        if (const Status st = ip_.alloc_clusters(uint64_t{l1_size_} * 8, &l1_copy); st != Status::Ok)
            return st == Status::Corrupt ? st : result(errno_of(st));
        if (const Status st = ip_.write_table(l1_copy, l1_, l1_size_); st != Status::Ok)
            return st;
        if (const Status st = update_refcounts(l1_, l1_size_, 1, ip_.header().l1_table_offset); st != Status::Ok)
            return st == Status::Invalid ? result(-E_INVAL) : st; // a refcount overflow: qemu's -EINVAL
        Entry& e = entries_[n_];
        e = Entry{};
        e.l1_offset = l1_copy;
        e.l1_size = l1_size_;
        e.date_sec = static_cast<uint32_t>(req_.unix_time);
        e.date_nsec = req_.unix_nsec / 1000 * 1000; // qemu's clock has microseconds
        e.disk_size = ip_.header().size / BDRV_SECTOR * BDRV_SECTOR;
        e.icount = 0; // qemu-img's zeroed QEMUSnapshotInfo
        e.extra_size = SNAPSHOT_EXTRA_BYTES;
        // SAFETY: the id's chars viewed as bytes; same size and alignment.
        e.id = reinterpret_cast<const uint8_t*>(id);
        e.id_len = id_len;
        e.name = name;
        e.name_len = static_cast<uint32_t>(bounded_strlen(name, name_len));
        int32_t error = 0;
        if (const Status st = write_table(n_ + 1, &error); st != Status::Ok)
            return st;
        return result(error);
    }

    int32_t find_by_id_or_name(const uint8_t* s, uint32_t len) const {
        const uint32_t l = static_cast<uint32_t>(bounded_strlen(s, len));
        for (uint32_t i = 0; i < n_; ++i)
            if (str_eq(entries_[i].id, entries_[i].id_len, s, l))
                return static_cast<int32_t>(i);
        for (uint32_t i = 0; i < n_; ++i)
            if (str_eq(entries_[i].name, entries_[i].name_len, s, l))
                return static_cast<int32_t>(i);
        return -1;
    }

    // `backing_size`: the backing image's virtual size (nullptr: not told; the host's one-start path).
    Status apply(const uint8_t* key, uint32_t key_len, const uint64_t* backing_size, bool backing_bytes) {
        if (ip_.header().incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
            return result(-E_NOTSUP);
        const int32_t index = find_by_id_or_name(key, key_len);
        if (index < 0)
            return result(-E_NOENT);
        const Entry sn = entries_[index];
        int32_t verr = 0;
        if (const char* why = validate_l1(sn, &verr)) {
            ReasonText r;
            r.add("\x01").add(why).add("\n"); // error_report_err, then the errno
            (void)host_.err(r.data(), r.size());
            return result(verr);
        }
        // qcow2_snapshot_goto: the disk truncated to the snapshot's size (exact, no preallocation),
        // then the active L1 table grown to hold the snapshot's (qcow2_truncate.h). A kill after the
        // truncate leaves the snapshot whole and the active layer at its size: -a can run again.
        const uint64_t cur_size = ip_.header().size / BDRV_SECTOR * BDRV_SECTOR;
        if (sn.disk_size != cur_size) {
            // Growing an overlay: qemu's bdrv_co_truncate zeroes the new area where the backing
            // image reaches into it (BDRV_REQ_ZERO_WRITE), so its size is needed: asked for once.
            const bool overlay = ip_.header().backing_file_offset != 0;
            if (overlay && sn.disk_size > cur_size && backing_size == nullptr)
                return result(-E_AGAIN, guest::SNAPSHOT_FAIL_NEED_BACKING_SIZE);
            if (const Status st =
                    qcow2_truncate(req_, host_, ip_, sn.disk_size, overlay ? backing_size : nullptr, backing_bytes);
                st != Status::Ok)
                return st;
            if (const Status st = reload_l1(); st != Status::Ok)
                return st;
        }
        if (sn.l1_size > l1_size_) {
            if (const Status st = qcow2_grow_l1_exact(req_, host_, ip_, sn.l1_size); st != Status::Ok)
                return st;
            if (const Status st = reload_l1(); st != Status::Ok)
                return st;
        }
        if (!ip_.range_in_file(sn.l1_offset, uint64_t{sn.l1_size} * 8))
            return result(-E_IO);
        // The snapshot's L1 as it is on disk, padded with zeros to the active table's size.
        auto* sn_l1 = static_cast<uint64_t*>(alloc_.allocate(l1_bytes_, 64));
        auto* sn_l1_work = static_cast<uint64_t*>(alloc_.allocate(l1_bytes_, 64));
        if (sn_l1 == nullptr || sn_l1_work == nullptr)
            return Status::NoMemory;
        __builtin_memset(sn_l1, 0, l1_bytes_);
        __builtin_memset(sn_l1_work, 0, l1_bytes_);
        Status st = ip_.read_table(sn.l1_offset, sn_l1, sn.l1_size);
        if (st == Status::Ok) {
            __builtin_memcpy(sn_l1_work, sn_l1, size_t{sn.l1_size} * 8);
            st = update_refcounts(sn_l1_work, sn.l1_size, 1, sn.l1_offset);
        }
        if (st == Status::Ok)
            st = ip_.sync();
        // qemu writes the snapshot's L1 as it read it before raising the refcounts (OFLAG_COPIED
        // possibly set on L2 tables now shared) and corrects the flags last; instar writes the
        // corrected copy, so a crash in between never leaves a shared table marked writable in
        // place. The last pass computes the same flags either way: the bytes end up equal.
        if (st == Status::Ok)
            st = ip_.write_table(ip_.header().l1_table_offset, sn_l1_work, l1_size_);
        if (st == Status::Ok)
            st = ip_.sync();
        if (st == Status::Ok)
            st = update_refcounts(l1_, l1_size_, -1, 0); // the old active table's clusters
        if (st == Status::Ok) {
            __builtin_memcpy(l1_, sn_l1_work, l1_bytes_);
            st = update_refcounts(l1_, l1_size_, 0, ip_.header().l1_table_offset);
        }
        alloc_.deallocate(sn_l1_work, l1_bytes_);
        alloc_.deallocate(sn_l1, l1_bytes_);
        if (st == Status::Invalid)
            return result(-E_INVAL);
        if (st != Status::Ok)
            return st;
        return result(0);
    }

    Status remove(const uint8_t* id, uint32_t id_len, const uint8_t* name, uint32_t name_len) {
        if (ip_.header().incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
            return result(-E_NOTSUP);
        const uint32_t il = static_cast<uint32_t>(bounded_strlen(id, id_len));
        const uint32_t nl = static_cast<uint32_t>(bounded_strlen(name, name_len));
        int32_t index = -1;
        for (uint32_t i = 0; i < n_ && index < 0; ++i)
            if (str_eq(entries_[i].id, entries_[i].id_len, id, il) && str_eq(entries_[i].name, entries_[i].name_len, name, nl))
                index = static_cast<int32_t>(i);
        if (index < 0)
            return fail_message(-E_NOENT, "Can't find the snapshot");
        const Entry sn = entries_[index];
        int32_t verr = 0;
        if (const char* why = validate_l1(sn, &verr))
            return fail_message(verr, why);
        for (uint32_t i = static_cast<uint32_t>(index); i + 1 < n_; ++i)
            entries_[i] = entries_[i + 1];
        int32_t error = 0;
        if (const Status st = write_table(n_ - 1, &error); st != Status::Ok)
            return st;
        if (error != 0)
            return fail_message(error, "Failed to remove snapshot from snapshot list", guest::SNAPSHOT_FAIL_MESSAGE_ERRNO);
        // From here on a failure leaks clusters, as qemu's.
        if (!ip_.range_in_file(sn.l1_offset, uint64_t{sn.l1_size} * 8))
            return fail_message(-E_IO, "Failed to free the cluster and L1 table", guest::SNAPSHOT_FAIL_MESSAGE_ERRNO);
        const size_t bytes = sn.l1_size == 0 ? 8 : size_t{sn.l1_size} * 8;
        auto* sn_l1 = static_cast<uint64_t*>(alloc_.allocate(bytes, 64));
        if (sn_l1 == nullptr)
            return Status::NoMemory;
        Status st = ip_.read_table(sn.l1_offset, sn_l1, sn.l1_size);
        if (st == Status::Ok)
            st = update_refcounts(sn_l1, sn.l1_size, -1, 0);
        alloc_.deallocate(sn_l1, bytes);
        if (st == Status::Invalid)
            return fail_message(-E_INVAL, "Failed to free the cluster and L1 table", guest::SNAPSHOT_FAIL_MESSAGE_ERRNO);
        if (st != Status::Ok)
            return st;
        if (const Status s2 = ip_.free_clusters(sn.l1_offset, uint64_t{sn.l1_size} * 8, true); s2 != Status::Ok)
            return s2;
        st = update_refcounts(l1_, l1_size_, 0, ip_.header().l1_table_offset);
        if (st == Status::Invalid)
            return fail_message(-E_INVAL, "Failed to update snapshot status in disk", guest::SNAPSHOT_FAIL_MESSAGE_ERRNO);
        if (st != Status::Ok)
            return st;
        return result(0);
    }

    const EditRequest& req_;
    EditHost& host_;
    guest::Allocator& alloc_;
    Qcow2Inplace ip_;
    uint32_t cb_ = 16;
    uint64_t cs_ = 65536;
    bool extl2_ = false;
    uint64_t* l1_ = nullptr;
    uint32_t l1_size_ = 0;
    size_t l1_bytes_ = 0;
    uint8_t* raw_ = nullptr;   // the old table's bytes
    size_t raw_len_ = 0;
    uint64_t old_size_ = 0;    // qemu's snapshots_size
    Entry* entries_ = nullptr; // n_ + 1 (room for a new one)
    size_t entries_bytes_ = 0;
    uint32_t n_ = 0;
};

} // namespace

guest::Status edit_snapshot(const guest::EditRequest& req, guest::EditHost& host) {
    if (req.allocator == nullptr || req.image == nullptr)
        return Status::Invalid;
    Snapshots s(req, host);
    return s.run();
}

} // namespace instar::qcow2
