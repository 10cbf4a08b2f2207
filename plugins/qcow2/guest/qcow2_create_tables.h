// L1 and L2 tables of a new qcow2 image, laid out as qemu's qcow2_co_truncate does: the exact-size
// L1 (qcow2_grow_l1_table), metadata preallocation (preallocate_co / qcow2_alloc_host_offset) and
// falloc/full preallocation (a refcount area, then contiguous data, then L2 tables).
#pragma once

#include "qcow2_create_alloc.h"

#include <instar/guest/create_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// qemu's file protocol writes zeros over a file's first block when it grows from empty
// (file-posix.c allocate_first_block): 4 KiB, or one sector below that length.
inline constexpr uint64_t QCOW2_FILE_FIRST_BLOCK = 4096;
inline constexpr uint64_t QCOW2_SECTOR = 512;
// Zeros written per request when qemu writes a new (empty) L1 table (up to 32 MiB).
inline constexpr size_t QCOW2_CREATE_ZERO_CHUNK = 64u << 10;
// L2 tables held at once: qemu links a slice's data only after it has allocated the next slice's
// table, so the previous table and the current one are the only ones ever touched.
inline constexpr size_t QCOW2_CREATE_L2_SLOTS = 2;
// L2 mappings one qcow2_alloc_host_offset call can return: one per handle_alloc before the next
// L2 table or a refcount block breaks contiguity (at most two in practice).
inline constexpr size_t QCOW2_CREATE_MAX_METAS = 8;

class Qcow2Tables {
public:
    Qcow2Tables(Qcow2Alloc& a, guest::Allocator& alloc, bool extended_l2);
    ~Qcow2Tables();
    Qcow2Tables(const Qcow2Tables&) = delete;
    Qcow2Tables& operator=(const Qcow2Tables&) = delete;

    int64_t init();
    // qemu's size_to_l1: L1 entries covering `size` bytes.
    uint64_t size_to_l1(uint64_t size) const;
    int64_t grow_l1(uint64_t min_size);
    // With a data file (set_data_file), `mode` and `target` give the data file's final length
    // qemu's way: Metadata as a hole, Falloc/Full filled (preallocate_co's truncate).
    int64_t prealloc_metadata(uint64_t new_length, guest::Prealloc mode = guest::Prealloc::Metadata,
                              guest::CreateTarget* target = nullptr);
    // Data clusters live in `data` (host offset = guest offset, no refcounts); nullptr: in the image.
    void set_data_file(guest::BlockDevice* data) { data_ = data; }
    // Grows the data file to `length` as qemu's file protocol does (its first block allocated when it
    // grows from empty).
    int64_t grow_data_file(uint64_t length, guest::Prealloc mode, guest::CreateTarget& target);
    // Falloc and Full: `target` gets the data area's length (with `mode`) before the L2 tables.
    int64_t prealloc_data(uint64_t new_length, guest::Prealloc mode, guest::CreateTarget& target);
    // Writes the L2 tables still held.
    int64_t flush();
    // Zeros into the image (dev nullptr) or into `dev` (the data file).
    int64_t write_zeros(uint64_t offset, uint64_t len, guest::BlockDevice* dev = nullptr);

    uint32_t l1_size() const { return static_cast<uint32_t>(l1_size_); }
    uint64_t l1_offset() const { return l1_offset_; }

private:
    friend class Qcow2Writer;
    struct Slot {
        uint64_t l1_index = UINT64_MAX;
        uint64_t offset = 0;
        uint8_t* buf = nullptr;
        bool dirty = false;
    };
    struct Meta {
        uint64_t guest;
        uint64_t host;
        uint64_t clusters;
        uint64_t bytes; // guest bytes the request covers from `guest`; the rest of the last
                        // (sub)cluster is copy-on-write, which on a new image means zeros
    };

    int64_t get_cluster_table(uint64_t guest_offset, Slot** out);
    int64_t l2_allocate(uint64_t l1_index, Slot** out);
    int64_t write_slot(Slot& s);
    int64_t write_l1_entry(uint64_t l1_index, uint64_t value);
    int64_t alloc_host_offset(uint64_t offset, uint64_t* bytes, uint64_t* host, Meta* metas, size_t* count);
    int64_t link_l2(const Meta& m);

    Qcow2Alloc& a_;
    guest::Allocator& alloc_;
    guest::BlockDevice* data_ = nullptr;
    uint64_t data_len_ = 0; // the data file's length so far
    uint32_t cluster_bits_;
    uint32_t l2_entry_size_;
    uint32_t l2_bits_;
    uint64_t subcluster_size_;
    uint64_t l1_size_ = 0;
    uint64_t l1_offset_ = 0;
    uint64_t l1_group_ = UINT64_MAX; // which 64-entry sector l1_sector_ holds
    uint64_t l1_sector_[64] = {};
    uint64_t last_l2_ = UINT64_MAX; // highest L1 index with an L2 table
    Slot slots_[QCOW2_CREATE_L2_SLOTS];
};

} // namespace instar::qcow2
