// qcow2: emptying a top image with internal snapshots (qcow2_edit_empty.cpp calls it). qemu's
// qcow2_make_empty cannot rebuild such an image, so it discards every guest cluster
// (qcow2_cluster_discard with full_discard): each active L2 entry becomes 0 and its cluster loses
// the active table's reference (compressed: every host cluster its bytes touch), a cluster whose
// refcount reaches 0 is discarded in the file, and what the snapshots reference stays.
//
// instar drops the active L1 table's references whole rather than entry by entry:
//   1. every L2 table the active L1 table names is read and checked (the table and every cluster
//      it names inside the file, off the header, the L1 table, the refcount table and blocks and the
//      snapshot metadata), before anything is written;
//   2. the active L1 table is zeroed, flush: every guest cluster now reads from the backing file,
//      which holds the committed data already (the content is the same before and after);
//   3. each of those L2 tables gives up one reference to each cluster it names, and the table
//      itself one reference (a table a snapshot shares stays for it; qemu copies such a table into
//      a new zeroed one, instar leaves the entry 0), flush. Clusters whose refcount reaches 0 are
//      discarded (qemu's QCOW2_DISCARD_SNAPSHOT passthrough) after their refcount block is written.
// A kill after step 2 leaves leaked clusters at worst; before it, the image as it was. The file
// keeps its length, as qemu's discards leave it.
//
// Images with an external data file (qemu's discard loop too: data clusters have no refcounts, and
// qemu's qcow2_free_any_cluster passes each freed one to the data file as a discard) are emptied as
// qemu leaves them, byte for byte: the L1 table, the L2 tables and every refcount stay; after the
// same checks as step 1, each L2 table in turn is zeroed and flushed (the guest clusters it mapped
// now read from the backing file), then the data-file clusters it named are discarded (a hole
// where the device can punch one; advisory, as qemu's). A kill leaves each table old (its data
// untouched) or zeroed.
//
// Images with persistent bitmaps (qemu's discard loop as well) go the same way as those with
// snapshots: the bitmaps' directory, tables and data clusters are metadata no active entry may name,
// and they stay where they are, unchanged (qemu's discards do not dirty them; its close then stores
// them again into new clusters: divergence qcow2-empty-bitmaps).
//
// Extended L2 tables hold 16-byte entries: the walk reads each entry's first word (the subcluster
// bitmap that follows is not an offset).
#include "qcow2_edit.h"

#include "qcow2_bitmap_ranges.h"
#include "qcow2_header.h"
#include "qcow2_inplace.h"
#include "qcow2_limits.h"
#include "qcow2_read_compressed.h"
#include "qcow2_read_reason.h"
#include "qcow2_snapshot_ranges.h"
#include "qcow2_sort.h"

namespace instar::qcow2 {

using guest::Status;

namespace {

// Zeros written per request over the active L1 table (up to QCOW_MAX_L1_SIZE).
constexpr uint64_t DISCARD_ZERO_CHUNK = 1u << 20;

class DiscardEmpty {
public:
    DiscardEmpty(const guest::EditRequest& req, guest::EditHost& host) : req_(req), host_(host), alloc_(*req.allocator) {}
    ~DiscardEmpty() {
        if (l1_ != nullptr)
            alloc_.deallocate(l1_, static_cast<size_t>(l1_bytes_));
        if (l2_ != nullptr)
            alloc_.deallocate(l2_, static_cast<size_t>(ip_.cluster_size()));
        snapshots_.release(alloc_);
        bitmaps_.release(alloc_);
        if (blocks_ != nullptr)
            alloc_.deallocate(blocks_, static_cast<size_t>(blocks_bytes_));
        ip_.close();
    }

    Status run() {
        if (const Status st = ip_.open(*req_.image, req_.image_length, alloc_, &host_); st != Status::Ok)
            return st;
        const Qcow2Header& h = ip_.header();
        entry_words_ = (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 2 : 1;
        if (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
            // The host passes the files the image names: the data file first (OpenRequest::files).
            if (req_.files == nullptr || req_.file_lengths == nullptr || req_.file_count < 1 || req_.files[0] == nullptr)
                return Status::Invalid;
            data_ = req_.files[0];
            data_len_ = req_.file_lengths[0];
        }
        if (uint64_t{h.l1_size} * 8 > QCOW_MAX_L1_SIZE)
            return Status::TooLarge;
        l1_bytes_ = h.l1_size == 0 ? 8 : uint64_t{h.l1_size} * 8;
        l1_ = static_cast<uint64_t*>(alloc_.allocate(static_cast<size_t>(l1_bytes_), 64));
        l2_ = static_cast<uint64_t*>(alloc_.allocate(static_cast<size_t>(ip_.cluster_size()), 64));
        if (l1_ == nullptr || l2_ == nullptr)
            return Status::NoMemory;
        if (const Status st = ip_.read_table(h.l1_table_offset, l1_, h.l1_size); st != Status::Ok)
            return st;
        if (const Status st = load_metadata(); st != Status::Ok)
            return st;
        // 1. Everything the active tables name is checked first.
        for (uint32_t i = 0; i < h.l1_size; ++i)
            if (const Status st = for_each_reference(i, false); st != Status::Ok)
                return st;
        if (data_ != nullptr)
            return empty_tables();
        // 2. The active L1 table reads as empty.
        if (const Status st = zero_l1(); st != Status::Ok)
            return st;
        if (const Status st = host_.flush(*req_.image); st != Status::Ok)
            return st;
        // 3. The references it held are given up.
        for (uint32_t i = 0; i < h.l1_size; ++i)
            if (const Status st = for_each_reference(i, true); st != Status::Ok)
                return st;
        return ip_.sync();
    }

private:
    Status corrupt(ReasonText& r) {
        host_.reason(r.data(), r.size());
        return Status::Corrupt;
    }

    // The clusters no data or table entry may name: the header, the active L1 table, the refcount
    // table, the snapshots' table and L1 tables, and the persistent bitmaps' directory, tables and
    // data clusters (qemu's metadata overlap check; a bitmap cluster an L2 entry named would be
    // freed under the bitmap).
    // The refcount blocks too: a cluster named as data that is a refcount block would lose its
    // refcount and be discarded with every count in it (sorted cluster indexes, one per table entry,
    // at most QCOW_MAX_REFTABLE_SIZE / 8).
    Status load_metadata() {
        ReasonText why;
        if (const Status st = snapshots_.load(ip_.header(), ip_.device(), alloc_, &why); st != Status::Ok) {
            if (st == Status::Corrupt)
                return corrupt(why);
            return st;
        }
        if (const Status st = bitmaps_.load(ip_.header(), ip_.device(), ip_.file_length(), alloc_, &why); st != Status::Ok) {
            if (st == Status::Corrupt)
                return corrupt(why);
            if (why.size() > 0) // TooLarge: more bitmap data clusters than BITMAP_RANGES_MAX
                host_.reason(why.data(), why.size());
            return st;
        }
        blocks_bytes_ = (ip_.reftable_size() + 1) * sizeof(uint64_t);
        blocks_ = static_cast<uint64_t*>(alloc_.allocate(static_cast<size_t>(blocks_bytes_), 8));
        if (blocks_ == nullptr)
            return Status::NoMemory;
        for (uint64_t i = 0; i < ip_.reftable_size(); ++i)
            if (const uint64_t off = ip_.reftable_entry(i) & QCOW2_REFT_OFFSET_MASK; off != 0)
                blocks_[nblocks_++] = off >> ip_.cluster_bits();
        heap_sort(blocks_, nblocks_, [](uint64_t a, uint64_t b) { return a < b; });
        return Status::Ok;
    }

    // Whether a refcount block lies in clusters [first, last].
    bool on_refblock(uint64_t first, uint64_t last) const {
        const uint64_t at = partition_point(blocks_, nblocks_, [first](uint64_t b) { return b < first; });
        return at < nblocks_ && blocks_[at] <= last;
    }

    bool on_metadata(uint64_t first, uint64_t end) const {
        const Qcow2Header& h = ip_.header();
        const uint64_t cs = ip_.cluster_size();
        auto hit = [&](uint64_t start, uint64_t bytes) { return first < start + bytes && end > start; };
        return first < cs || hit(h.l1_table_offset, uint64_t{h.l1_size} * 8) ||
               hit(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs) || snapshots_.hits(first, end) ||
               bitmaps_.hits(first, end) ||
               on_refblock(first >> ip_.cluster_bits(), (end - 1) >> ip_.cluster_bits());
    }

    // [offset, offset + bytes) lies in the file and off the metadata.
    bool usable(uint64_t offset, uint64_t bytes) const {
        return ip_.range_in_file(offset, bytes) && !on_metadata(offset, offset + bytes);
    }

    // L1 entry `i`'s table and every cluster it names: checked (`drop` false), or each loses one
    // reference, the table last (`drop` true).
    Status for_each_reference(uint32_t i, bool drop) {
        const uint64_t l2 = l1_[i] & QCOW2_L1E_OFFSET_MASK;
        if (l2 == 0)
            return Status::Ok;
        const uint64_t cs = ip_.cluster_size();
        if ((l2 & (cs - 1)) != 0 || !usable(l2, cs)) {
            ReasonText r;
            r.add("L2 table offset ").hex(l2).add(" unaligned, past the end of the image file or on metadata (L1 index: ")
                .hex(i).add(")");
            return corrupt(r);
        }
        if (const Status st = ip_.read_table(l2, l2_, ip_.l2_entries()); st != Status::Ok)
            return st;
        for (uint64_t j = 0; j < ip_.l2_entries(); j += entry_words_) {
            const uint64_t e = l2_[j];
            if (data_ != nullptr) {
                // A data-file cluster: not in this file and without a refcount (only checked here:
                // empty_tables discards it). qemu reads no compressed cluster from such an image.
                if ((e & QCOW_OFLAG_COMPRESSED) || (e & QCOW2_L2E_OFFSET_MASK & (cs - 1)) != 0) {
                    ReasonText r;
                    r.add("Cluster offset ").hex(e & QCOW2_L2E_OFFSET_MASK)
                        .add(" compressed or unaligned in an image with a data file (L2 offset: ").hex(l2)
                        .add(", L2 index: ").hex(j / entry_words_).add(")");
                    return corrupt(r);
                }
                continue;
            }
            uint64_t offset = 0, bytes = 0;
            if (e & QCOW_OFLAG_COMPRESSED) {
                qcow2_compressed_extent(e, ip_.cluster_bits(), &offset, &bytes);
            } else {
                offset = e & QCOW2_L2E_OFFSET_MASK;
                bytes = offset == 0 ? 0 : cs;
            }
            if (bytes == 0)
                continue; // unallocated, or a zero cluster without a host cluster
            if (!drop) {
                // A compressed cluster's last sector may run past the end of the file (qemu's
                // compressed writes leave it so); its first byte must lie inside.
                const bool ok = (e & QCOW_OFLAG_COMPRESSED) ? usable(offset, 1) && !on_metadata(offset, offset + bytes)
                                                            : (offset & (cs - 1)) == 0 && usable(offset, cs);
                if (!ok) {
                    ReasonText r;
                    r.add("Cluster offset ").hex(offset)
                        .add(" unaligned, past the end of the image file or on metadata (L2 offset: ").hex(l2)
                        .add(", L2 index: ").hex(j / entry_words_).add(")");
                    return corrupt(r);
                }
                continue;
            }
            if (const Status st = ip_.free_clusters(offset, bytes, true); st != Status::Ok)
                return dropped(st, offset);
        }
        if (!drop)
            return Status::Ok;
        if (const Status st = ip_.free_clusters(l2, cs, false); st != Status::Ok)
            return dropped(st, l2);
        return Status::Ok;
    }

    Status dropped(Status st, uint64_t offset) {
        if (st != Status::Invalid)
            return st;
        ReasonText r;
        r.add("Referenced cluster ").hex(offset).add(" has refcount 0");
        return corrupt(r);
    }

    // Data-file images: each L2 table zeroed and flushed, then the data-file clusters it named
    // discarded in runs of adjacent clusters (clipped to the data file); the data file flushed last.
    Status empty_tables() {
        const uint64_t cs = ip_.cluster_size();
        auto* zeros = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cs), 64));
        if (zeros == nullptr)
            return Status::NoMemory;
        __builtin_memset(zeros, 0, static_cast<size_t>(cs));
        Status st = Status::Ok;
        for (uint32_t i = 0; st == Status::Ok && i < ip_.header().l1_size; ++i) {
            const uint64_t l2 = l1_[i] & QCOW2_L1E_OFFSET_MASK;
            if (l2 == 0)
                continue;
            if ((st = ip_.read_table(l2, l2_, ip_.l2_entries())) != Status::Ok ||
                (st = ip_.write(l2, zeros, static_cast<size_t>(cs))) != Status::Ok ||
                (st = host_.flush(*req_.image)) != Status::Ok)
                break;
            uint64_t run = 0, run_len = 0; // a run of adjacent data clusters, in bytes
            for (uint64_t j = 0; j <= ip_.l2_entries(); j += entry_words_) {
                const uint64_t e = j < ip_.l2_entries() ? l2_[j] : 0;
                const uint64_t offset = e & QCOW2_L2E_OFFSET_MASK;
                // Offset 0 is a data-file cluster too where OFLAG_COPIED says so (qemu's
                // qcow2_get_cluster_type: data-file clusters always have refcount 1).
                const bool allocated = offset != 0 || (e & QCOW_OFLAG_COPIED) != 0;
                if (allocated && run_len != 0 && run + run_len == offset) {
                    run_len += cs;
                    continue;
                }
                discard_data(run, run_len);
                run = offset;
                run_len = allocated ? cs : 0;
            }
        }
        alloc_.deallocate(zeros, static_cast<size_t>(cs));
        if (st != Status::Ok)
            return st;
        return host_.flush(*data_);
    }

    // qemu's pdiscard on the data file: advisory, clipped to the file.
    void discard_data(uint64_t offset, uint64_t bytes) {
        if (bytes == 0 || offset >= data_len_)
            return;
        (void)data_->discard(offset, bytes < data_len_ - offset ? bytes : data_len_ - offset);
    }

    // Zeros over the active L1 table, DISCARD_ZERO_CHUNK bytes per request.
    Status zero_l1() {
        const uint64_t bytes = uint64_t{ip_.header().l1_size} * 8;
        const uint64_t chunk = bytes < DISCARD_ZERO_CHUNK ? bytes : DISCARD_ZERO_CHUNK;
        if (chunk == 0)
            return Status::Ok;
        auto* zeros = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(chunk), 64));
        if (zeros == nullptr)
            return Status::NoMemory;
        __builtin_memset(zeros, 0, static_cast<size_t>(chunk));
        Status st = Status::Ok;
        for (uint64_t done = 0; st == Status::Ok && done < bytes;) {
            const uint64_t n = bytes - done < chunk ? bytes - done : chunk;
            st = ip_.write(ip_.header().l1_table_offset + done, zeros, static_cast<size_t>(n));
            done += n;
        }
        alloc_.deallocate(zeros, static_cast<size_t>(chunk));
        return st;
    }

    const guest::EditRequest& req_;
    guest::EditHost& host_;
    guest::Allocator& alloc_;
    Qcow2Inplace ip_;
    uint64_t* l1_ = nullptr;
    uint64_t l1_bytes_ = 0;
    uint64_t* l2_ = nullptr;
    SnapshotRanges snapshots_;
    BitmapRanges bitmaps_; // persistent bitmaps' directory, tables and data clusters (they stay)
    guest::BlockDevice* data_ = nullptr; // the external data file, when the image has one
    uint64_t data_len_ = 0;
    uint64_t entry_words_ = 1; // 2 with extended L2 entries (offset word, subcluster bitmap)
    uint64_t* blocks_ = nullptr; // refcount blocks' cluster indexes, sorted
    uint64_t blocks_bytes_ = 0;
    uint64_t nblocks_ = 0;
};

} // namespace

Status empty_by_discard(const guest::EditRequest& req, guest::EditHost& host) {
    DiscardEmpty d(req, host);
    return d.run();
}

} // namespace instar::qcow2
