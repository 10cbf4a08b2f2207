// qcow2 internal snapshot table entries: on-disk layout, parsed form, and the table walk for info.
#pragma once

#include "qcow2_header.h"
#include "qcow2_reader.h"

#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// Fixed part of a snapshot table entry (followed by extra data, id, name, padding to 8).
struct Qcow2SnapshotHeaderDisk {
    uint8_t l1_table_offset[8];
    uint8_t l1_size[4];
    uint8_t id_str_size[2];
    uint8_t name_size[2];
    uint8_t date_sec[4];
    uint8_t date_nsec[4];
    uint8_t vm_clock_nsec[8];
    uint8_t vm_state_size[4];
    uint8_t extra_data_size[4];
};
static_assert(sizeof(Qcow2SnapshotHeaderDisk) == 40, "qcow2 snapshot header layout");

// The extra data fields qemu knows (a prefix of extra_data_size bytes).
struct Qcow2SnapshotExtraDisk {
    uint8_t vm_state_size_large[8]; // replaces vm_state_size when present
    uint8_t disk_size[8];
    uint8_t icount[8]; // since qemu 5.0; all ones = unknown
};
static_assert(sizeof(Qcow2SnapshotExtraDisk) == 24, "qcow2 snapshot extra data layout");

struct Qcow2Snapshot {
    uint64_t l1_table_offset = 0;
    uint32_t l1_size = 0;
    uint16_t id_str_size = 0;
    uint16_t name_size = 0;
    uint32_t date_sec = 0;
    uint32_t date_nsec = 0;
    uint64_t vm_clock_nsec = 0;
    uint64_t vm_state_size = 0;
    uint32_t extra_data_size = 0;
    bool has_disk_size = false;
    uint64_t disk_size = 0;
    bool has_icount = false;
    uint64_t icount = 0;
};

// Parses the fixed header (`hdr`, 40 bytes) and the known prefix of the extra data (`extra`,
// `extra_len` = min(extra_data_size, 24) bytes).
Status qcow2_snapshot_parse(const uint8_t* hdr, size_t hdr_len, const uint8_t* extra, size_t extra_len,
                            Qcow2Snapshot* out);

// Reads the whole snapshot table (bounded by QCOW_MAX_SNAPSHOTS_SIZE and the file) and reports each
// entry as it goes: on a non-Ok status the caller must discard the whole report.
Status qcow2_snapshots_report(const Qcow2Header& h, MetadataReader& reader, guest::Allocator& alloc,
                              guest::InfoSink& sink);

} // namespace instar::qcow2
