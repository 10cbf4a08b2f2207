// The persistent-bitmap reading the in-place code shares: the bitmap command's directory and table
// loads (qcow2_edit_bitmap.cpp), the metadata ranges writers keep off (qcow2_bitmap_ranges.cpp) and
// the writes' dirtying of enabled bitmaps (qcow2_bitmap_dirty.cpp). Each applies qemu's checks the
// same way: the directory (bitmap_list_load: entries parsed and kept inside the directory, which
// they must fill exactly) and every table entry (check_table_entry). info's report
// (qcow2_bitmap.cpp) reads through the metadata reader and keeps its own walk.
#pragma once

#include "qcow2_bitmap.h"
#include "qcow2_extensions.h"
#include "qcow2_limits.h"

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// Whether the bitmaps extension's directory is within qemu's size bound and inside the file.
inline bool qcow2_bitmap_dir_placed(const Qcow2Extensions& ext, uint64_t file_len) {
    return ext.bitmap_directory_size <= QCOW2_MAX_BITMAP_DIRECTORY_SIZE && ext.bitmap_directory_offset <= file_len &&
           ext.bitmap_directory_size <= file_len - ext.bitmap_directory_offset;
}

// Walks the `nb` entries of the directory `dir` (`dsize` bytes the caller read): each is parsed
// with qemu's per-entry checks and must lie inside the directory; visit(entry, bytes, offset)
// sees it (`bytes`: the entry's first byte; a non-Ok Status stops the walk and is returned).
// Returns the parse's Status for an invalid entry (Corrupt, or Unsupported for extra data), Corrupt
// for one that overruns the directory or entries that do not fill it exactly (qemu: the directory
// holds more or fewer than nb_bitmaps); *stop (optional) is the offset the walk stopped at.
template <class Visit>
Status qcow2_bitmap_dir_walk(const Qcow2Header& h, const uint8_t* dir, uint64_t dsize, uint32_t nb, Visit visit,
                             uint64_t* stop = nullptr) {
    uint64_t off = 0;
    Status st = Status::Ok;
    for (uint32_t i = 0; i < nb && st == Status::Ok; ++i) {
        Qcow2BitmapDirEntry e;
        if (dsize - off < sizeof(Qcow2BitmapDirEntryDisk)) {
            st = Status::Corrupt;
            break;
        }
        st = qcow2_bitmap_entry_parse(h, h.size, dir + off, static_cast<size_t>(dsize - off), &e);
        if (st == Status::Ok && e.entry_size() > dsize - off)
            st = Status::Corrupt;
        if (st == Status::Ok)
            st = visit(e, dir + off, off);
        if (st == Status::Ok)
            off += e.entry_size();
    }
    if (st == Status::Ok && off != dsize)
        st = Status::Corrupt;
    if (stop != nullptr)
        *stop = off;
    return st;
}

// qemu's check_table_entry: no reserved bits; the all-ones flag only on an entry without a data
// cluster; a data cluster inside the image file (cluster_in_file(offset), the caller's test).
template <class InFile>
bool qcow2_bitmap_table_entry_ok(uint64_t e, InFile cluster_in_file) {
    const uint64_t at = e & BME_TABLE_ENTRY_OFFSET_MASK;
    if ((e & BME_TABLE_ENTRY_RESERVED_MASK) != 0)
        return false;
    return at == 0 || ((e & BME_TABLE_ENTRY_FLAG_ALL_ONES) == 0 && cluster_in_file(at));
}

// Sets bits [first, last] of a bitmap data cluster `c` (qcow2's layout: bit i is bit i % 8 of
// byte i / 8).
inline void qcow2_bitmap_set_bits(uint8_t* c, uint64_t first, uint64_t last) {
    uint64_t in = first;
    for (; in <= last && in % 8 != 0; ++in)
        c[in / 8] |= static_cast<uint8_t>(1u << (in % 8));
    if (in + 8 <= last + 1) {
        __builtin_memset(c + in / 8, 0xff, static_cast<size_t>((last + 1 - in) / 8));
        in += (last + 1 - in) / 8 * 8;
    }
    for (; in <= last; ++in)
        c[in / 8] |= static_cast<uint8_t>(1u << (in % 8));
}

} // namespace instar::qcow2
