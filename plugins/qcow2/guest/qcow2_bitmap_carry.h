// Persistent bitmaps carried through an in-place edit as qemu-img's open and close carry them:
// its read-write open loads every bitmap, the command runs, and the close stores each consistent
// one anew (new data clusters and table, a new directory, the header switched, the old ones
// freed; an inconsistent one is left as it is). Used by resize (qcow2_edit_resize.cpp), where
// qcow2_co_truncate first refuses an inconsistent bitmap (qcow2_truncate_bitmaps_check: "Bitmap
// '%s' is inconsistent and cannot be used") and the bitmaps follow the new size (hbitmap_truncate:
// bits past a shorter end dropped, a longer end's new bits clear), and by snapshot -c / -d
// (qcow2_edit_snapshot.cpp). The work is the bitmap command's store (qcow2_edit_bitmap.cpp), run on
// the image the command has open.
//
// Crash consistency: the header write that switches to the new directory also writes the disk
// size the bitmaps are stored for, so no header pairs a size with tables sized for another disk
// (qemu refuses to load a consistent bitmap whose table size does not match it).
#pragma once

#include "qcow2_inplace.h"

#include <instar/guest/edit_api.h>

#include <stdint.h>

namespace instar::qcow2 {

class Qcow2BitmapCarry {
public:
    Qcow2BitmapCarry(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& img);
    ~Qcow2BitmapCarry();
    Qcow2BitmapCarry(const Qcow2BitmapCarry&) = delete;
    Qcow2BitmapCarry& operator=(const Qcow2BitmapCarry&) = delete;

    // Loads the directory and every consistent bitmap's table (the image as the command found
    // it). refuse_inconsistent (resize): an inconsistent bitmap gets qemu's two lines on stderr
    // and Unsupported; nothing is written.
    Status load(bool refuse_inconsistent);
    // Whether the image has bitmaps to carry (after load).
    bool present() const;
    // Refuses (a reason, TooLarge) a disk size at which a bitmap would exceed qemu's bounds
    // (BME_MAX_PHYS_SIZE, BME_MAX_TABLE_SIZE); before anything is written.
    Status check(uint64_t disk_size);
    // Whether some bitmap's table has another number of entries at `disk_size`.
    bool tables_change(uint64_t disk_size) const;
    // Stores every consistent bitmap for `disk_size`; the header switch writes it as the disk size.
    Status store(uint64_t disk_size);
    // Drops every bitmap, consistent or not (amend's downgrade to v2): the header no longer names
    // a directory, then the directory, tables and data clusters are freed.
    Status drop();

private:
    guest::Allocator& alloc_;
    void* edit_; // the bitmap command's editor (qcow2_edit_bitmap.cpp), in the arena
};

} // namespace instar::qcow2
