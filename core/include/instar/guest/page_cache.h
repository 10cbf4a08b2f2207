// A small least-recently-used cache of pages of an on-disk table (VHD and VHDX block allocation
// tables): memory bounded by PAGES x PAGE_ENTRIES entries whatever the table's size, one device
// read per miss. Freestanding and header-only, like the rest of the guest SDK.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

template <typename Entry, uint32_t PAGE_ENTRIES, uint32_t PAGES>
class TablePageCache {
    static_assert(PAGE_ENTRIES > 0 && PAGES > 0);

public:
    struct Page {
        uint64_t index; // page number (entry / PAGE_ENTRIES)
        uint64_t used;  // last-use stamp, 0 = empty
        Entry entries[PAGE_ENTRIES];
    };

    // Allocates the (empty) pages; false when the allocator cannot.
    bool init(Allocator& alloc) {
        pages_ = static_cast<Page*>(alloc.allocate(sizeof(Page) * PAGES, alignof(Page)));
        if (pages_ == nullptr)
            return false;
        for (uint32_t i = 0; i < PAGES; ++i) {
            pages_[i].index = 0;
            pages_[i].used = 0;
        }
        return true;
    }

    void release(Allocator& alloc) {
        if (pages_ != nullptr)
            alloc.deallocate(pages_, sizeof(Page) * PAGES);
        pages_ = nullptr;
    }

    // Entry `index` (< table_entries) of the table. On a miss, load(first, count, entries) fills
    // entries[0..count) with the table's entries from `first` on, count = the page's share of the
    // table; a failed load leaves the page empty and its Status is returned.
    template <typename Load>
    Status get(uint64_t index, uint64_t table_entries, Entry* out, Load&& load) {
        if (index >= table_entries)
            return Status::Corrupt;
        const uint64_t page = index / PAGE_ENTRIES;
        const uint64_t slot = index % PAGE_ENTRIES;
        ++clock_;
        Page* victim = &pages_[0];
        for (uint32_t i = 0; i < PAGES; ++i) {
            Page& pg = pages_[i];
            if (pg.used != 0 && pg.index == page) {
                pg.used = clock_;
                *out = pg.entries[slot];
                return Status::Ok;
            }
            if (pg.used < victim->used)
                victim = &pg;
        }
        const uint64_t first = page * PAGE_ENTRIES;
        const uint64_t left = table_entries - first;
        const uint64_t count = left < PAGE_ENTRIES ? left : PAGE_ENTRIES;
        victim->used = 0;
        if (const Status st = load(first, count, victim->entries); st != Status::Ok)
            return st;
        victim->index = page;
        victim->used = clock_;
        *out = victim->entries[slot];
        return Status::Ok;
    }

private:
    Page* pages_ = nullptr;
    uint64_t clock_ = 0; // 64 bits: never wraps
};

} // namespace instar::guest
