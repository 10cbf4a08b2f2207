// qcow2: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/resize.md).
// What qemu's qcow2_co_truncate does, in an order that survives a kill at any write:
// - grow: a larger L1 table as qcow2_grow_l1_table (new clusters allocated first fit, written,
//   flushed, then the header switched to it, then the old one freed), then the size field. An
//   overlay whose backing image reaches past the old size gets the new area marked as zero clusters
//   (bdrv_co_truncate's BDRV_REQ_ZERO_WRITE) before the size switch.
// - shrink: the size field first (the switch: from then on the image is the new, shorter one), then
//   qemu's clean-up: the clusters past the end are discarded (L2 entries cleared and flushed before
//   their refcounts drop), the L1 tail zeroed and its L2 tables freed, empty refcount blocks
//   dropped from the refcount table, and the file truncated after its last used cluster. Clusters
//   whose refcount reaches 0 are discarded in the file as qemu's QCOW2_DISCARD_ALWAYS does, so the
//   result is byte-identical to qemu's.
// Everything read from the image is untrusted: the header, L1, L2 and refcount structures are
// checked (offsets aligned and inside the file) before anything is written.
#include "qcow2_bitmap_carry.h"
#include "qcow2_edit.h"
#include "qcow2_inplace.h"
#include "qcow2_limits.h"
#include "qcow2_read_compressed.h"
#include "qcow2_read_reason.h"
#include "qcow2_subcluster.h"
#include "qcow2_truncate.h"
#include "qcow2_unlock.h"

#include <instar/guest/edit_resize.h>

namespace instar::qcow2 {
namespace {

// qemu's INT_MAX / L1E_SIZE sanity bound on the wanted L1 size, before QCOW_MAX_L1_SIZE.
inline constexpr uint64_t L1_GROW_SANITY = 0x7fffffffu / 8;
// qemu's BDRV_SECTOR_SIZE: sizes are whole sectors.
inline constexpr uint64_t SECTOR = 512;

using guest::Status;

Status say(guest::EditHost& host, const char* text, Status st) { return guest::edit_refuse(host, text, st); }

// The image as it is now, read-only, for code that reads a BlockDevice (CompressedCache): the
// writable device's size() is the host's limit, not the file's length.
class InplaceView final : public guest::BlockDevice {
public:
    explicit InplaceView(Qcow2Inplace& q) : q_(q) {}
    uint64_t size() const override { return q_.file_length(); }
    Status read(uint64_t offset, void* buf, size_t len) override { return q_.read_zero_padded(offset, buf, len); }
    Status write(uint64_t, const void*, size_t) override { return Status::IoError; }

private:
    Qcow2Inplace& q_;
};

// An edit's refusal reasons for code that words them to a ReasonSink (qcow2_unlock).
class EditReasons final : public guest::ReasonSink {
public:
    explicit EditReasons(guest::EditHost& host) : host_(host) {}
    void reason(const char* text, size_t len) override { host_.reason(text, len); }

private:
    guest::EditHost& host_;
};

struct Resizer {
    const guest::EditRequest& req;
    guest::EditHost& host;
    Qcow2Inplace& q;
    uint64_t cs = 0;
    uint64_t l2_entries = 0; // entries per L2 table
    uint32_t l2_entry_bytes = 8;
    uint64_t* l2 = nullptr;  // one L2 table (as u64 words, big-endian on disk, converted)
    bool data_file = false;  // data clusters live in an external data file (not refcounted)
    uint64_t backing_reach = 0; // the backing image's size (0 without one): where it shows through
    // Set: the size switch is the bitmaps' store (their header switch writes the size).
    Qcow2BitmapCarry* bitmaps_at_switch = nullptr;
    // An encrypted image whose resize writes guest data (an overlay's explicit zeros): its cipher.
    luks::SectorCipher* cipher = nullptr;
    luks::SectorCipher* decipher = nullptr; // the same key, to read a shared head cluster
    bool crypt_physical = false;

    uint64_t size_to_l1(uint64_t size) const {
        const uint64_t span = cs * l2_entries;
        return size / span + (size % span != 0 ? 1 : 0);
    }

    // The size field, then q.sync(): cached refcount changes (a freed old L1) and the field made
    // durable by one flush.
    Status write_size(uint64_t size) {
        if (bitmaps_at_switch != nullptr)
            return bitmaps_at_switch->store(size);
        uint8_t be[8];
        for (int i = 0; i < 8; ++i)
            be[i] = static_cast<uint8_t>(size >> (56 - 8 * i));
        if (const Status st = q.write_header(QCOW2_HDR_SIZE, be, 8); st != Status::Ok)
            return st;
        return q.sync();
    }

    // qemu's qcow2_grow_l1_table(exact_size = true).
    Status grow_l1(uint64_t min_size) {
        const Qcow2Header& h = q.header();
        if (min_size <= h.l1_size)
            return Status::Ok;
        if (min_size > L1_GROW_SANITY || min_size > QCOW_MAX_L1_SIZE / 8)
            return say(host, "Failed to grow the L1 table: File too large", Status::TooLarge);
        const uint64_t bytes = min_size * 8;
        auto* table = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(bytes), 64));
        if (table == nullptr)
            return say(host, "Failed to grow the L1 table: Cannot allocate memory", Status::NoMemory);
        for (uint64_t i = 0; i < min_size; ++i)
            table[i] = 0;
        const uint64_t old_offset = h.l1_table_offset;
        const uint32_t old_size = h.l1_size;
        Status st = q.read_table(old_offset, table, old_size);
        uint64_t new_offset = 0;
        if (st == Status::Ok)
            st = q.alloc_clusters(bytes, &new_offset);
        if (st == Status::Ok)
            st = q.write_table(new_offset, table, min_size);
        if (st == Status::Ok)
            st = q.sync(); // the new table and its refcounts are durable before the header names it
        if (st == Status::Ok)
            st = q.set_l1(new_offset, static_cast<uint32_t>(min_size)); // the switch
        if (st == Status::Ok)
            st = host.flush(*req.image); // durable before the old table's refcount drops
        if (st == Status::Ok && old_size > 0)
            st = q.free_clusters(old_offset, uint64_t{old_size} * 8); // made durable by the caller's sync
        q.allocator().deallocate(table, static_cast<size_t>(bytes));
        if (st == Status::NoMemory)
            return say(host, "Failed to grow the L1 table: Cannot allocate memory", st);
        if (st != Status::Ok)
            return say(host, "Failed to grow the L1 table: Input/output error", st);
        return Status::Ok;
    }

    // A cluster-sized table at `offset` (an L1 entry's L2 table): inside the file and not cluster 0.
    bool l2_offset_ok(uint64_t offset) const { return q.cluster_in_file(offset); }

    Status read_l2(uint64_t offset) { return q.read_table(offset, l2, cs / 8); }
    Status write_l2(uint64_t offset) { return q.write_table(offset, l2, cs / 8); }

    // Frees host cluster range [offset, offset + bytes) one cluster at a time and discards those
    // whose refcount reaches 0 (qemu's QCOW2_DISCARD_ALWAYS passthrough).
    Status free_and_discard(uint64_t offset, uint64_t bytes) {
        const uint64_t first = offset & ~(cs - 1);
        uint64_t end = 0;
        if (__builtin_add_overflow(offset, bytes, &end))
            return Status::Corrupt;
        for (uint64_t c = first; c < end; c += cs) {
            if (const Status st = q.free_clusters(c, cs); st != Status::Ok)
                return st;
            uint64_t rc = 1;
            if (const Status st = q.get_refcount(c / cs, &rc); st != Status::Ok)
                return st;
            if (rc == 0 && c < q.file_length()) { // as qemu's discard; only what the file holds
                const uint64_t len = q.file_length() - c < cs ? q.file_length() - c : cs;
                if (discard_len_ != 0 && discard_at_ + discard_len_ == c) {
                    discard_len_ += len;
                } else {
                    flush_discards();
                    discard_at_ = c;
                    discard_len_ = len;
                }
            }
        }
        return Status::Ok;
    }
    // Discards are coalesced into ranges (one hole punch per run of freed clusters).
    uint64_t discard_at_ = 0, discard_len_ = 0;
    void flush_discards() {
        if (discard_len_ != 0)
            (void)q.device().discard(discard_at_, discard_len_); // best effort, as qemu's
        discard_len_ = 0;
    }

    // Checks before the shrink's switch: every L2 table the clean-up touches lies in the file, and
    // every cluster its entries in the cropped range name too, so nothing after the switch can
    // stumble on bad metadata.
    Status shrink_precheck(uint64_t first_l1, uint64_t end_l1, uint64_t l1_size, const uint64_t* l1,
                           uint64_t discard_start, uint64_t old_length) {
        const uint64_t span = cs * l2_entries;
        const uint64_t words = l2_entry_bytes / 8;
        for (uint64_t i = first_l1; i < l1_size; ++i) {
            const uint64_t off = l1[i] & QCOW2_L1E_OFFSET_MASK;
            if (off == 0)
                continue;
            if (!l2_offset_ok(off)) {
                ReasonText r;
                r.add("L2 table offset ").hex(off).add(" invalid or past the end of the image file");
                return q.refuse(Status::Corrupt, r.data(), r.size());
            }
            if (i >= end_l1)
                continue;
            if (const Status st = read_l2(off); st != Status::Ok)
                return st;
            uint64_t from = 0, to = 0;
            range_in_table(i, discard_start, old_length, &from, &to);
            for (uint64_t j = from; j < to; ++j) {
                uint64_t co = 0, len = 0;
                const uint64_t e = l2[j * words];
                entry_clusters(e, &co, &len);
                if (len == 0 || data_file)
                    continue;
                const bool aligned = (e & QCOW_OFLAG_COMPRESSED) != 0 || (co & (cs - 1)) == 0;
                if (!aligned || co < cs || co >= q.file_length() || len > QCOW2_MAX_CLUSTER_OFFSET - co) {
                    ReasonText r;
                    r.add("Cluster offset ").hex(co).add(" in L2 table ").hex(off).add(
                        " invalid or past the end of the image file");
                    return q.refuse(Status::Corrupt, r.data(), r.size());
                }
            }
            (void)span;
        }
        return Status::Ok;
    }

    // The entries of L2 table `i` that lie in [discard_start, old_length).
    void range_in_table(uint64_t i, uint64_t discard_start, uint64_t old_length, uint64_t* from,
                        uint64_t* to) const {
        const uint64_t span = cs * l2_entries;
        const uint64_t table_start = i * span;
        *from = discard_start > table_start ? (discard_start - table_start) / cs : 0;
        *to = l2_entries;
        if (old_length < table_start + span)
            *to = (old_length - table_start + cs - 1) / cs;
        if (*from > *to)
            *from = *to;
    }

    // The host clusters an L2 entry holds (qemu's qcow2_free_any_cluster); *len 0 for none.
    void entry_clusters(uint64_t e, uint64_t* off, uint64_t* len) const {
        *off = 0;
        *len = 0;
        if (e & QCOW_OFLAG_COMPRESSED) {
            const uint32_t bits = q.cluster_bits();
            const uint32_t csize_shift = 62 - (bits - 8);
            const uint64_t csize_mask = (uint64_t{1} << (bits - 8)) - 1;
            const uint64_t offset_mask = (uint64_t{1} << csize_shift) - 1;
            *off = (e & offset_mask) & ~uint64_t{511};
            *len = 512 * (((e >> csize_shift) & csize_mask) + 1);
            return;
        }
        const uint64_t o = e & QCOW2_L2E_OFFSET_MASK;
        if (o != 0) {
            *off = o;
            *len = cs;
        }
    }

    // The head cluster of a preallocation from an unaligned old size: a plain data cluster qemu's
    // handle_copied keeps (allocated, OFLAG_COPIED, not compressed or zero-flagged; standard L2
    // entries), or 0 when it is anything else.
    uint64_t head_in_place(uint64_t e) const {
        // (With extended L2 entries bit 0 is reserved: the subcluster bitmap says what is zero.)
        const uint64_t zero = l2_entry_bytes == 8 ? QCOW_OFLAG_ZERO : 0;
        if (!(e & QCOW_OFLAG_COPIED) || (e & (QCOW_OFLAG_COMPRESSED | zero)) != 0)
            return 0;
        const uint64_t host_off = e & QCOW2_L2E_OFFSET_MASK;
        if (data_file) // in the data file, at its guest offset
            return host_off;
        return q.data_cluster_in_file(host_off) ? host_off : 0;
    }

    // The guest's view of the old last cluster (entry `e`, subcluster bitmap `bm` with extended L2
    // entries, at guest offset `cluster`), which qemu's copy-on-write reads through the image
    // (perform_cow) when a preallocation moves or completes it: whether [from, to) of it shows the
    // backing file (unallocated, where the backing image reaches).
    bool view_shows_backing(uint64_t e, uint64_t bm, uint64_t cluster, uint64_t from, uint64_t to) const {
        if (e & QCOW_OFLAG_COMPRESSED)
            return false;
        const bool allocated = (e & QCOW2_L2E_OFFSET_MASK) != 0;
        if (l2_entry_bytes == 8)
            return !allocated && !(e & QCOW_OFLAG_ZERO) && from < to && backing_reach > cluster + from;
        const uint32_t scb = q.header().cluster_bits - 5;
        for (uint64_t s = from >> scb; (s << scb) < to; ++s) {
            const Qcow2Sc t = qcow2_sc_type(false, allocated, bm, s);
            if ((t == Qcow2Sc::UnallocPlain || t == Qcow2Sc::UnallocAlloc) && backing_reach > cluster + (s << scb))
                return true;
        }
        return false;
    }
    // Those bytes [from, to) of it into `buf`: the data (inflated when compressed, decrypted with
    // `decipher` when set), zeros where it reads as zeros, the backing file's bytes where it shows
    // (`backing`: the whole cluster's, or nullptr: zeros, the backing image ending before).
    Status view_bytes(uint64_t e, uint64_t bm, uint64_t cluster, uint64_t from, uint64_t to, uint8_t* buf,
                      const uint8_t* backing) {
        const size_t n = static_cast<size_t>(to - from);
        __builtin_memset(buf, 0, n);
        if (n == 0)
            return Status::Ok;
        if (e & QCOW_OFLAG_COMPRESSED) {
            EditReasons reasons(host);
            InplaceView view(q);
            CompressedCache cache(view, q.allocator(), req.codecs, q.header().compression_type, q.cluster_bits(),
                                  &reasons);
            const uint8_t* inflated = nullptr;
            if (const Status st = cache.cluster(e, &inflated); st != Status::Ok)
                return st;
            __builtin_memcpy(buf, inflated + from, n);
            return Status::Ok;
        }
        const uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
        const bool allocated = off != 0;
        if (l2_entry_bytes == 8 && (e & QCOW_OFLAG_ZERO))
            return Status::Ok;
        if (allocated && data_file) { // at its offset in the data file (zeros past its end)
            guest::BlockDevice& df = *req.files[0];
            const uint64_t have = df.size() > off + from ? df.size() - (off + from) : 0;
            const size_t m = static_cast<size_t>(have < n ? have : n);
            if (m > 0)
                if (const Status st = df.read(off + from, buf, m); st != Status::Ok)
                    return st;
        } else if (allocated) {
            if (!q.data_cluster_in_file(off))
                return say(host, "Data cluster offset past the end of the image file in its last cluster",
                           Status::Corrupt);
            if (const Status st = q.read_zero_padded(off + from, buf, n); st != Status::Ok)
                return st;
            if (decipher != nullptr)
                decipher->decrypt((crypt_physical ? off + from : cluster + from) / SECTOR, buf, n);
        }
        if (l2_entry_bytes == 8) {
            if (!allocated && backing != nullptr)
                __builtin_memcpy(buf, backing + from, n);
            return Status::Ok;
        }
        const uint32_t scb = q.header().cluster_bits - 5;
        for (uint64_t s = from >> scb; (s << scb) < to; ++s) {
            const Qcow2Sc t = qcow2_sc_type(false, allocated, bm, s);
            if (t == Qcow2Sc::Invalid)
                return say(host, "Invalid subcluster bitmap in the last cluster before the old size", Status::Corrupt);
            if (t == Qcow2Sc::Normal)
                continue;
            const uint64_t a = (s << scb) > from ? s << scb : from;
            const uint64_t b = ((s + 1) << scb) < to ? (s + 1) << scb : to;
            const bool shows = t == Qcow2Sc::UnallocPlain || t == Qcow2Sc::UnallocAlloc;
            if (shows && backing != nullptr)
                __builtin_memcpy(buf + (a - from), backing + a, static_cast<size_t>(b - a));
            else
                __builtin_memset(buf + (a - from), 0, static_cast<size_t>(b - a));
        }
        return Status::Ok;
    }
    // qcow2_free_any_cluster for a replaced entry: a compressed one's host clusters, a data cluster,
    // or nothing (unallocated). No discard (QCOW2_DISCARD_NEVER).
    Status free_entry(uint64_t e) {
        if (data_file)
            return Status::Ok;
        uint64_t off = 0, bytes = 0;
        entry_clusters(e, &off, &bytes);
        return bytes == 0 ? Status::Ok : q.free_clusters(off, bytes);
    }
    // The backing file's bytes of the head cluster (the whole cluster's, as run_resize asked for),
    // for a preallocation's copy-on-write; nullptr when none were needed.
    const uint8_t* head_backing = nullptr;
    // preallocate_co's last cluster when the new size ends inside it (not the head): its
    // copy-on-write after the new size, [new size, tail_cow_to) of it, reads the backing file
    // (tail_backing: the cluster's bytes; nullptr: it reads zeros, nothing to write).
    uint64_t tail_cluster = UINT64_MAX, tail_cow_to = 0;
    const uint8_t* tail_backing = nullptr;

    // The old last cluster of an overlay zeroed from an unaligned old size: where the byte at
    // `old_length` lies when that cluster is a plain, unshared data cluster (qemu's write path
    // writes it in place), else 0.
    Status head_for_zeros(uint64_t old_length, uint64_t* at) {
        *at = 0;
        if (l2_entry_bytes != 8)
            return Status::Ok;
        uint64_t l2_off = 0;
        if (const Status st = load_table_of(old_length, &l2_off); st != Status::Ok || l2_off == 0)
            return st;
        const uint64_t host_off = head_in_place(l2[(old_length % (cs * l2_entries)) / cs]);
        if (host_off == 0)
            return Status::Ok;
        bool sole = false;
        if (const Status st = sole_reference(host_off, &sole); st != Status::Ok)
            return st;
        if (sole)
            *at = host_off + old_length % cs;
        return Status::Ok;
    }

    // The old last cluster of an overlay zeroed from an unaligned old size when qemu's write path
    // allocates it anew (standard L2 entries): unallocated, so its head is the backing file's bytes
    // (HeadAlloc::Backing), or a plain zero cluster, whose head reads as zeros (HeadAlloc::Zero).
    // Also: a cluster shared with an internal snapshot (not OFLAG_COPIED): a new cluster holding its
    // bytes (HeadAlloc::Copy: zeros when it is zero-flagged), its reference dropped once the entry
    // has moved (link_l2's qcow2_free_any_cluster); and a zero-flagged cluster of its own
    // (HeadAlloc::ZeroInPlace: handle_copied keeps it, the copy-on-write reads zeros, so the whole
    // cluster is written with zeros in place and the entry loses its zero flag).
    // And a compressed cluster (HeadAlloc::Copy with head_compressed): a new cluster holding its
    // inflated bytes, then every host cluster its compressed bytes touch loses a reference.
    enum class HeadAlloc { None, Backing, Zero, Copy, ZeroInPlace };
    uint64_t head_compressed = 0; // Copy: the compressed cluster's L2 entry (0: not compressed)
    uint64_t head_copy_entry = 0; // Copy: the L2 entry whose bytes the new cluster takes (view_bytes)
    uint64_t head_cluster = 0; // ZeroInPlace: the cluster itself
    Status head_to_allocate(uint64_t old_length, HeadAlloc* kind) {
        *kind = HeadAlloc::None;
        if (l2_entry_bytes != 8)
            return Status::Ok;
        uint64_t l2_off = 0;
        if (const Status st = load_table_of(old_length, &l2_off); st != Status::Ok)
            return st;
        const uint64_t e = l2_off == 0 ? 0 : l2[(old_length % (cs * l2_entries)) / cs];
        const uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
        if (e == 0) {
            *kind = HeadAlloc::Backing;
        } else if ((e & ~QCOW_OFLAG_COPIED) == QCOW_OFLAG_ZERO) { // no offset: nothing allocated
            *kind = HeadAlloc::Zero;
        } else if (e & QCOW_OFLAG_COMPRESSED) {
            *kind = HeadAlloc::Copy;
            head_compressed = e;
            head_copy_entry = e;
        } else if (off != 0 && (data_file || q.data_cluster_in_file(off))) {
            if (!(e & QCOW_OFLAG_COPIED)) {
                *kind = HeadAlloc::Copy;
                head_copy_entry = e;
            } else if (e & QCOW_OFLAG_ZERO) {
                bool sole = false; // OFLAG_COPIED must mean that before the cluster is written in place
                if (const Status st = sole_reference(off, &sole); st != Status::Ok)
                    return st;
                if (sole) {
                    *kind = HeadAlloc::ZeroInPlace;
                    head_cluster = off;
                }
            }
        }
        return Status::Ok;
    }
    // qcow2_co_pwritev_part's zeros over [old_length, head_end), with their copy-on-write regions
    // around them: the write covers [from, from + len) (the cluster; with extended L2 entries the
    // subcluster), holding `backing`'s bytes (len of them) or zeros, zeros over [old_length,
    // head_end). At host offset `at` in place (then, extended L2, the subcluster claimed), or with
    // at == 0 into a new cluster: its L2 table found or allocated (get_cluster_table), the cluster
    // allocated first fit (refcount durable first), written, then the entry linked (link_l2: with
    // extended L2 entries the subcluster's allocation bit set, the rest of the bitmap kept).
    Status write_head(uint64_t at, uint64_t from, uint64_t len, uint64_t old_length, uint64_t head_end,
                      const uint8_t* backing, bool claim) {
        const uint64_t span = cs * l2_entries;
        const uint64_t j = (from % span) / cs;
        uint64_t l2_off = 0;
        if (at == 0) {
            if (const Status st = table_for(from / span, &l2_off); st != Status::Ok)
                return st;
            uint64_t host_cluster = from / cs * cs; // an external data file: at the guest offset, unrefcounted
            if (!data_file) {
                if (const Status st = q.alloc_clusters(cs, &host_cluster); st != Status::Ok)
                    return say(host, "Failed to zero out the new area: File too large", st);
                if (const Status st = q.sync(); st != Status::Ok)
                    return st;
            }
            at = host_cluster + from % cs;
        }
        auto* buf = static_cast<uint8_t*>(q.allocator().allocate(static_cast<size_t>(len), 64));
        if (buf == nullptr)
            return Status::NoMemory;
        if (head_kind == HeadAlloc::Copy) {
            // The old cluster's bytes as the guest reads them: inflated, decrypted, zeros where it
            // reads as zeros, the backing file's where it shows (extended L2 entries).
            if (const Status st = view_bytes(head_copy_entry, head_bm, from / cs * cs, from % cs, from % cs + len, buf,
                                             backing);
                st != Status::Ok) {
                q.allocator().deallocate(buf, static_cast<size_t>(len));
                return st;
            }
        } else if (backing != nullptr) { // (the whole cluster's bytes)
            __builtin_memcpy(buf, backing + from % cs, static_cast<size_t>(len));
        } else {
            __builtin_memset(buf, 0, static_cast<size_t>(len));
        }
        if (head_end > old_length)
            __builtin_memset(buf + (old_length - from), 0, static_cast<size_t>(head_end - old_length));
        // An encrypted image: qcow2_co_encrypt's sectors, numbered from the host offset (LUKS) or
        // the guest offset (the old AES method). Sizes are whole sectors, so every one is whole.
        if (cipher != nullptr)
            cipher->encrypt((crypt_physical ? at : from) / SECTOR, buf, static_cast<size_t>(len));
        // Guest data goes to the external data file when there is one (flushed before the entry).
        guest::BlockDevice& dev = data_file ? *req.files[0] : *req.image;
        Status st = data_file ? dev.write(at, buf, static_cast<size_t>(len)) : q.write(at, buf, static_cast<size_t>(len));
        q.allocator().deallocate(buf, static_cast<size_t>(len));
        if (st == Status::Ok)
            st = host.flush(dev);
        if (st != Status::Ok)
            return say(host, "Failed to zero out the new area: Input/output error", st);
        if (l2_off == 0 && head_kind == HeadAlloc::ZeroInPlace) { // in place, the zero flag dropped (link_l2)
            uint64_t off = 0;
            if (const Status s2 = load_table_of(from, &off); s2 != Status::Ok || off == 0)
                return s2 != Status::Ok ? s2 : Status::Corrupt;
            l2[j] &= ~QCOW_OFLAG_ZERO;
            st = write_l2(off);
            if (st == Status::Ok)
                st = host.flush(*req.image);
            if (st != Status::Ok)
                return say(host, "Failed to zero out the new area: Input/output error", st);
            return Status::Ok;
        }
        if (l2_off == 0) // in place
            return claim ? claim_subcluster(old_length) : Status::Ok;
        const uint64_t words = l2_entry_bytes / 8;
        l2[j * words] = (at - from % cs) | QCOW_OFLAG_COPIED;
        if (words == 2) { // link_l2: the written subclusters allocated, their zero bits cleared
            const uint64_t scs = cs / QCOW2_SUBCLUSTERS;
            l2[j * 2 + 1] = qcow2_sc_written(l2[j * 2 + 1], (from % cs) / scs, (from % cs + len - 1) / scs);
        }
        st = write_l2(l2_off);
        if (st == Status::Ok)
            st = host.flush(*req.image);
        if (st == Status::Ok && head_kind == HeadAlloc::Copy) // the old cluster loses this reference (no discard)
            st = free_entry(head_copy_entry);
        if (st != Status::Ok)
            return say(host, "Failed to zero out the new area: Input/output error", st);
        return Status::Ok;
    }
    // write_head: what head_to_allocate found (Copy takes head_copy_entry's bytes and drops its
    // reference; ZeroInPlace drops the entry's zero flag).
    HeadAlloc head_kind = HeadAlloc::None;

    // The L2 entry (and bitmap word, extended L2 entries) mapping guest offset `guest`: 0 when unmapped.
    Status head_entry(uint64_t guest, uint64_t* e, uint64_t* bm) {
        uint64_t l2_off = 0;
        if (const Status st = load_table_of(guest, &l2_off); st != Status::Ok)
            return st;
        const uint64_t words = l2_entry_bytes / 8, j = (guest % (cs * l2_entries)) / cs;
        *e = l2_off == 0 ? 0 : l2[j * words];
        *bm = l2_off == 0 || words == 1 ? 0 : l2[j * 2 + 1];
        return Status::Ok;
    }
    // The L2 table mapping guest offset `guest`, read into l2: *l2_off is its offset, 0 when the L1
    // entry names none or `guest` lies past the L1 table.
    Status load_table_of(uint64_t guest, uint64_t* l2_off) {
        *l2_off = 0;
        const uint64_t i = guest / (cs * l2_entries);
        if (i >= q.header().l1_size)
            return Status::Ok;
        uint64_t l1e = 0;
        if (const Status st = q.read_table(q.header().l1_table_offset + i * 8, &l1e, 1); st != Status::Ok)
            return st;
        const uint64_t off = l1e & QCOW2_L1E_OFFSET_MASK;
        if (off == 0)
            return Status::Ok;
        if (!l2_offset_ok(off))
            return Status::Corrupt;
        if (const Status st = read_l2(off); st != Status::Ok)
            return st;
        *l2_off = off;
        return Status::Ok;
    }
    // Whether the data cluster at `host_off` has one reference: OFLAG_COPIED must mean that before
    // it is written in place (nothing else may change).
    Status sole_reference(uint64_t host_off, bool* sole) {
        if (data_file) { // clusters of an external data file have no refcounts: each is its entry's own
            *sole = true;
            return Status::Ok;
        }
        uint64_t rc = 0;
        if (const Status st = q.get_refcount(host_off / cs, &rc); st != Status::Ok)
            return st;
        *sole = rc == 1;
        return Status::Ok;
    }

    // Extended L2 entries: what zeroing an overlay from an old size that is not cluster-aligned asks
    // of its last cluster (qcow2_co_truncate: zero bits from the next subcluster boundary on, then
    // explicit zeros up to it through the write path). *ok: this edit can do it. *at: where those
    // explicit zeros go (0: none, the old size is subcluster-aligned); *claim: the subcluster they
    // land in reads as zeros (ZeroAlloc), so the write zeroes all of it in place and allocates it
    // (calculate_l2_meta's keep_old copy-on-write, link_l2's bits). An unallocated cluster or
    // subcluster: the write path allocates (*alloc: Backing or Zero, the head's bytes). A compressed
    // cluster or one shared with a snapshot (no OFLAG_COPIED): a new cluster (*alloc = Copy) holding
    // the old one's bytes over calculate_l2_meta's copy-on-write bounds (head_cow), as the guest
    // reads them, the subclusters that show the backing file included (head_cow_backing: their
    // bytes asked for). *enotsup: qcow2_subcluster_zeroize would set zero bits in a compressed
    // cluster, which zero_l2_subclusters refuses (-ENOTSUP: qemu-img fails, L1 already grown).
    Status head_for_zeros_ext(uint64_t old_length, uint64_t new_size, bool* ok, uint64_t* at, bool* claim,
                              HeadAlloc* alloc, bool* enotsup) {
        *ok = false;
        *at = 0;
        *claim = false;
        *alloc = HeadAlloc::None;
        *enotsup = false;
        const uint64_t span = cs * l2_entries, scs = cs / QCOW2_SUBCLUSTERS;
        const uint64_t j = (old_length % span) / cs;
        const bool aligned = old_length % scs == 0;
        const uint64_t zero_start = (old_length + scs - 1) / scs * scs, cluster = old_length / cs * cs;
        const bool zeroed_here = new_size > zero_start && zero_start % cs != 0; // zero bits in this cluster first
        const uint64_t head_end = zero_start < new_size ? zero_start : new_size;
        if (old_length / span >= q.header().l1_size)
            return Status::Ok;
        uint64_t l2_off = 0;
        if (const Status st = load_table_of(old_length, &l2_off); st != Status::Ok)
            return st;
        const uint64_t sc = (old_length % cs) / scs;
        // What the subcluster's copy-on-write head reads: the backing chain's bytes where it shows
        // through (zeros past its end, so none needed there), else zeros.
        const HeadAlloc shows = backing_reach > old_length / scs * scs ? HeadAlloc::Backing : HeadAlloc::Zero;
        if (l2_off == 0) {
            *ok = true; // zero bits in a new table; an unaligned size: a new cluster for the head
            if (!aligned)
                *alloc = shows;
            return Status::Ok;
        }
        const uint64_t e = l2[j * 2], bm = l2[j * 2 + 1];
        if ((e & QCOW_OFLAG_COMPRESSED) && zeroed_here) {
            *ok = true;
            *enotsup = true;
            return Status::Ok;
        }
        if (aligned) {
            *ok = true;
            return Status::Ok;
        }
        if (e & QCOW_OFLAG_COMPRESSED) {
            if (bm != 0)
                return say(host, "Invalid subcluster bitmap in the compressed last cluster before the old size",
                           Status::Corrupt);
            head_compressed = e;
            return head_copy(e, cluster, bm, old_length, head_end, ok, alloc);
        }
        if ((e & QCOW2_L2E_OFFSET_MASK) == 0) {
            // Nothing allocated (calculate_l2_meta's UNALLOCATED_PLAIN / ZERO_PLAIN): a new cluster,
            // written from the subcluster's start.
            const Qcow2Sc t = qcow2_sc_type(false, false, bm, sc);
            if (t == Qcow2Sc::Invalid)
                return say(host, "Invalid subcluster bitmap in the last cluster before the old size", Status::Corrupt);
            *ok = true;
            *alloc = t == Qcow2Sc::ZeroPlain ? HeadAlloc::Zero : shows;
            return Status::Ok;
        }
        if (!(e & QCOW_OFLAG_COPIED) && q.data_cluster_in_file(e & QCOW2_L2E_OFFSET_MASK)) {
            // Shared: the copy-on-write reads the bitmap as qcow2_subcluster_zeroize left it.
            const uint64_t zbm = zeroed_here ? qcow2_sc_zeroed(bm, (zero_start - cluster) / scs,
                                                               (head_end_of(new_size, cluster) + scs - 1) / scs - 1)
                                             : bm;
            return head_copy(e, cluster, zbm, old_length, head_end, ok, alloc);
        }
        const uint64_t host_off = head_in_place(e);
        if (host_off == 0)
            return Status::Ok;
        bool sole = false;
        if (const Status st = sole_reference(host_off, &sole); st != Status::Ok)
            return st;
        const Qcow2Sc t = qcow2_sc_type(false, true, bm, sc);
        if (!sole || (t != Qcow2Sc::Normal && t != Qcow2Sc::ZeroAlloc && t != Qcow2Sc::UnallocAlloc))
            return Status::Ok;
        *ok = true;
        *claim = t != Qcow2Sc::Normal;
        *at = host_off + (*claim ? sc * scs : old_length % cs);
        if (t == Qcow2Sc::UnallocAlloc) // in place, its head copied from the backing chain
            *alloc = shows;
        return Status::Ok;
    }
    // zero_l2_subclusters' end inside the cluster at `cluster` for a zeroize up to `new_size`.
    uint64_t head_end_of(uint64_t new_size, uint64_t cluster) const {
        return new_size - cluster < cs ? new_size - cluster : cs;
    }
    // Extended L2 entries, a compressed or shared last cluster (bitmap `bm`, as the copy-on-write
    // reads it): the write of [old_length, head_end) into a new cluster, over calculate_l2_meta's
    // bounds (head_cow, cluster-relative); the backing file's bytes asked for when a subcluster in
    // them shows it.
    Status head_copy(uint64_t e, uint64_t cluster, uint64_t bm, uint64_t old_length, uint64_t head_end, bool* ok,
                     HeadAlloc* alloc) {
        const uint32_t scb = q.header().cluster_bits - 5;
        if (!qcow2_cow_bounds((e & QCOW_OFLAG_COMPRESSED) != 0, true, bm, old_length - cluster, head_end - old_length,
                              false, scb, cs, &head_cow))
            return say(host, "Invalid subcluster bitmap in the last cluster before the old size", Status::Corrupt);
        head_copy_entry = e;
        head_bm = bm;
        head_cow_backing = view_shows_backing(e, bm, cluster, head_cow.from, head_cow.to);
        *ok = true;
        *alloc = HeadAlloc::Copy;
        return Status::Ok;
    }
    Qcow2Cow head_cow{0, 0}; // head_copy's bounds
    uint64_t head_bm = 0;    // head_copy's bitmap (the subclusters' kinds in the copy)
    bool head_cow_backing = false;

    // After the explicit zeros of a claimed subcluster: its allocation bit set, its zero bit cleared.
    Status claim_subcluster(uint64_t guest) {
        const uint64_t span = cs * l2_entries;
        uint64_t l2_off = 0;
        if (const Status st = load_table_of(guest, &l2_off); st != Status::Ok)
            return st;
        if (l2_off == 0)
            return Status::Corrupt;
        const uint64_t j = (guest % span) / cs, sc = (guest % cs) / (cs / QCOW2_SUBCLUSTERS);
        l2[j * 2 + 1] = qcow2_sc_written(l2[j * 2 + 1], sc, sc);
        Status st = write_l2(l2_off);
        if (st == Status::Ok)
            st = host.flush(*req.image);
        return st;
    }

    // Frees what the entries [from, to) of `table` hold (discarding clusters that reach 0).
    Status free_entries(const uint64_t* table, uint64_t from, uint64_t to) {
        if (data_file)
            return Status::Ok; // data clusters are not refcounted; the data file is truncated
        const uint64_t words = l2_entry_bytes / 8;
        for (uint64_t j = from; j < to; ++j) {
            uint64_t off = 0, len = 0;
            entry_clusters(table[j * words], &off, &len);
            if (len != 0)
                if (const Status st = free_and_discard(off, len); st != Status::Ok)
                    return st;
        }
        return Status::Ok;
    }

    bool any_set(uint64_t from, uint64_t to) const {
        const uint64_t words = l2_entry_bytes / 8;
        for (uint64_t k = from * words; k < to * words; ++k)
            if (l2[k] != 0)
                return true;
        return false;
    }

    void clear(uint64_t from, uint64_t to) {
        const uint64_t words = l2_entry_bytes / 8;
        for (uint64_t k = from * words; k < to * words; ++k)
            l2[k] = 0;
    }

    // qemu's shrink: qcow2_cluster_discard(ROUND_UP(new, cs), old - that, ALWAYS, full), which goes
    // through get_cluster_table (an L2 table is allocated for an empty L1 entry, copied for a
    // shared one), then qcow2_shrink_l1_table, qcow2_shrink_reftable and the tail truncation. The
    // result is qemu's; the order is crash-safe: the size switch first, then the L1 tail cleared on
    // disk, then per table: cleared entries durable before refcounts drop. Tables qemu allocates
    // only to free them again are allocated (so later allocations land where qemu's do) but never
    // written: qemu discards them.
    Status shrink(uint64_t old_length, uint64_t new_size) {
        const Qcow2Header& h = q.header();
        const uint64_t l1_size = h.l1_size;
        const uint64_t l1_offset = h.l1_table_offset;
        const uint64_t new_l1 = size_to_l1(new_size);
        const uint64_t discard_start = (new_size + cs - 1) / cs * cs;
        const uint64_t span = cs * l2_entries;
        uint64_t end_l1 = size_to_l1(old_length);
        if (end_l1 > l1_size)
            end_l1 = l1_size;
        uint64_t first_l1 = discard_start / span;
        if (discard_start >= old_length)
            first_l1 = end_l1; // nothing to discard
        auto* l1 = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(l1_size * 8 + 8), 64));
        auto* old = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(cs), 64));
        if (l1 == nullptr || old == nullptr)
            return Status::NoMemory;
        if (const Status st = q.read_table(l1_offset, l1, l1_size); st != Status::Ok)
            return st;
        const uint64_t check_from = first_l1 < new_l1 ? first_l1 : new_l1;
        if (const Status st = shrink_precheck(check_from, end_l1, l1_size, l1, discard_start, old_length);
            st != Status::Ok)
            return st;

        // The switch: the image is the shorter one from here on.
        if (const Status st = write_size(new_size); st != Status::Ok)
            return say(host, "Failed to update the image size: Input/output error", st);

        // The L1 tail goes first (qemu zeroes it in qcow2_shrink_l1_table): from now on nothing on
        // disk names the tables past the new end, so freeing them and their clusters is safe.
        if (new_l1 < l1_size) {
            const uint64_t n = l1_size - new_l1;
            auto* zeros = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(n * 8), 64));
            if (zeros == nullptr)
                return Status::NoMemory;
            for (uint64_t k = 0; k < n; ++k)
                zeros[k] = 0;
            Status st = q.write_table(l1_offset + new_l1 * 8, zeros, n);
            q.allocator().deallocate(zeros, static_cast<size_t>(n * 8));
            if (st == Status::Ok)
                st = host.flush(*req.image);
            if (st != Status::Ok)
                return say(host, "Failed to reduce the number of L2 tables: Input/output error", st);
        }

        uint64_t file_end = q.file_length(); // the length qemu's file reaches (tables it writes)
        for (uint64_t i = first_l1; i < end_l1; ++i) {
            const uint64_t l1e = l1[i];
            const uint64_t old_off = l1e & QCOW2_L1E_OFFSET_MASK;
            const bool retained = i < new_l1;
            uint64_t from = 0, to = 0;
            range_in_table(i, discard_start, old_length, &from, &to);
            if (old_off != 0) {
                if (const Status st = read_l2(old_off); st != Status::Ok)
                    return st;
            } else {
                clear(0, l2_entries);
            }
            for (uint64_t k = 0; k < cs / 8; ++k)
                old[k] = l2[k];
            Status st = Status::Ok;
            if (!(l1e & QCOW_OFLAG_COPIED)) {
                // get_cluster_table's l2_allocate: a new table (a copy), the old one freed.
                uint64_t new_off = 0;
                st = q.alloc_clusters(cs, &new_off);
                if (st != Status::Ok)
                    return say(host, "Failed to discard cropped clusters: Input/output error", st);
                if (new_off + cs > file_end)
                    file_end = new_off + cs;
                l1[i] = new_off | QCOW_OFLAG_COPIED;
                if (retained) {
                    clear(from, to);
                    st = q.sync();
                    if (st == Status::Ok)
                        st = write_l2(new_off);
                    if (st == Status::Ok)
                        st = host.flush(*req.image);
                    if (st == Status::Ok)
                        st = q.write_table(l1_offset + i * 8, &l1[i], 1);
                    if (st == Status::Ok)
                        st = host.flush(*req.image);
                }
                if (st == Status::Ok && old_off != 0)
                    st = q.free_clusters(old_off, cs); // QCOW2_DISCARD_OTHER: not discarded
            } else if (retained && any_set(from, to)) {
                clear(from, to);
                st = write_l2(old_off);
                if (st == Status::Ok)
                    st = host.flush(*req.image);
            }
            if (st == Status::Ok)
                st = free_entries(old, from, to);
            if (st != Status::Ok)
                return say(host, "Failed to discard cropped clusters: Input/output error", st);
        }
        if (const Status st = q.sync(); st != Status::Ok)
            return st;

        // qcow2_shrink_l1_table's frees, last table first.
        for (uint64_t i = l1_size; i-- > new_l1;) {
            const uint64_t off = l1[i] & QCOW2_L1E_OFFSET_MASK;
            if (off != 0)
                if (const Status st = free_and_discard(off, cs); st != Status::Ok)
                    return say(host, "Failed to reduce the number of L2 tables: Input/output error", st);
        }
        if (const Status st = q.sync(); st != Status::Ok)
            return st;
        q.allocator().deallocate(old, static_cast<size_t>(cs));
        q.allocator().deallocate(l1, static_cast<size_t>(l1_size * 8 + 8));

        flush_discards();
        if (const Status st = shrink_reftable(); st != Status::Ok)
            return say(host, "Failed to discard unused refblocks: Input/output error", st);

        // Truncate after the last used cluster (qcow2_get_last_cluster) when that is shorter than
        // the file qemu's writes made.
        if (q.file_length() > file_end)
            file_end = q.file_length();
        const uint64_t clusters = file_end / cs + (file_end % cs != 0 ? 1 : 0);
        uint64_t last = UINT64_MAX;
        for (uint64_t i = clusters; i-- > 0;) {
            uint64_t rc = 0;
            if (const Status st = q.get_refcount(i, &rc); st != Status::Ok)
                return st;
            if (rc > 0) {
                last = i;
                break;
            }
        }
        if (last == UINT64_MAX)
            return say(host, "Failed to find the last cluster: Input/output error", Status::Corrupt);
        if ((last + 1) * cs < file_end || q.file_length() > (last + 1) * cs) {
            if (host.set_length(*req.image, (last + 1) * cs, guest::Prealloc::Off) != Status::Ok) {
                // An array, not __builtin_strlen: clang's -ffreestanding leaves that a call to strlen,
                // which no guest module links.
                static constexpr char w[] = "\x01warning: Failed to truncate the tail of the image: \n";
                host.err(w, sizeof w - 1);
            }
        }
        return Status::Ok;
    }

    // qcow2_shrink_reftable: refcount blocks that count nothing but (maybe) themselves leave the
    // table (one write of the whole table), then their own refcount is cleared and they are discarded.
    Status shrink_reftable() {
        const Qcow2Header& h = q.header();
        const uint64_t rt_entries = uint64_t{h.refcount_table_clusters} * cs / 8;
        auto* rt = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(rt_entries * 8), 64));
        auto* tmp = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(rt_entries * 8), 64));
        auto* block = static_cast<uint8_t*>(q.allocator().allocate(static_cast<size_t>(cs), 64));
        if (rt == nullptr || tmp == nullptr || block == nullptr)
            return Status::NoMemory;
        if (const Status st = q.flush_refcounts(); st != Status::Ok)
            return st;
        if (const Status st = q.read_table(h.refcount_table_offset, rt, rt_entries); st != Status::Ok)
            return st;
        const uint32_t order = h.refcount_order;
        const uint64_t per_block = cs * 8 >> order;
        bool any = false;
        for (uint64_t i = 0; i < rt_entries; ++i) {
            const uint64_t off = rt[i] & QCOW2_REFT_OFFSET_MASK;
            tmp[i] = rt[i];
            if (off == 0)
                continue;
            if (!q.cluster_in_file(off))
                return Status::Corrupt;
            if (const Status st = q.read(off, block, static_cast<size_t>(cs)); st != Status::Ok)
                return st;
            // The block's own refcount does not count when it describes itself.
            const uint64_t self = off / cs;
            const bool describes_self = self / per_block == i;
            const uint64_t self_index = self % per_block;
            bool unused = true;
            for (uint64_t k = 0; k < per_block && unused; ++k) {
                if (describes_self && k == self_index)
                    continue;
                const uint64_t bit = k << order;
                uint64_t v = 0;
                const uint32_t width = 1u << order;
                if (width >= 8) {
                    for (uint32_t b = 0; b < width / 8; ++b)
                        v = (v << 8) | block[bit / 8 + b];
                } else {
                    v = (block[bit / 8] >> (bit % 8)) & ((1u << width) - 1);
                }
                if (v != 0)
                    unused = false;
            }
            if (unused) {
                tmp[i] = 0;
                any = true;
            }
        }
        Status st = Status::Ok;
        if (any) {
            st = q.write_table(h.refcount_table_offset, tmp, rt_entries);
            if (st == Status::Ok)
                st = host.flush(*req.image);
        }
        q.allocator().deallocate(block, static_cast<size_t>(cs));
        if (st != Status::Ok || !any) {
            q.allocator().deallocate(tmp, static_cast<size_t>(rt_entries * 8));
            q.allocator().deallocate(rt, static_cast<size_t>(rt_entries * 8));
            return st;
        }
        // Reopen the refcount layer on the new table, then clear the dropped blocks' own refcounts.
        q.close();
        st = q.open(*req.image, q.file_length(), *req.allocator, &host);
        for (uint64_t i = 0; st == Status::Ok && i < rt_entries; ++i) {
            if (rt[i] == 0 || tmp[i] != 0)
                continue;
            const uint64_t off = rt[i] & QCOW2_REFT_OFFSET_MASK;
            uint64_t rc = 0;
            st = q.get_refcount(off / cs, &rc);
            if (st == Status::Ok && rc != 0)
                st = q.free_clusters(off, cs);
            if (st == Status::Ok)
                (void)q.device().discard(off, cs);
        }
        if (st == Status::Ok)
            st = q.sync();
        q.allocator().deallocate(tmp, static_cast<size_t>(rt_entries * 8));
        q.allocator().deallocate(rt, static_cast<size_t>(rt_entries * 8));
        return st;
    }

    // get_cluster_table for L1 index `i`: the L2 table, allocated (zeros) for an empty entry or
    // copied for a shared one (l2_allocate: new table written and flushed, then the L1 entry,
    // then the old table freed); loaded into `l2`. *off is its offset.
    Status table_for(uint64_t i, uint64_t* off) {
        const uint64_t l1_at = q.header().l1_table_offset + i * 8;
        uint64_t l1e = 0;
        if (const Status st = q.read_table(l1_at, &l1e, 1); st != Status::Ok)
            return st;
        const uint64_t old_off = l1e & QCOW2_L1E_OFFSET_MASK;
        if (old_off != 0) {
            if (!l2_offset_ok(old_off)) {
                ReasonText r;
                r.add("L2 table offset ").hex(old_off).add(" invalid or past the end of the image file");
                return q.refuse(Status::Corrupt, r.data(), r.size());
            }
            if (const Status st = read_l2(old_off); st != Status::Ok)
                return st;
        } else {
            clear(0, l2_entries);
        }
        if (l1e & QCOW_OFLAG_COPIED) {
            *off = old_off;
            return Status::Ok;
        }
        uint64_t new_off = 0;
        Status st = q.alloc_clusters(cs, &new_off);
        if (st == Status::Ok)
            st = q.sync();
        if (st == Status::Ok)
            st = write_l2(new_off);
        if (st == Status::Ok)
            st = host.flush(*req.image);
        const uint64_t e = new_off | QCOW_OFLAG_COPIED;
        if (st == Status::Ok)
            st = q.write_table(l1_at, &e, 1);
        if (st == Status::Ok)
            st = host.flush(*req.image);
        if (st == Status::Ok && old_off != 0)
            st = q.free_clusters(old_off, cs);
        *off = new_off;
        return st;
    }

    // preallocate_co(start, end, metadata): data clusters allocated and mapped (not written) over
    // the new area, run by run as qcow2_alloc_host_offset does (a table's clusters continue the
    // previous run where they can), the file extended over them (as a hole). Allocation happens
    // in qemu's order; the tables are written in batches (refcounts durable and the file long
    // enough first, then the tables, then the L1 entries naming new ones), so a kill leaves at
    // worst leaked clusters and the cost is a few flushes per batch, not per table.
    struct Pending {
        uint64_t l1_index = 0;
        uint64_t l2_off = 0;
        bool fresh = false; // a new table (the L1 entry was empty): its L1 entry is written at commit
        uint64_t* data = nullptr;
    };
    // Tables held before a commit: METADATA_BATCH_BYTES of them (memory bound, not a limit on input).
    static constexpr uint64_t METADATA_BATCH_BYTES = 4u << 20;

    Status commit_batch(Pending* batch, uint64_t& count, uint64_t host_end, uint64_t& extended) {
        if (const Status st = q.sync(); st != Status::Ok)
            return st;
        if (host_end > extended && host_end > q.file_length()) {
            if (const Status st = host.set_length(*req.image, host_end, guest::Prealloc::Off); st != Status::Ok)
                return say(host, "Could not resize file: Input/output error", st);
            extended = host_end;
        }
        Status st = Status::Ok;
        for (uint64_t k = 0; st == Status::Ok && k < count; ++k)
            st = q.write_table(batch[k].l2_off, batch[k].data, cs / 8);
        if (st == Status::Ok)
            st = host.flush(*req.image);
        bool any_fresh = false;
        for (uint64_t k = 0; st == Status::Ok && k < count; ++k) {
            if (!batch[k].fresh)
                continue;
            const uint64_t e = batch[k].l2_off | QCOW_OFLAG_COPIED;
            st = q.write_table(q.header().l1_table_offset + batch[k].l1_index * 8, &e, 1);
            any_fresh = true;
        }
        if (st == Status::Ok && any_fresh)
            st = host.flush(*req.image);
        for (uint64_t k = 0; k < count; ++k)
            q.allocator().deallocate(batch[k].data, static_cast<size_t>(cs));
        count = 0;
        if (st != Status::Ok)
            return say(host, "Mapping clusters failed: Input/output error", st);
        return Status::Ok;
    }

    Status prealloc_metadata(uint64_t start, uint64_t end) {
        const uint64_t span = cs * l2_entries;
        const uint64_t words = l2_entry_bytes / 8;
        const uint64_t cap = METADATA_BATCH_BYTES / cs > 0 ? METADATA_BATCH_BYTES / cs : 1;
        auto* batch = static_cast<Pending*>(q.allocator().allocate(static_cast<size_t>(cap * sizeof(Pending)), 64));
        if (batch == nullptr)
            return Status::NoMemory;
        uint64_t count = 0, host_end = 0, extended = 0;
        uint64_t offset = start;
        while (offset < end) {
            bool have_host = false;
            uint64_t host_at = 0;
            while (offset < end) {
                const uint64_t i = offset / span;
                Pending* p = count > 0 && batch[count - 1].l1_index == i ? &batch[count - 1] : nullptr;
                if (p == nullptr) {
                    if (count == cap || meta_head_move)
                        if (const Status st = meta_commit(batch, count, host_end, extended); st != Status::Ok)
                            return st;
                    uint64_t l1e = 0;
                    if (const Status st = q.read_table(q.header().l1_table_offset + i * 8, &l1e, 1); st != Status::Ok)
                        return st;
                    const uint64_t old_off = l1e & QCOW2_L1E_OFFSET_MASK;
                    uint64_t l2_off = 0;
                    bool fresh = false;
                    if (old_off != 0 && !(l1e & QCOW_OFLAG_COPIED)) {
                        // A table shared with a snapshot: copied at once, as qemu's l2_allocate.
                        if (const Status st = table_for(i, &l2_off); st != Status::Ok)
                            return st;
                    } else if (old_off != 0) {
                        if (!l2_offset_ok(old_off))
                            return Status::Corrupt;
                        if (const Status st = read_l2(old_off); st != Status::Ok)
                            return st;
                        l2_off = old_off;
                    } else {
                        // get_cluster_table allocates the table before the data (qemu's order).
                        if (const Status st = q.alloc_clusters(cs, &l2_off); st != Status::Ok)
                            return say(host, "Allocating clusters failed: File too large", st);
                        clear(0, l2_entries);
                        fresh = true;
                    }
                    p = &batch[count++];
                    p->l1_index = i;
                    p->l2_off = l2_off;
                    p->fresh = fresh;
                    p->data = static_cast<uint64_t*>(q.allocator().allocate(static_cast<size_t>(cs), 64));
                    if (p->data == nullptr)
                        return Status::NoMemory;
                    for (uint64_t k = 0; k < cs / 8; ++k)
                        p->data[k] = l2[k];
                    if (l2_off + cs > host_end)
                        host_end = l2_off + cs;
                }
                const uint64_t j = (offset % span) / cs;
                if (offset % cs != 0) {
                    // An unaligned old size: its cluster, when qemu's handle_copied keeps it (a data
                    // cluster of its own, zero-flagged or not), stays where it is and the run
                    // continues after it (then handle_alloc contiguous to it); its copy-on-write
                    // (extended L2 entries: a subcluster that is not Normal, from its start) is
                    // written in place. Anything else moves with the run (handle_alloc, below).
                    const uint64_t e = p->data[j * words];
                    const uint64_t head = meta_head_kept(e);
                    if (head != 0) {
                        if (const Status st = meta_head_cow(head, p->data[j * words + words - 1], offset, end);
                            st != Status::Ok)
                            return st;
                        have_host = true;
                        host_at = head + cs;
                        offset = (offset / cs + 1) * cs;
                        continue;
                    }
                    meta_head_old = e;
                    meta_head_bm = words == 2 ? p->data[j * 2 + 1] : 0;
                    meta_head_move = true;
                }
                const uint64_t clusters = (end - offset / cs * cs + cs - 1) / cs;
                const uint64_t n = clusters < l2_entries - j ? clusters : l2_entries - j;
                for (uint64_t k = j; k < j + n; ++k) {
                    if (k == j && offset % cs != 0)
                        continue; // the head, moving with the run (meta_head_move)
                    uint64_t co = 0, len = 0;
                    entry_clusters(p->data[k * words], &co, &len);
                    if (len != 0) // past the old size: only a hostile or foreign image maps clusters there
                        return say(host, "instar cannot preallocate over clusters that are already allocated yet",
                                   Status::Unsupported);
                }
                uint64_t at = 0, got = 0;
                if (data_file) {
                    // An external data file: a cluster lies at its guest offset there (handle_alloc);
                    // nothing is counted in the image.
                    at = offset / cs * cs;
                    got = n;
                } else if (!have_host) {
                    if (const Status st = q.alloc_clusters(n * cs, &at); st != Status::Ok)
                        return say(host, "Allocating clusters failed: File too large", st);
                    got = n;
                } else {
                    at = host_at;
                    if (const Status st = q.alloc_clusters_at(at, n, &got); st != Status::Ok)
                        return say(host, "Allocating clusters failed: File too large", st);
                    if (got == 0)
                        break; // the run cannot continue here: a new one starts
                }
                if (meta_head_move && offset % cs != 0 && got > 0)
                    if (const Status st = meta_head_write(at, offset, end); st != Status::Ok)
                        return st;
                if (tail_backing != nullptr && tail_cluster >= offset / cs * cs &&
                    tail_cluster < offset / cs * cs + got * cs && !(offset % cs != 0 && tail_cluster == offset / cs * cs))
                    if (const Status st = cow_write(at + (tail_cluster - offset / cs * cs), 0, 0, tail_cluster,
                                                         end % cs, tail_cow_to, tail_backing);
                        st != Status::Ok)
                        return st;
                for (uint64_t k = 0; k < got; ++k)
                    p->data[(j + k) * words] = (at + k * cs) | QCOW_OFLAG_COPIED;
                have_host = true;
                host_at = at + got * cs;
                if (host_at > host_end && !data_file)
                    host_end = host_at;
                offset = (offset / cs + got) * cs;
            }
            // qemu extends the file to the end of the last run only (a data file: the caller sets
            // its length; the image holds only the tables).
            last_run_end_ = data_file ? 0 : host_at;
            // (qcow2_alloc_host_offset's bytes end at the request's end rounded up to a subcluster:
            // with extended L2 entries the file ends there, inside the last cluster.)
            const uint64_t scs = cs / (l2_entry_bytes == 16 ? QCOW2_SUBCLUSTERS : 1);
            if (!data_file && offset >= end && end % cs != 0 && host_at >= cs)
                last_run_end_ = host_at - cs + (end % cs + scs - 1) / scs * scs;
        }
        if (const Status st = meta_commit(batch, count, last_run_end_, extended); st != Status::Ok)
            return st;
        q.allocator().deallocate(batch, static_cast<size_t>(cap * sizeof(Pending)));
        return q.sync();
    }
    uint64_t last_run_end_ = 0;
    // preallocate_co's head cluster when it moves: the old entry, freed once the new one is linked
    // (qcow2_alloc_cluster_link_l2), which here means once the batch holding it is committed; that
    // batch is committed before the next table is taken, so the freed cluster is there for the
    // next allocations to take first fit, as in qemu.
    bool meta_head_move = false;
    uint64_t meta_head_old = 0, meta_head_bm = 0;
    Status meta_commit(Pending* batch, uint64_t& count, uint64_t host_end, uint64_t& extended) {
        if (count > 0)
            if (const Status st = commit_batch(batch, count, host_end, extended); st != Status::Ok)
                return st;
        if (!meta_head_move)
            return Status::Ok;
        meta_head_move = false;
        return free_entry(meta_head_old);
    }
    // The cluster handle_copied keeps for the head of an unaligned old size: a data cluster of the
    // image's own (OFLAG_COPIED; with standard L2 entries zero-flagged too), or 0.
    uint64_t meta_head_kept(uint64_t e) const {
        if (l2_entry_bytes == 8 && (e & QCOW_OFLAG_ZERO) && (e & QCOW_OFLAG_COPIED) && !(e & QCOW_OFLAG_COMPRESSED)) {
            const uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            return off != 0 && (data_file || q.data_cluster_in_file(off)) ? off : 0;
        }
        return head_in_place(e);
    }
    // A kept head with extended L2 entries (handle_copied, calculate_l2_meta with keep_old): the
    // subclusters the request [old_size, new_size) starts and ends inside, when not Normal, are
    // completed as the guest reads them (zeros or the backing file's bytes), in place; the bitmap
    // is left alone (prealloc).
    Status meta_head_cow(uint64_t host_cluster, uint64_t bm, uint64_t old_size, uint64_t new_size) {
        if (l2_entry_bytes != 16)
            return Status::Ok;
        const uint64_t cluster = old_size / cs * cs, in = old_size % cs;
        const uint64_t out = new_size - cluster < cs ? new_size - cluster : cs;
        Qcow2Cow cow{0, 0};
        if (!qcow2_cow_bounds(false, true, bm, in, out - in, true, q.header().cluster_bits - 5, cs, &cow))
            return say(host, "Invalid subcluster bitmap in the last cluster before the old size", Status::Corrupt);
        const uint64_t e = (host_cluster & QCOW2_L2E_OFFSET_MASK) | QCOW_OFLAG_COPIED;
        if (cow.from < in)
            if (const Status st = cow_write(host_cluster, e, bm, cluster, cow.from, in, head_backing); st != Status::Ok)
                return st;
        if (out < cow.to)
            return cow_write(host_cluster, e, bm, cluster, out, cow.to, head_backing);
        return Status::Ok;
    }
    // A moved head: its new cluster at `at` gets the copy-on-write regions around the request
    // [old_size, new_size) of the old one as the guest reads them (calculate_l2_meta without
    // keep_old: the whole cluster with standard L2 entries; with extended ones from the first
    // allocated subcluster or the request's, to the last allocated one or the request's end).
    Status meta_head_write(uint64_t at, uint64_t old_size, uint64_t new_size) {
        const uint64_t cluster = old_size / cs * cs, in = old_size % cs;
        const uint64_t out = new_size - cluster < cs ? new_size - cluster : cs;
        Qcow2Cow cow{0, cs};
        if (l2_entry_bytes == 16 && !qcow2_cow_bounds((meta_head_old & QCOW_OFLAG_COMPRESSED) != 0,
                                                      (meta_head_old & QCOW2_L2E_OFFSET_MASK) != 0, meta_head_bm, in,
                                                      out - in, false, q.header().cluster_bits - 5, cs, &cow))
            return say(host, "Invalid subcluster bitmap in the last cluster before the old size", Status::Corrupt);
        if (cow.from < in)
            if (const Status st = cow_write(at, meta_head_old, meta_head_bm, cluster, cow.from, in, head_backing);
                st != Status::Ok)
                return st;
        if (out < cow.to)
            return cow_write(at, meta_head_old, meta_head_bm, cluster, out, cow.to, head_backing);
        return Status::Ok;
    }
    // Writes the view of entry `e` over [from, to) of the cluster at guest `cluster` (view_bytes,
    // with `backing`) to host `at` + from, encrypted as qcow2_co_encrypt does, and flushes it;
    // `failure` is the message for a failed write.
    Status cow_write(uint64_t at, uint64_t e, uint64_t bm, uint64_t cluster, uint64_t from, uint64_t to,
                     const uint8_t* backing, const char* failure = "Failed to preallocate the last cluster: "
                                                                   "Input/output error") {
        auto* buf = static_cast<uint8_t*>(q.allocator().allocate(static_cast<size_t>(to - from), 64));
        if (buf == nullptr)
            return Status::NoMemory;
        Status st = view_bytes(e, bm, cluster, from, to, buf, backing);
        if (st == Status::Ok && cipher != nullptr)
            cipher->encrypt((crypt_physical ? at + from : cluster + from) / SECTOR, buf, static_cast<size_t>(to - from));
        guest::BlockDevice& dev = data_file ? *req.files[0] : *req.image;
        if (st == Status::Ok)
            st = data_file ? dev.write(at + from, buf, static_cast<size_t>(to - from))
                           : q.write(at + from, buf, static_cast<size_t>(to - from));
        q.allocator().deallocate(buf, static_cast<size_t>(to - from));
        if (st == Status::Ok)
            st = host.flush(dev);
        if (st != Status::Ok)
            return say(host, failure, st);
        return Status::Ok;
    }

    // qcow2_co_truncate's falloc/full path: refcount structures for the new data (and its L2
    // tables) placed after the last used cluster (qcow2_refcount_area, exact), the data clusters
    // right after them, the file extended over them with `mode` (the host reserves or writes
    // zeros), then the L2 entries linked table by table (tables allocated first fit).
    Status prealloc_data(uint64_t start, uint64_t end, guest::Prealloc mode, bool all_allocated) {
        const uint64_t span = cs * l2_entries;
        const uint64_t words = l2_entry_bytes / 8;
        // qcow2_get_last_cluster
        const uint64_t file_len = q.file_length();
        uint64_t last = UINT64_MAX;
        for (uint64_t i = file_len / cs + (file_len % cs != 0 ? 1 : 0); i-- > 0;) {
            uint64_t rc = 0;
            if (const Status st = q.get_refcount(i, &rc); st != Status::Ok)
                return st;
            if (rc > 0) {
                last = i;
                break;
            }
        }
        const uint64_t old_file_size =
            last != UINT64_MAX ? (last + 1) * cs : (file_len + cs - 1) / cs * cs;
        const uint64_t first_cluster = start / cs * cs;
        const uint64_t nb_data = ((end + cs - 1) / cs * cs - first_cluster) / cs;
        const uint64_t nb_l2 = (nb_data + l2_entries - 1) / l2_entries + 1;
        // The clusters the new area maps must be free, but for the head cluster of an unaligned old
        // size: qemu maps a new cluster there too, whatever the old one was, its bytes before the old
        // size copied as the guest reads them (the allocation's cow_start, read through the image:
        // inflated, zeros, the backing file's bytes), and the old one is then freed.
        bool head_move = start % cs != 0; // (an unmapped table: an unallocated head, still copied)
        uint64_t head_old = 0; // its entry
        uint64_t head_bm = 0;  // its subcluster bitmap (extended L2 entries), kept by the new entry
        for (uint64_t g = first_cluster; g < end; g += span - g % span) {
            uint64_t l1e = 0;
            const uint64_t i = g / span;
            if (i >= q.header().l1_size)
                break;
            if (const Status st = q.read_table(q.header().l1_table_offset + i * 8, &l1e, 1); st != Status::Ok)
                return st;
            const uint64_t off = l1e & QCOW2_L1E_OFFSET_MASK;
            if (off == 0)
                continue;
            if (!l2_offset_ok(off))
                return Status::Corrupt;
            if (const Status st = read_l2(off); st != Status::Ok)
                return st;
            const uint64_t j0 = (g % span) / cs;
            const uint64_t j1 = end - i * span >= span ? l2_entries : (end - i * span + cs - 1) / cs;
            for (uint64_t j = j0; j < j1; ++j) {
                if (g + (j - j0) * cs == first_cluster && start % cs != 0) {
                    head_old = l2[j * words];
                    head_bm = words == 2 ? l2[j * words + 1] : 0;
                    continue;
                }
                uint64_t co = 0, len = 0;
                entry_clusters(l2[j * words], &co, &len);
                if (len == 0)
                    continue;
                return say(host, "instar cannot preallocate over clusters that are already allocated yet",
                           Status::Unsupported);
            }
        }
        uint64_t alloc_start = 0;
        if (const Status st = q.refcount_area_at(old_file_size, nb_data + nb_l2, true, &alloc_start);
            st != Status::Ok)
            return say(host, "Failed to resize refcount structures: File too large", st);
        uint64_t got = 0;
        if (const Status st = q.alloc_clusters_at(alloc_start, nb_data, &got); st != Status::Ok || got != nb_data)
            return say(host, "Failed to allocate data clusters: Input/output error",
                       st == Status::Ok ? Status::Corrupt : st);
        if (const Status st = q.sync(); st != Status::Ok)
            return st;
        const uint64_t new_file_size = alloc_start + nb_data * cs;
        if (const Status st = host.set_length(*req.image, new_file_size, mode); st != Status::Ok)
            return say(host, "Failed to resize underlying file: Input/output error", st);
        if (head_move) {
            // The head's bytes before the old size, into its new cluster (durable before the entry
            // names it; the old cluster is freed once the entry has moved).
            if (const Status st = cow_write(alloc_start, head_old, head_bm, first_cluster, 0, start - first_cluster,
                                            head_backing, "Failed to update L2 tables: Input/output error");
                st != Status::Ok)
                return st;
        }
        uint64_t host_off = alloc_start;
        uint64_t guest = first_cluster;
        uint64_t left = nb_data;
        while (left > 0) {
            const uint64_t i = guest / span;
            const uint64_t j = (guest % span) / cs;
            const uint64_t n = left < l2_entries - j ? left : l2_entries - j;
            uint64_t l2_off = 0;
            if (const Status st = table_for(i, &l2_off); st != Status::Ok)
                return st;
            if (const Status st = q.sync(); st != Status::Ok)
                return st;
            for (uint64_t k = 0; k < n; ++k) {
                l2[(j + k) * words] = (host_off + k * cs) | QCOW_OFLAG_COPIED;
                // A zero write the file's extension took over (qemu's subclusters_need_allocation):
                // link_l2 runs without its prealloc flag, so every subcluster is allocated.
                if (words == 2 && all_allocated)
                    l2[(j + k) * 2 + 1] = QCOW2_L2_BITMAP_ALL_ALLOC;
            }
            Status st = write_l2(l2_off);
            if (st == Status::Ok)
                st = host.flush(*req.image);
            if (st != Status::Ok)
                return say(host, "Failed to update L2 tables: Input/output error", st);
            if (head_move) { // qcow2_alloc_cluster_link_l2 frees the replaced cluster at once
                if (const Status s2 = free_entry(head_old); s2 != Status::Ok)
                    return s2;
                head_move = false; // the next tables may take its place, as qemu's first fit does
            }
            guest += n * cs;
            host_off += n * cs;
            left -= n;
        }
        return q.sync();
    }

    // bdrv_co_truncate's BDRV_REQ_ZERO_WRITE on a v3 image (qcow2_subcluster_zeroize): every cluster
    // of [start, end) becomes a zero cluster, allocating L2 tables as qemu's get_cluster_table does.
    Status zeroize(uint64_t start, uint64_t end) {
        const uint64_t span = cs * l2_entries;
        const uint64_t words = l2_entry_bytes / 8;
        for (uint64_t pos = start; pos < end;) {
            const uint64_t i = pos / span;
            const uint64_t table_end = (i + 1) * span < end ? (i + 1) * span : end;
            uint64_t l1e = 0;
            if (const Status st = q.read_table(q.header().l1_table_offset + i * 8, &l1e, 1); st != Status::Ok)
                return st;
            uint64_t l2_off = l1e & QCOW2_L1E_OFFSET_MASK;
            bool fresh = false;
            if (l2_off == 0) {
                if (const Status st = q.alloc_clusters(cs, &l2_off); st != Status::Ok)
                    return st;
                for (uint64_t k = 0; k < cs / 8; ++k)
                    l2[k] = 0;
                fresh = true;
            } else if (!(l1e & QCOW_OFLAG_COPIED)) {
                // A table shared with a snapshot: copied first (get_cluster_table's l2_allocate),
                // its copy left in l2 to be marked.
                if (const Status st = table_for(i, &l2_off); st != Status::Ok)
                    return st;
            } else {
                if (!l2_offset_ok(l2_off))
                    return Status::Corrupt;
                uint64_t rc = 0;
                if (const Status st = q.get_refcount(l2_off / cs, &rc); st != Status::Ok)
                    return st;
                if (rc != 1) // OFLAG_COPIED on a table something else names too: written in place, it
                    return say(host, "L2 table marked as not shared (OFLAG_COPIED) has a refcount above 1",
                               Status::Corrupt); // would change a snapshot
                if (const Status st = read_l2(l2_off); st != Status::Ok)
                    return st;
            }
            for (uint64_t g = pos / cs * cs; g < table_end; g += cs) {
                const uint64_t j = (g - i * span) / cs;
                // zero_in_l2_slice without unmapping: a mapped cluster stays mapped. A start inside
                // a cluster (extended L2: subcluster-aligned) is zero_l2_subclusters' from there on.
                // (qcow2_subcluster_zeroize's head: up to the end when it lies in that cluster,
                // rounded up to a subcluster.)
                if (words == 2 && g < pos) {
                    const uint64_t scs = cs / QCOW2_SUBCLUSTERS;
                    const uint64_t head_end = end - g < cs ? end - g : cs;
                    l2[j * 2 + 1] = qcow2_sc_zeroed(l2[j * 2 + 1], (pos - g) / scs, (head_end + scs - 1) / scs - 1);
                }
                else if (words == 2)
                    l2[j * 2 + 1] = QCOW2_L2_BITMAP_ALL_ZEROES; // every subcluster reads as zeros
                else
                    l2[j] |= QCOW_OFLAG_ZERO;
            }
            Status st = Status::Ok;
            if (fresh)
                st = q.sync();
            if (st == Status::Ok)
                st = write_l2(l2_off);
            if (st == Status::Ok)
                st = host.flush(*req.image);
            if (st == Status::Ok && fresh) {
                const uint64_t e = l2_off | QCOW_OFLAG_COPIED;
                st = q.write_table(q.header().l1_table_offset + i * 8, &e, 1);
            }
            if (st != Status::Ok)
                return say(host, "Failed to zero out new clusters: Input/output error", st);
            pos = table_end;
        }
        return q.sync();
    }
};

} // namespace

namespace {

// What the zero write asks of the old last cluster when the old size is not cluster-aligned (run
// by run_resize before anything is written, or after a preallocation that changed that cluster).
struct HeadPlan {
    uint64_t zero_host = 0; // in place: where the cluster's bytes past the old size lie (0: not in place)
    bool claim = false;     // extended L2: those zeros fill a zero subcluster and allocate it
    // Else a copy-on-write write over [from, from + len) (a new cluster, or an unallocated
    // subcluster in place): its head the backing chain's bytes or zeros.
    Resizer::HeadAlloc alloc = Resizer::HeadAlloc::None;
    uint64_t from = 0, len = 0;
};
Status plan_zero_head(Resizer& r, const Qcow2Header& h, uint64_t old_length, uint64_t new_size,
                      guest::Prealloc prealloc, HeadPlan* plan) {
    *plan = HeadPlan{};
    if (old_length % r.cs == 0)
        return Status::Ok;
    if (r.l2_entry_bytes == 16) {
        // Extended L2 entries: zero bits from the next subcluster, explicit zeros before it.
        bool ok = false, enotsup = false;
        if (const Status st = r.head_for_zeros_ext(old_length, new_size, &ok, &plan->zero_host, &plan->claim,
                                                   &plan->alloc, &enotsup);
            st != Status::Ok)
            return st;
        if (!ok || (prealloc != guest::Prealloc::Off && (enotsup || plan->alloc == Resizer::HeadAlloc::Copy)))
            return say(r.host, "instar cannot zero the new area of an overlay with extended L2 entries from an old "
                               "size inside a compressed or shared cluster with preallocation yet",
                       Status::Unsupported);
        if (enotsup) {
            // As v2: the L1 table grown; then zero_l2_subclusters' get_cluster_table (the L2 table
            // copied when a snapshot shares it) before it refuses the compressed cluster.
            if (const Status st = r.grow_l1(r.size_to_l1(new_size)); st != Status::Ok)
                return st;
            uint64_t l2_off = 0;
            if (const Status st = r.table_for(old_length / (r.cs * r.l2_entries), &l2_off); st != Status::Ok)
                return st;
            if (const Status st = r.q.sync(); st != Status::Ok)
                return st;
            return say(r.host, "Failed to zero out new clusters: Operation not supported", Status::Unsupported);
        }
        plan->from = old_length / (r.cs / QCOW2_SUBCLUSTERS) * (r.cs / QCOW2_SUBCLUSTERS);
        plan->len = r.cs / QCOW2_SUBCLUSTERS;
        if (plan->alloc == Resizer::HeadAlloc::Copy) {
            plan->from = old_length / r.cs * r.cs + r.head_cow.from;
            plan->len = r.head_cow.to - r.head_cow.from;
        }
    } else {
        // qemu zeroes from the next cluster and writes explicit zeros over the rest of the old last
        // cluster through its write path: in place when that cluster is allocated, else into a new
        // cluster whose head it copies from the backing file or, for a zero cluster, zeros.
        if (const Status st = r.head_for_zeros(old_length, &plan->zero_host); st != Status::Ok)
            return st;
        if (plan->zero_host == 0)
            if (const Status st = r.head_to_allocate(old_length, &plan->alloc); st != Status::Ok)
                return st;
        if (plan->zero_host == 0 && plan->alloc == Resizer::HeadAlloc::None)
            return say(r.host, "instar cannot zero the new area of an overlay whose size is not a multiple of "
                               "its cluster size yet (its last cluster is not a valid data cluster)",
                       Status::Unsupported);
        plan->from = old_length / r.cs * r.cs;
        plan->len = r.cs;
        if (plan->alloc == Resizer::HeadAlloc::ZeroInPlace)
            plan->zero_host = r.head_cluster; // the whole cluster, in place
    }
    if (r.head_compressed != 0 && h.crypt_method != QCOW_CRYPT_NONE) // qemu's writers never make one
        return say(r.host, "instar cannot zero the new area of an encrypted overlay over a compressed cluster",
                   Status::Unsupported);
    r.head_kind = plan->alloc;
    return Status::Ok;
}

// qcow2_co_truncate on the open image `q` with resize's arguments.
Status run_resize(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& q, const guest::ResizeArgs& a) {
    if (a.new_size == 0 || a.new_size > INT64_MAX)
        return say(host, "New image size must be positive", Status::Invalid);
    const Qcow2Header& h = q.header();
    // An encrypted image (LUKS or the old AES method) resizes as any other: qcow2_co_truncate
    // writes no guest data, and the host has resolved the key first, as qemu's open does (a LUKS
    // key unlocked; an AES key has nothing to check it against). The explicit zeros some overlay
    // cases need are refused below for every encrypted image.
    if (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        return say(host, "qcow2: Image is corrupt; cannot be opened read/write", Status::Corrupt);
    if (h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return say(host, "instar cannot resize a dirty qcow2 image yet (repair it with check -r all)",
                   Status::Unsupported);
    const bool data_file = (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    if (data_file && (req.file_count != 1 || req.files == nullptr || req.files[0] == nullptr))
        return say(host, "resize: the external data file was not opened", Status::Invalid);
    auto prealloc = static_cast<guest::Prealloc>(a.prealloc);
    if (prealloc != guest::Prealloc::Off && prealloc != guest::Prealloc::Metadata &&
        prealloc != guest::Prealloc::Falloc && prealloc != guest::Prealloc::Full)
        return say(host, "resize: unknown preallocation mode", Status::Invalid);
    if (a.new_size % SECTOR != 0)
        return say(host, "The new size must be a multiple of 512", Status::Invalid);
    if (h.nb_snapshots != 0 && h.version < 3)
        return say(host, "Can't resize a v2 image which has snapshots", Status::Unsupported);
    // Persistent bitmaps are carried to the new size (qcow2_bitmap_carry.h).
    Qcow2BitmapCarry bitmaps(req, host, q);
    if (h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)
        if (const Status st = bitmaps.load(true); st != Status::Ok)
            return st;
    if (bitmaps.present())
        if (const Status st = bitmaps.check(a.new_size); st != Status::Ok)
            return st;

    Resizer r{req, host, q};
    struct WipeCipher { // the unlocked key leaves guest memory with the edit
        guest::Allocator& alloc;
        luks::SectorCipher*& cipher;
        luks::SectorCipher*& decipher;
        ~WipeCipher() {
            luks::delete_wiped(alloc, cipher);
            luks::delete_wiped(alloc, decipher);
        }
    } wipe{*req.allocator, r.cipher, r.decipher};
    r.cs = q.cluster_size();
    r.data_file = data_file;
    r.l2_entry_bytes = (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 16 : 8;
    if (a.flags & guest::RESIZE_HAS_BACKING)
        r.backing_reach = a.backing_size;
    r.l2_entries = r.cs / r.l2_entry_bytes;
    r.l2 = static_cast<uint64_t*>(req.allocator->allocate(static_cast<size_t>(r.cs), 64));
    if (r.l2 == nullptr)
        return Status::NoMemory;
    const uint64_t old_length = h.size / SECTOR * SECTOR; // qemu's total_sectors * 512
    if (h.l1_size < r.size_to_l1(h.size))
        return say(host, "L1 table is too small", Status::Corrupt);

    if (a.new_size < old_length) {
        if (prealloc != guest::Prealloc::Off)
            return say(host, "Preallocation can't be used for shrinking an image", Status::Invalid);
        if (!(a.flags & guest::RESIZE_SHRINK))
            return say(host, "Use the --shrink option to perform a shrink operation.", Status::Invalid);
        // The bitmaps are stored at the size switch when their tables shrink (the old directory
        // no longer matches the disk), else after the clean-up as qemu's close stores them (its
        // cluster placement): the old directory stays valid at the new size until then.
        const bool late_bitmaps = bitmaps.present() && !bitmaps.tables_change(a.new_size);
        if (bitmaps.present() && !late_bitmaps)
            r.bitmaps_at_switch = &bitmaps;
        if (const Status st = r.shrink(old_length, a.new_size); st != Status::Ok)
            return st;
        // qemu truncates the data file to the exact new size (PREALLOC_MODE_OFF, exact).
        if (data_file && host.set_length(*req.files[0], a.new_size, guest::Prealloc::Off) != Status::Ok)
            return say(host, "Could not resize file: Input/output error", Status::IoError);
        if (late_bitmaps)
            if (const Status st = bitmaps.store(a.new_size); st != Status::Ok)
                return say(host, "Failed to store the persistent bitmaps: Input/output error", st);
        return Status::Ok;
    }
    // qemu's falloc and full paths extend a regular file with BDRV_REQ_ZERO_WRITE, which it honours
    // (zeros from the file system): the zero write is then not made, and the clusters linked are
    // allocated whole (subclusters_need_allocation). A data file takes preallocate_co instead.
    const bool backed_past = (a.flags & guest::RESIZE_HAS_BACKING) && a.backing_size > old_length &&
                             a.new_size > old_length;
    const bool falloc_like =
        !data_file && (prealloc == guest::Prealloc::Falloc || prealloc == guest::Prealloc::Full);
    const bool zero_write = backed_past && !falloc_like;
    const uint64_t unit = r.l2_entry_bytes == 16 ? r.cs / QCOW2_SUBCLUSTERS : r.cs;
    const uint64_t zero_start = (old_length + unit - 1) / unit * unit;
    const uint64_t head_cluster = old_length / r.cs * r.cs;
    const bool unaligned = old_length % r.cs != 0;
    // qemu finds that v2 has no zero clusters when it zeroes (the L1 table grown, any preallocation
    // made; the size stays). The explicit zeros inside the old last cluster alone still work.
    const bool v2_fails = zero_write && h.version < 3 && a.new_size > zero_start;
    // A preallocation from inside the old last cluster moves or completes that cluster first
    // (preallocate_co, or the falloc path's new head): the zero write's head is known after it.
    const bool prealloc_head = unaligned && a.new_size > old_length && prealloc != guest::Prealloc::Off;
    const bool deferred = zero_write && prealloc_head;
    HeadPlan plan;
    if (zero_write && !v2_fails && !deferred)
        if (const Status st = plan_zero_head(r, h, old_length, a.new_size, prealloc, &plan); st != Status::Ok)
            return st;
    bool need_backing = plan.alloc == Resizer::HeadAlloc::Backing ||
                        (plan.alloc == Resizer::HeadAlloc::Copy && r.head_cow_backing);
    bool prealloc_writes = false; // the preallocation writes guest data into the head cluster
    if (prealloc_head) {
        uint64_t e = 0, bm = 0;
        if (const Status st = r.head_entry(head_cluster, &e, &bm); st != Status::Ok)
            return st;
        const bool kept = !falloc_like && r.meta_head_kept(e) != 0; // preallocate_co's handle_copied
        const bool zero_alloc = r.l2_entry_bytes == 8 && (e & QCOW_OFLAG_ZERO) && (e & QCOW2_L2E_OFFSET_MASK) != 0;
        // qemu keeps a zero-flagged cluster of its own and drops the flag with zeros written before
        // the old size only: without a zero write after it, the rest of that cluster (the new
        // area) would show its old bytes. And a moved compressed cluster keeps its empty bitmap
        // (extended L2 entries, link_l2 with prealloc): its bytes would read as unallocated.
        if (kept && zero_alloc && !zero_write)
            return say(host, "instar refuses to preallocate over a zero-flagged last cluster holding the old size: "
                             "qemu-img would show that cluster's old bytes in the new area",
                       Status::Unsupported);
        if (!kept && r.l2_entry_bytes == 16 && (e & QCOW_OFLAG_COMPRESSED) && !(falloc_like && backed_past))
            return say(host, "instar refuses to preallocate over a compressed last cluster with extended L2 entries: "
                             "qemu-img would lose the data before the old size",
                       Status::Unsupported);
        prealloc_writes = !kept || zero_alloc || r.l2_entry_bytes == 16;
        if (r.backing_reach > head_cluster && r.view_shows_backing(e, bm, head_cluster, 0, r.cs))
            need_backing = true;
        if (e & QCOW_OFLAG_COMPRESSED && h.crypt_method != QCOW_CRYPT_NONE) // qemu's writers never make one
            return say(host, "instar cannot preallocate over a compressed cluster of an encrypted image",
                       Status::Unsupported);
    }
    if (deferred && r.l2_entry_bytes == 16 && r.backing_reach > head_cluster)
        need_backing = true; // the zero write's subcluster may show the backing file after the preallocation
    // preallocate_co's last cluster, when the new size ends inside it (past the old last one): its
    // copy-on-write after the new size reads the backing file where that reaches.
    bool need_tail = false;
    if (a.new_size > old_length && prealloc != guest::Prealloc::Off && !falloc_like && a.new_size % r.cs != 0 &&
        r.backing_reach > a.new_size) {
        const uint64_t tail = a.new_size / r.cs * r.cs;
        const uint64_t to = (a.new_size % r.cs + unit - 1) / unit * unit;
        uint64_t e = 0, bm = 0;
        if (const Status st = r.head_entry(tail, &e, &bm); st != Status::Ok)
            return st;
        if (!(unaligned && tail == head_cluster) && to > a.new_size % r.cs &&
            r.view_shows_backing(e, bm, tail, a.new_size % r.cs, to)) {
            need_tail = true;
            r.tail_cluster = tail;
            r.tail_cow_to = to;
        }
    }
    uint8_t* head_bytes = nullptr; // the backing chain's bytes of the whole head cluster
    if (need_backing || need_tail) {
        // The host reads them (each a whole cluster) in a sandbox of its own and runs this again
        // with them, in the order asked (nothing is written before this point).
        if (!(a.flags & guest::RESIZE_BACKING_BYTES)) {
            const uint64_t asked[2] = {need_backing ? head_cluster : UINT64_MAX, need_tail ? r.tail_cluster : UINT64_MAX};
            for (const uint64_t at : asked) {
                if (at == UINT64_MAX)
                    continue;
                const guest::ResizeNeedBacking need{at, r.cs};
                if (const Status st = host.data(guest::RESIZE_DATA_NEED_BACKING, &need, sizeof need); st != Status::Ok)
                    return st;
            }
            return say(host, "instar cannot zero the new area of this overlay without its backing file's bytes",
                       Status::Unsupported);
        }
        const uint32_t wanted = (need_backing ? 1u : 0u) + (need_tail ? 1u : 0u);
        if (req.extra_count < wanted || req.extra == nullptr)
            return say(host, "resize: the backing file's bytes were not sent", Status::Invalid);
        for (uint32_t i = 0; i < wanted; ++i) {
            auto* bytes = static_cast<uint8_t*>(req.allocator->allocate(static_cast<size_t>(r.cs), 64));
            if (bytes == nullptr)
                return Status::NoMemory;
            __builtin_memset(bytes, 0, static_cast<size_t>(r.cs));
            guest::BlockDevice* b = req.extra[i];
            if (b == nullptr)
                return say(host, "resize: the backing file's bytes were not sent", Status::Invalid);
            const uint64_t n = b->size() < r.cs ? b->size() : r.cs;
            if (n > 0 && b->read(0, bytes, static_cast<size_t>(n)) != Status::Ok)
                return say(host, "Could not read the backing file: Input/output error", Status::IoError);
            if (i == 0 && need_backing)
                head_bytes = bytes;
            else
                r.tail_backing = bytes;
        }
        r.head_backing = head_bytes;
    }
    // Those zeros (and the copied head) are guest data: encrypted with the image's key, which the
    // host checked when it opened the image as qemu does.
    const bool writes_head = plan.zero_host != 0 || plan.alloc != Resizer::HeadAlloc::None || deferred ||
                             prealloc_writes;
    if (h.crypt_method != QCOW_CRYPT_NONE && writes_head) {
        if (req.secrets == nullptr || req.secrets[guest::EDIT_SECRET_KEY] == nullptr || req.secret_lengths == nullptr)
            return say(host, "Parameter 'encrypt.key-secret' is required for cipher", Status::Invalid);
        EditReasons reasons(host);
        if (const Status st = qcow2_unlock(*req.image, h, *req.allocator, req.secrets[guest::EDIT_SECRET_KEY],
                                           req.secret_lengths[guest::EDIT_SECRET_KEY], &reasons, req.qemu_version,
                                           &r.cipher, &r.decipher, &r.crypt_physical);
            st != Status::Ok)
            return st;
    }
    if (const Status st = r.grow_l1(r.size_to_l1(a.new_size)); st != Status::Ok)
        return st;
    // A raw data file (data_file_raw) keeps every cluster mapped: qemu preallocates the metadata of
    // a grown area (qcow2_co_truncate turns PREALLOC_MODE_OFF into METADATA).
    if (data_file && (h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && prealloc == guest::Prealloc::Off &&
        a.new_size > old_length)
        prealloc = guest::Prealloc::Metadata;
    // With a data file every mode maps the new area (preallocate_co) and sets the data file's length.
    if (a.new_size > old_length && prealloc != guest::Prealloc::Off && (data_file || prealloc == guest::Prealloc::Metadata))
        if (const Status st = r.prealloc_metadata(old_length, a.new_size); st != Status::Ok)
            return st;
    if (falloc_like && a.new_size > old_length)
        if (const Status st = r.prealloc_data(old_length, a.new_size, prealloc, backed_past); st != Status::Ok)
            return st;
    if (data_file) {
        // (Before the zeros below, as qcow2_co_truncate's preallocation switch: a head cluster written
        // past a new size inside it leaves the data file that long.)
        // Without preallocation the data file takes the exact new size; preallocate_co only grows
        // it, to the end of its last run, with the mode (metadata: none).
        // (The end of the last run: the new size rounded up to a cluster.)
        guest::BlockDevice& df = *req.files[0];
        const bool exact = prealloc == guest::Prealloc::Off;
        const uint64_t df_len = req.file_lengths != nullptr ? req.file_lengths[0] : 0;
        const uint64_t run_end = (a.new_size + r.cs - 1) / r.cs * r.cs;
        if (exact || run_end > df_len) {
            const guest::Prealloc mode = prealloc == guest::Prealloc::Metadata ? guest::Prealloc::Off : prealloc;
            if (host.set_length(df, exact ? a.new_size : run_end, exact ? guest::Prealloc::Off : mode) != Status::Ok)
                return say(host, "Could not resize file: Input/output error", Status::IoError);
        }
        if (const Status st = host.flush(df); st != Status::Ok)
            return st;
    }
    if (zero_write) {
        if (v2_fails) {
            if (const Status st = q.sync(); st != Status::Ok) // the old L1's refcount, as qemu frees it
                return st;
            return say(host, "Failed to zero out new clusters: Operation not supported", Status::Unsupported);
        }
        if (deferred) {
            if (const Status st = plan_zero_head(r, h, old_length, a.new_size, prealloc, &plan); st != Status::Ok)
                return st;
            if ((plan.alloc == Resizer::HeadAlloc::Backing ||
                 (plan.alloc == Resizer::HeadAlloc::Copy && r.head_cow_backing)) && head_bytes == nullptr)
                return say(host, "resize: the backing file's bytes were not asked for", Status::Invalid);
        }
        // qcow2_co_truncate: zero clusters (extended L2: zero subclusters) from the next boundary on,
        // then explicit zeros over the unaligned rest through the write path.
        if (a.new_size > zero_start)
            if (const Status st = r.zeroize(zero_start, a.new_size); st != Status::Ok)
                return st;
        const uint64_t head_end = zero_start < a.new_size ? zero_start : a.new_size;
        if (plan.alloc != Resizer::HeadAlloc::None) {
            if (const Status st = r.write_head(plan.zero_host, plan.from, plan.len, old_length, head_end, head_bytes,
                                               plan.claim);
                st != Status::Ok)
                return st;
        } else if (plan.zero_host != 0) {
            // In place: the zeros from the old size, or a claimed zero subcluster written whole (the
            // copy-on-write regions around the request, to its subcluster's bounds, read as zeros).
            const uint64_t from = plan.claim ? old_length / unit * unit : old_length;
            const uint64_t to = plan.claim ? zero_start : head_end;
            if (const Status st = r.write_head(plan.zero_host, from, to - from, old_length, to, nullptr, plan.claim);
                st != Status::Ok)
                return st;
        }
    }
    if (bitmaps.present())
        r.bitmaps_at_switch = &bitmaps; // stored anew even at the same size, as qemu's close does
    else if (a.new_size == h.size)
        return Status::Ok;
    if (const Status st = r.write_size(a.new_size); st != Status::Ok)
        return say(host, "Failed to update the image size: Input/output error", st);
    return Status::Ok;
}

} // namespace

guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host) {
    guest::ResizeArgs a{};
    if (req.args_len != sizeof a)
        return say(host, "resize: malformed arguments", Status::Invalid);
    __builtin_memcpy(&a, req.args, sizeof a);
    if (!req.writable)
        return say(host, "resize: the image was not opened for writing", Status::Invalid);
    if (a.new_size == 0 || a.new_size > INT64_MAX)
        return say(host, "New image size must be positive", Status::Invalid);
    Qcow2Inplace q;
    if (const Status st = q.open(*req.image, req.image_length, *req.allocator, &host); st != Status::Ok)
        return st;
    return run_resize(req, host, q, a);
}

guest::Status qcow2_truncate(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& q, uint64_t new_size,
                             const uint64_t* backing_size, bool backing_bytes) {
    guest::ResizeArgs a{};
    a.new_size = new_size;
    a.old_size = q.header().size;
    a.prealloc = static_cast<uint32_t>(guest::Prealloc::Off);
    a.flags = guest::RESIZE_SHRINK;
    if (backing_size != nullptr) {
        a.flags |= guest::RESIZE_HAS_BACKING;
        a.backing_size = *backing_size;
    }
    if (backing_bytes)
        a.flags |= guest::RESIZE_BACKING_BYTES;
    return run_resize(req, host, q, a);
}

guest::Status qcow2_grow_l1_exact(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& q,
                                  uint64_t min_size) {
    Resizer r{req, host, q};
    r.cs = q.cluster_size();
    r.l2_entry_bytes = (q.header().incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 16 : 8;
    r.l2_entries = r.cs / r.l2_entry_bytes;
    if (const Status st = r.grow_l1(min_size); st != Status::Ok)
        return st;
    return q.sync(); // the old table's refcount, as qemu frees it
}

} // namespace instar::qcow2
