// qcow2 in place: the shared metadata layer for changing an existing qcow2 image (snapshot, amend,
// bitmap, resize, rebase, commit; docs/edit.md). It opens the header (parsed and checked as the
// reader does), loads the refcount table (bounded by qemu's QCOW_MAX_REFTABLE_SIZE), reads and
// changes refcounts of any width through a small write-back cache of refcount blocks, allocates
// clusters as qemu's qcow2_alloc_clusters does (first fit from a free-cluster index that starts
// at 0, so results match qemu's byte for byte where the caller allocates in qemu's order), frees
// them, grows the refcount table as qemu's alloc_refcount_block / qcow2_refcount_area do, and
// writes header fields.
//
// Everything read from the image is untrusted: refcount block offsets are checked (aligned, inside
// the file, not cluster 0) before use, refcount arithmetic is overflow-checked against the width's
// maximum, and allocation stops at qemu's QCOW_MAX_CLUSTER_OFFSET.
//
// Ordering (crash consistency): refcount increases are cached; the caller makes them durable with
// sync() (flush_refcounts() + EditHost::flush) before writing anything that points at the new
// clusters. Decreases must only be made after the references are gone and synced. New refcount
// blocks and tables are written and flushed before the entry or header field naming them, as qemu.
// Freestanding-clean.
#pragma once

#include "qcow2_header.h"

#include <instar/guest/edit_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// Refcount blocks held in memory at once: allocation touches one or two blocks at a time (the one
// being scanned, the one a new block falls under); a few more keep L2-walks cheap.
inline constexpr uint32_t INPLACE_REFBLOCK_CACHE = 8;

// Byte offsets of header fields (the on-disk Qcow2HeaderDisk), for header updates.
inline constexpr uint64_t QCOW2_HDR_SIZE = 24;
inline constexpr uint64_t QCOW2_HDR_L1_SIZE = 36;            // l1_size (4) + l1_table_offset (8)
inline constexpr uint64_t QCOW2_HDR_REFTABLE = 48;           // refcount_table_offset (8) + _clusters (4)
inline constexpr uint64_t QCOW2_HDR_SNAPSHOTS = 60;          // nb_snapshots (4) + snapshots_offset (8)
inline constexpr uint64_t QCOW2_HDR_INCOMPATIBLE = 72;
inline constexpr uint64_t QCOW2_HDR_COMPATIBLE = 80;
inline constexpr uint64_t QCOW2_HDR_AUTOCLEAR = 88;

// L1/L2 entry bits (qcow2 spec).
inline constexpr uint64_t QCOW_OFLAG_COPIED = uint64_t{1} << 63;
inline constexpr uint64_t QCOW_OFLAG_COMPRESSED = uint64_t{1} << 62;
inline constexpr uint64_t QCOW_OFLAG_ZERO = 1;
inline constexpr uint64_t QCOW2_L1E_OFFSET_MASK = 0x00fffffffffffe00ull;
inline constexpr uint64_t QCOW2_L2E_OFFSET_MASK = 0x00fffffffffffe00ull;
inline constexpr uint64_t QCOW2_REFT_OFFSET_MASK = 0xfffffffffffffe00ull;
// qemu's QCOW_MAX_CLUSTER_OFFSET: host offsets must fit the 56-bit L2/refcount-table fields.
inline constexpr uint64_t QCOW2_MAX_CLUSTER_OFFSET = (uint64_t{1} << 56) - 1;

class Qcow2Inplace {
public:
    Qcow2Inplace() = default;
    Qcow2Inplace(const Qcow2Inplace&) = delete;
    Qcow2Inplace& operator=(const Qcow2Inplace&) = delete;

    // Parses the header (as the reader does), checks the L1 and refcount table placement and loads
    // the refcount table. `file_length` is the image file's length (an output device's size() is
    // only its limit). `host` (may be null: no flushes, no reasons) gets refusal reasons in qemu's
    // words and the flushes of sync(). Nothing is written.
    Status open(guest::BlockDevice& dev, uint64_t file_length, guest::Allocator& alloc, guest::EditHost* host);
    // Releases memory. Does not write: call flush_refcounts()/sync() first.
    void close();

    const Qcow2Header& header() const { return h_; }
    guest::BlockDevice& device() { return *dev_; }
    guest::Allocator& allocator() { return *alloc_; }
    uint64_t cluster_size() const { return cs_; }
    uint64_t refcounts_per_block() const { return rb_entries_; }
    uint32_t cluster_bits() const { return h_.cluster_bits; }
    uint64_t file_length() const { return file_len_; }
    uint64_t refcount_max() const { return refcount_max_; }
    uint64_t l2_entries() const { return cs_ / 8; }
    // The refcount table as loaded (and grown): entries, and one entry (0 past the end).
    uint64_t reftable_size() const { return rt_size_; }
    uint64_t reftable_entry(uint64_t index) const { return index < rt_size_ ? reftable_[index] : 0; }
    // log2 of the refcounts one refcount block holds.
    uint32_t refblock_bits() const { return rb_bits_; }

    // Image I/O that keeps file_length() current (writes past the end extend the file).
    Status read(uint64_t offset, void* buf, size_t len);
    // read(), with zeros for the part past the end of the file (a data cluster the file ends in).
    Status read_zero_padded(uint64_t offset, void* buf, size_t len);
    Status write(uint64_t offset, const void* buf, size_t len);
    // Big-endian 64-bit tables (L1, L2, refcount table), `count` entries, converted.
    Status read_table(uint64_t offset, uint64_t* out, uint64_t count);
    Status write_table(uint64_t offset, const uint64_t* in, uint64_t count);
    // A cluster-aligned offset whose cluster lies wholly inside the file and is not cluster 0.
    bool cluster_in_file(uint64_t offset) const;
    // A data cluster's offset: aligned, not cluster 0, starting inside the file (the file may end
    // inside it: with extended L2 entries qemu writes only the subclusters a request covers).
    bool data_cluster_in_file(uint64_t offset) const;
    // [offset, offset + bytes) lies inside the file.
    bool range_in_file(uint64_t offset, uint64_t bytes) const;

    // The refcount of host cluster `cluster_index` (0 past the refcount table or in a missing block).
    Status get_refcount(uint64_t cluster_index, uint64_t* out);
    // qemu's update_refcount: adds (or subtracts) `addend` to every cluster of [offset, offset +
    // length). Refused (Invalid, nothing changed) on overflow or underflow anywhere in the range.
    // Creates missing refcount blocks and grows the table as qemu does. `discard`: clusters whose
    // refcount drops to 0 are discarded in the file (qemu's discard passthrough, on by default for
    // snapshot frees: QCOW2_DISCARD_SNAPSHOT); a device that cannot discard is left as it is.
    Status update_refcount(uint64_t offset, uint64_t length, uint64_t addend, bool decrease, bool discard = false);
    // qemu's qcow2_alloc_clusters: `bytes` rounded up to clusters, contiguous, first fit from the
    // free-cluster index; their refcounts become 1 (cached). *offset is the first one's offset.
    // 0 bytes allocates nothing and returns the free-cluster index's offset, as qemu (a snapshot
    // table with no entries is placed there).
    Status alloc_clusters(uint64_t bytes, uint64_t* offset);
    // qemu's qcow2_alloc_clusters_at: up to `nb_clusters` free clusters from `offset` on (cluster
    // aligned), as many as are free in a row; *allocated says how many (0: the first is in use).
    Status alloc_clusters_at(uint64_t offset, uint64_t nb_clusters, uint64_t* allocated);
    // qemu's qcow2_refcount_area(start_offset, additional_clusters, exact_size, 0, 0): refcount
    // blocks and a new refcount table at `start_offset` (cluster aligned, nothing in use from there
    // on) covering everything up to the end of the new structures plus `additional_clusters`; the
    // header is switched to the new table and the old one freed. *end_offset is where the new
    // structures end (qemu's return value).
    Status refcount_area_at(uint64_t start_offset, uint64_t additional_clusters, bool exact_size,
                            uint64_t* end_offset);
    // qemu's qcow2_free_clusters: the refcounts of the clusters of [offset, offset + bytes) drop by 1.
    Status free_clusters(uint64_t offset, uint64_t bytes, bool discard = false);
    // Writes the dirty cached refcount blocks (and issues the queued discards).
    Status flush_refcounts();
    // The ordering point: flush_refcounts(), then EditHost::flush of the image (skipped when
    // nothing was written since the last one).
    Status sync();

    // Header updates, one write each (the switch points); the parsed header follows them.
    Status write_header(uint64_t field_offset, const void* bytes, size_t len);
    Status set_l1(uint64_t l1_table_offset, uint32_t l1_size);      // l1_size + l1_table_offset
    Status set_snapshots(uint32_t nb_snapshots, uint64_t offset);   // nb_snapshots + snapshots_offset
    Status set_features(uint64_t incompatible, uint64_t compatible, uint64_t autoclear); // v3 only

    // Sends a refusal reason (qemu's words) to the host, if any. Returns `st`.
    Status refuse(Status st, const char* text, size_t len);

private:
    struct Slot {
        uint64_t offset = 0; // 0: empty
        uint8_t* data = nullptr;
        bool dirty = false;
        uint64_t used = 0;
    };

    Status load_refblock(uint64_t offset, Slot** out);
    // The cached block holding host cluster `cluster_index`'s refcount; *out null when there is
    // none (past the table or a missing block: the count is 0).
    Status count_block(uint64_t cluster_index, Slot** out);
    Status empty_refblock(uint64_t offset, Slot** out);
    Status write_slot(Slot& s);
    Slot* victim();
    uint64_t get_entry(const uint8_t* block, uint64_t index) const;
    void set_entry(uint8_t* block, uint64_t index, uint64_t value) const;
    Status alloc_noref(uint64_t nb_clusters, uint64_t* offset);
    // qemu's alloc_refcount_block: the block for `cluster_index`; Again when one was created
    // (the caller restarts its search).
    Status refblock_for(uint64_t cluster_index, Slot** out, uint32_t depth);
    Status refcount_area(uint64_t start_offset, uint64_t rt_index, uint64_t new_block);
    Status update_one(uint64_t offset, uint64_t length, uint64_t addend, bool decrease, uint32_t depth,
                      bool discard = false);
    Status refcount_area_impl(uint64_t start_offset, uint64_t additional_clusters, bool exact_size,
                              uint64_t new_rb_index, uint64_t new_rb_offset, uint64_t* end_out);
    Status corrupt_refblock(uint64_t offset, uint64_t rt_index);
    void flush_discards();

    guest::BlockDevice* dev_ = nullptr;
    guest::Allocator* alloc_ = nullptr;
    guest::EditHost* host_ = nullptr;
    Qcow2Header h_{};
    uint64_t cs_ = 0;
    uint64_t file_len_ = 0;
    uint32_t refcount_order_ = 4;
    uint64_t refcount_max_ = 0xffff;
    uint64_t rb_entries_ = 0;  // refcounts per block
    uint32_t rb_bits_ = 0;     // log2(rb_entries_)
    uint64_t* reftable_ = nullptr;
    uint64_t rt_size_ = 0;     // entries
    uint64_t rt_alloc_bytes_ = 0;
    uint64_t free_index_ = 0;  // qemu's free_cluster_index
    uint64_t tick_ = 0;
    bool restarted_ = false;   // a refcount block was created: search again (qemu's -EAGAIN)
    uint64_t discard_start_ = 0; // queued discard: clusters [start, start + len)
    uint64_t discard_len_ = 0;
    bool unsynced_ = false;      // written since the last sync()
    Slot slots_[INPLACE_REFBLOCK_CACHE];
};

} // namespace instar::qcow2
