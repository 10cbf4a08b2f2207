// qcow2 persistent dirty bitmap directory entries: layout, parsed form, and the walk for info.
#pragma once

#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_reader.h"

#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

inline constexpr uint32_t BME_FLAG_IN_USE = 1u << 0;
inline constexpr uint32_t BME_FLAG_AUTO = 1u << 1;
inline constexpr uint32_t BME_RESERVED_FLAGS = ~(BME_FLAG_IN_USE | BME_FLAG_AUTO); // qemu's mask
inline constexpr uint8_t BT_DIRTY_TRACKING_BITMAP = 1;
// Bitmap table entries: a data cluster's offset, or 0 with the all-ones flag (qcow2 spec).
inline constexpr uint64_t BME_TABLE_ENTRY_RESERVED_MASK = 0xff000000000001feull;
inline constexpr uint64_t BME_TABLE_ENTRY_OFFSET_MASK = 0x00fffffffffffe00ull;
inline constexpr uint64_t BME_TABLE_ENTRY_FLAG_ALL_ONES = 1;

// Fixed part of a bitmap directory entry (followed by extra data, name, zero padding to 8).
struct Qcow2BitmapDirEntryDisk {
    uint8_t bitmap_table_offset[8];
    uint8_t bitmap_table_size[4];
    uint8_t flags[4];
    uint8_t type[1];
    uint8_t granularity_bits[1];
    uint8_t name_size[2];
    uint8_t extra_data_size[4];
};
static_assert(sizeof(Qcow2BitmapDirEntryDisk) == 24, "qcow2 bitmap directory entry layout");

struct Qcow2BitmapDirEntry {
    uint64_t bitmap_table_offset = 0;
    uint32_t bitmap_table_size = 0;
    uint32_t flags = 0;
    uint8_t type = 0;
    uint8_t granularity_bits = 0;
    uint16_t name_size = 0;
    uint32_t extra_data_size = 0;

    uint64_t granularity() const { return uint64_t{1} << granularity_bits; }
    // The entry's size in the directory, padded to 8.
    uint64_t entry_size() const {
        return (sizeof(Qcow2BitmapDirEntryDisk) + uint64_t{extra_data_size} + name_size + 7) & ~uint64_t{7};
    }
};

// Parses the fixed part and applies qemu's per-entry checks (check_dir_entry, and "Bitmap extra
// data is not supported"); `virtual_size` is the disk size the bitmap must cover.
Status qcow2_bitmap_entry_parse(const Qcow2Header& h, uint64_t virtual_size, const uint8_t* data, size_t len,
                                Qcow2BitmapDirEntry* out);

// Walks the directory the bitmaps extension points at and reports qemu's "bitmaps" list (name,
// granularity, flags) to the sink, inside an already opened list.
Status qcow2_bitmaps_report(const Qcow2Header& h, const Qcow2Extensions& ext, uint64_t virtual_size,
                            MetadataReader& reader, guest::InfoSink& sink);

// A pass over the directory with no output, so errors surface before anything is reported.
Status qcow2_bitmaps_check(const Qcow2Header& h, const Qcow2Extensions& ext, uint64_t virtual_size,
                           MetadataReader& reader);

} // namespace instar::qcow2
