// Named limits on untrusted qcow2 metadata, each with the reason for its value.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// qemu refuses clusters below 512 bytes (spec minimum) and above 2 MiB (its implementation limit).
inline constexpr uint32_t QCOW2_MIN_CLUSTER_BITS = 9;
inline constexpr uint32_t QCOW2_MAX_CLUSTER_BITS = 21;
// Extended L2 splits a cluster into 32 subclusters that must still be >= 512 bytes.
inline constexpr uint32_t QCOW2_MIN_EXTL2_CLUSTER_BITS = 14;
// The active L1 table: qemu's QCOW_MAX_L1_SIZE (32 MiB), enough for 2 EiB with 2 MiB clusters.
inline constexpr uint64_t QCOW_MAX_L1_SIZE = 32u << 20;
// qemu's "Image is too big" bound on the L1 index of the end of the disk (it is an int there).
inline constexpr uint64_t QCOW2_MAX_L1_VM_STATE_INDEX = 0x7fffffff;
// qemu's QCOW_MAX_REFTABLE_SIZE (8 MiB): the refcount table qemu will load.
inline constexpr uint64_t QCOW_MAX_REFTABLE_SIZE = 8u << 20;
// The virtual size must fit qemu's int64 byte length.
inline constexpr uint64_t QCOW2_MAX_VIRTUAL_SIZE = 0x7fffffffffffffffull;
// qemu limits the backing file name to 1023 bytes (spec: "Must not be longer than 1023 bytes").
inline constexpr uint32_t QCOW2_MAX_BACKING_FILE_NAME = 1023;
// qemu reads the backing format into a 16-byte C string, so 15 characters at most.
inline constexpr uint32_t QCOW2_MAX_BACKING_FORMAT = 15;
// qemu has no limit on the data file name; PATH_MAX (4096 with its NUL) is the longest name the host
// could open anyway, and it equals the info channel's string bound.
inline constexpr uint32_t QCOW2_MAX_DATA_FILE_NAME = 4095;
// qemu defines 5 extension types, each at most once; 4096 leaves room for unknown ones while
// bounding the walk over a 2 MiB header cluster (which could otherwise hold 262144 empty ones).
inline constexpr uint32_t QCOW2_MAX_HEADER_EXTENSIONS = 4096;
// qemu's QCOW_MAX_SNAPSHOTS: snapshot ids are small integers and qemu refuses more.
inline constexpr uint32_t QCOW_MAX_SNAPSHOTS = 65536;
// qemu's QCOW_MAX_SNAPSHOTS_SIZE: the snapshot table qemu will load (64 MiB).
inline constexpr uint64_t QCOW_MAX_SNAPSHOTS_SIZE = 64u << 20;
// qemu's QCOW_MAX_SNAPSHOT_EXTRA_DATA: per-entry extra data qemu keeps (it refuses more).
inline constexpr uint32_t QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024;
// qemu's QCOW2_MAX_BITMAPS: bitmaps per image.
inline constexpr uint32_t QCOW2_MAX_BITMAPS = 65535;
// qemu's QCOW2_MAX_BITMAP_DIRECTORY_SIZE (1024 bytes per bitmap): the directory qemu will load.
inline constexpr uint64_t QCOW2_MAX_BITMAP_DIRECTORY_SIZE = 1024ull * QCOW2_MAX_BITMAPS;
// qemu's BME_MAX_NAME_SIZE: bitmap names up to 1023 bytes.
inline constexpr uint32_t BME_MAX_NAME_SIZE = 1023;
// qemu's BME_MAX_TABLE_SIZE and BME_MAX_PHYS_SIZE: bitmap tables qemu accepts (128 Mi entries,
// 512 MiB of bitmap data).
inline constexpr uint64_t BME_MAX_TABLE_SIZE = 0x8000000;
inline constexpr uint64_t BME_MAX_PHYS_SIZE = 0x20000000;
// qemu's BME_MIN/MAX_GRANULARITY_BITS: 512 bytes to 2 GiB per bitmap bit.
inline constexpr uint32_t BME_MIN_GRANULARITY_BITS = 9;
inline constexpr uint32_t BME_MAX_GRANULARITY_BITS = 31;
// Window of the buffered metadata reader: one read per 64 KiB of snapshot table or bitmap directory.
inline constexpr size_t QCOW2_READ_WINDOW = 64u << 10;

} // namespace instar::qcow2
