// Parsing and validation of the qcow2 header.
#include "qcow2_header.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"

namespace instar::qcow2 {

bool qcow2_table_offset_valid(const Qcow2Header& h, uint64_t offset, uint64_t entries, uint64_t entry_len) {
    uint64_t bytes = 0;
    uint64_t end = 0;
    if (mul_overflow(entries, entry_len, &bytes) || add_overflow(offset, bytes, &end) || end > QCOW2_MAX_VIRTUAL_SIZE)
        return false;
    return (offset & (h.cluster_size() - 1)) == 0;
}

namespace {

// The L1 index just past the end of the virtual disk (qemu's l1_vm_state_index).
uint64_t l1_entries_for(const Qcow2Header& h) {
    const bool extl2 = (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    const uint32_t l2_bits = h.cluster_bits - 3 - (extl2 ? 1 : 0);
    const uint32_t shift = h.cluster_bits + l2_bits; // at most 21 + 18 = 39
    const uint64_t per_entry = uint64_t{1} << shift;
    return h.size / per_entry + (h.size % per_entry ? 1 : 0);
}

Status check_features(const Qcow2Header& h) {
    if (h.incompatible_features & ~QCOW2_INCOMPAT_MASK)
        return Status::Unsupported;
    if (h.refcount_order > 6)
        return Status::Unsupported;
    if (h.compression_type > QCOW2_COMPRESSION_TYPE_ZSTD)
        return Status::Unsupported;
    const bool bit = (h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION) != 0;
    if (bit != (h.compression_type != QCOW2_COMPRESSION_TYPE_ZLIB))
        return Status::Corrupt; // the bit and the field must agree (spec, and qemu refuses)
    if ((h.incompatible_features & QCOW2_INCOMPAT_EXTL2) && h.cluster_bits < QCOW2_MIN_EXTL2_CLUSTER_BITS)
        return Status::Unsupported;
    if ((h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && !(h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE))
        return Status::Corrupt; // qemu: "data-file-raw requires a data file"
    if (h.crypt_method > QCOW_CRYPT_LUKS)
        return Status::Unsupported;
    return Status::Ok;
}

Status check_tables(const Qcow2Header& h) {
    if (h.size > QCOW2_MAX_VIRTUAL_SIZE)
        return Status::TooLarge;
    if (h.refcount_table_clusters > (QCOW_MAX_REFTABLE_SIZE >> h.cluster_bits))
        return Status::TooLarge;
    if (h.refcount_table_clusters == 0)
        return Status::Corrupt; // qemu: "Image does not contain a reference count table"
    if (!qcow2_table_offset_valid(h, h.refcount_table_offset, h.refcount_table_clusters, h.cluster_size()))
        return Status::Corrupt;
    if (h.nb_snapshots > QCOW_MAX_SNAPSHOTS)
        return Status::TooLarge;
    if (!qcow2_table_offset_valid(h, h.snapshots_offset, h.nb_snapshots, 40))
        return Status::Corrupt;
    if (h.l1_size > QCOW_MAX_L1_SIZE / 8)
        return Status::TooLarge;
    const uint64_t needed = l1_entries_for(h);
    if (needed > QCOW2_MAX_L1_VM_STATE_INDEX)
        return Status::TooLarge;
    if (h.l1_size < needed)
        return Status::Corrupt; // qemu: "L1 table is too small"
    if (!qcow2_table_offset_valid(h, h.l1_table_offset, h.l1_size, 8))
        return Status::Corrupt;
    return Status::Ok;
}

} // namespace

Status qcow2_header_parse(const Qcow2HeaderDisk& d, Qcow2Header* out) {
    Qcow2Header h;
    if (load_be32(d.magic) != QCOW_MAGIC)
        return Status::Corrupt;
    h.version = load_be32(d.version);
    if (h.version < 2 || h.version > 3)
        return Status::Unsupported;
    h.backing_file_offset = load_be64(d.backing_file_offset);
    h.backing_file_size = load_be32(d.backing_file_size);
    h.cluster_bits = load_be32(d.cluster_bits);
    if (h.cluster_bits < QCOW2_MIN_CLUSTER_BITS || h.cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return Status::Unsupported;
    h.size = load_be64(d.size);
    h.crypt_method = load_be32(d.crypt_method);
    h.l1_size = load_be32(d.l1_size);
    h.l1_table_offset = load_be64(d.l1_table_offset);
    h.refcount_table_offset = load_be64(d.refcount_table_offset);
    h.refcount_table_clusters = load_be32(d.refcount_table_clusters);
    h.nb_snapshots = load_be32(d.nb_snapshots);
    h.snapshots_offset = load_be64(d.snapshots_offset);
    if (h.version == 3) {
        h.incompatible_features = load_be64(d.incompatible_features);
        h.compatible_features = load_be64(d.compatible_features);
        h.autoclear_features = load_be64(d.autoclear_features);
        h.refcount_order = load_be32(d.refcount_order);
        h.header_length = load_be32(d.header_length);
        if (h.header_length < QCOW2_V3_MIN_HEADER_LENGTH || h.header_length > h.cluster_size())
            return Status::Corrupt;
        if (h.header_length > QCOW2_COMPRESSION_TYPE_OFFSET)
            h.compression_type = d.compression_type[0];
    }
    if (h.backing_file_offset > h.cluster_size())
        return Status::Corrupt; // qemu: "Invalid backing file offset"
    Status st = check_features(h);
    if (st == Status::Ok)
        st = check_tables(h);
    if (st != Status::Ok)
        return st;
    *out = h;
    return Status::Ok;
}

} // namespace instar::qcow2
