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

// Builds a HeaderProblem from text and numbers; a missing `why` ignores everything.
class Why {
public:
    explicit Why(HeaderProblem* p) : p_(p) {
        if (p_) p_->len = 0;
    }
    Why& s(const char* text) {
        for (size_t i = 0; text[i] != 0; ++i)
            put(text[i]);
        return *this;
    }
    Why& u(uint64_t v, uint32_t base = 10) {
        char digits[20];
        size_t n = 0;
        do {
            const uint64_t d = v % base;
            digits[n++] = static_cast<char>(d < 10 ? '0' + d : 'a' + d - 10);
            v /= base;
        } while (v != 0);
        while (n > 0)
            put(digits[--n]);
        return *this;
    }
    Status fail(Status st) { return st; }

private:
    void put(char c) {
        if (p_ && p_->len < sizeof p_->text - 1)
            p_->text[p_->len++] = c;
    }
    HeaderProblem* p_;
};

Status check_features(const Qcow2Header& h, Why& why) {
    if (h.incompatible_features & ~QCOW2_INCOMPAT_MASK) // qemu names bits its feature table lacks so
        return why.s("Unsupported qcow2 feature(s): Unknown incompatible feature: ")
            .u(h.incompatible_features & ~QCOW2_INCOMPAT_MASK, 16)
            .fail(Status::Unsupported);
    if (h.refcount_order > 6)
        return why.s("Reference count entry width too large; may not exceed 64 bits").fail(Status::Unsupported);
    if (h.compression_type > QCOW2_COMPRESSION_TYPE_ZSTD)
        return why.s("qcow2: unknown compression type: ").u(h.compression_type).fail(Status::Unsupported);
    const bool bit = (h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION) != 0;
    if (bit != (h.compression_type != QCOW2_COMPRESSION_TYPE_ZLIB)) // the bit and the field must agree
        return why.s(bit ? "qcow2: Compression type incompatible feature bit must not be set"
                         : "qcow2: Compression type incompatible feature bit must be set")
            .fail(Status::Corrupt);
    if ((h.incompatible_features & QCOW2_INCOMPAT_EXTL2) && h.cluster_bits < QCOW2_MIN_EXTL2_CLUSTER_BITS)
        return why.s("Unsupported subcluster size: ").u((uint64_t{1} << h.cluster_bits) / 32).fail(Status::Unsupported);
    if ((h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && !(h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE))
        return why.s("data-file-raw requires a data file").fail(Status::Corrupt);
    if (h.crypt_method > QCOW_CRYPT_LUKS)
        return why.s("Unsupported encryption method ").u(h.crypt_method).fail(Status::Unsupported);
    return Status::Ok;
}

// qemu's qcow2_validate_table, with its "<table> too large" / "<table> offset invalid".
Status check_table(const Qcow2Header& h, uint64_t offset, uint64_t entries, uint64_t entry_len, uint64_t max_bytes,
                   const char* name, Why& why) {
    if (entries > max_bytes / entry_len)
        return why.s(name).s(" too large").fail(Status::TooLarge);
    if (!qcow2_table_offset_valid(h, offset, entries, entry_len))
        return why.s(name).s(" offset invalid").fail(Status::Corrupt);
    return Status::Ok;
}

Status check_tables(const Qcow2Header& h, Why& why) {
    if (h.size > QCOW2_MAX_VIRTUAL_SIZE) // qemu keeps sizes in int64
        return why.s("virtual size ").u(h.size).s(" exceeds instar's QCOW2_MAX_VIRTUAL_SIZE (2^63 - 1)")
            .fail(Status::TooLarge);
    if (h.refcount_table_clusters == 0)
        return why.s("Image does not contain a reference count table").fail(Status::Corrupt);
    Status st = check_table(h, h.refcount_table_offset, h.refcount_table_clusters, h.cluster_size(),
                            QCOW_MAX_REFTABLE_SIZE, "Reference count table", why);
    if (st == Status::Ok)
        st = check_table(h, h.snapshots_offset, h.nb_snapshots, 40, 40ull * QCOW_MAX_SNAPSHOTS, "Snapshot table", why);
    if (st == Status::Ok)
        st = check_table(h, h.l1_table_offset, h.l1_size, 8, QCOW_MAX_L1_SIZE, "Active L1 table", why);
    if (st != Status::Ok)
        return st;
    const uint64_t needed = l1_entries_for(h);
    if (needed > QCOW2_MAX_L1_VM_STATE_INDEX)
        return why.s("Image is too big").fail(Status::TooLarge);
    if (h.l1_size < needed)
        return why.s("L1 table is too small").fail(Status::Corrupt);
    return Status::Ok;
}

} // namespace

Status qcow2_header_parse(const Qcow2HeaderDisk& d, Qcow2Header* out, HeaderProblem* problem) {
    Why why(problem);
    Qcow2Header h;
    if (load_be32(d.magic) != QCOW_MAGIC)
        return why.s("Image is not in qcow2 format").fail(Status::Corrupt);
    h.version = load_be32(d.version);
    if (h.version < 2 || h.version > 3)
        return why.s("Unsupported qcow2 version ").u(h.version).fail(Status::Unsupported);
    h.backing_file_offset = load_be64(d.backing_file_offset);
    h.backing_file_size = load_be32(d.backing_file_size);
    h.cluster_bits = load_be32(d.cluster_bits);
    if (h.cluster_bits < QCOW2_MIN_CLUSTER_BITS || h.cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return why.s("Unsupported cluster size: 2^").u(h.cluster_bits).fail(Status::Unsupported);
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
        if (h.header_length < QCOW2_V3_MIN_HEADER_LENGTH)
            return why.s("qcow2 header too short").fail(Status::Corrupt);
        if (h.header_length > h.cluster_size())
            return why.s("qcow2 header exceeds cluster size").fail(Status::Corrupt);
        if (h.header_length > QCOW2_COMPRESSION_TYPE_OFFSET)
            h.compression_type = d.compression_type[0];
    }
    if (h.backing_file_offset > h.cluster_size())
        return why.s("Invalid backing file offset").fail(Status::Corrupt);
    Status st = check_features(h, why);
    if (st == Status::Ok)
        st = check_tables(h, why);
    if (st != Status::Ok)
        return st;
    *out = h;
    return Status::Ok;
}

} // namespace instar::qcow2
