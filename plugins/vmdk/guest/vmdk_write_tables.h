// The grain tables a VMDK writer updates, cached a few at a time (qemu's L2 cache): the changed
// part of a table is written back, to its primary and its redundant copy, when it leaves the cache
// or at finish.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vmdk {

// qemu's new extents have 512 entries per grain table (vmdk_init_extent's num_gtes_per_gt).
inline constexpr uint32_t VMDK_WRITE_GTES = 512;
inline constexpr size_t VMDK_WRITE_GT_BYTES = VMDK_WRITE_GTES * 4;
// Tables held at once (qemu's L2_CACHE_SIZE): in-order writes finish a 32 MiB table before the next.
inline constexpr size_t VMDK_WRITE_GT_CACHE = 16;

// Where one grain table lives: its extent file and its two copies' byte offsets.
struct TableRef {
    guest::BlockDevice* dev;
    uint64_t extent;  // the extent's index (identifies the table together with `table`)
    uint64_t table;   // the table's index in the grain directory
    uint64_t primary; // byte offset of the table the grain directory names
    uint64_t backup;  // byte offset of its copy the redundant directory names
};

class GrainTableCache {
public:
    // Takes VMDK_WRITE_GT_CACHE tables from `alloc`; false when it is exhausted.
    bool init(guest::Allocator& alloc);
    void release(guest::Allocator& alloc);

    // The entry `index` of the table `ref` (loaded from its primary copy on a miss, after writing
    // back the table it replaces).
    guest::Status get(const TableRef& ref, uint32_t index, uint32_t* value);
    // Sets an entry of a table `get` has just loaded.
    guest::Status set(const TableRef& ref, uint32_t index, uint32_t value);
    // Writes back every changed table.
    guest::Status flush();

private:
    struct Slot {
        TableRef ref;
        bool valid;
        bool dirty;
        uint32_t lo, hi; // the changed entries [lo, hi): only they are written back, so the file
                         // system allocates what qemu's 4-byte entry writes allocate
        uint64_t used; // last use, for replacing the least recently used
        uint8_t* bytes;
    };
    guest::Status slot_for(const TableRef& ref, Slot** out);
    static guest::Status write_back(Slot& s);

    Slot slots_[VMDK_WRITE_GT_CACHE] = {};
    uint8_t* memory_ = nullptr;
    uint64_t clock_ = 0;
};

} // namespace instar::vmdk
