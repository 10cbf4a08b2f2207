// qcow2 open for reading: header, extensions, data file, encryption, and the L1 table to read
// (the active one, or an internal snapshot's found by id, then by name).
#include "qcow2_bytes.h"
#include "qcow2_crypto_window.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_limits.h"
#include "qcow2_read_internal.h"
#include "qcow2_reader.h"
#include "qcow2_snapshot.h"

#include "luks_format.h"

#include <instar/guest/arena_new.h>

namespace instar::qcow2 {
namespace {

// The first of qemu's qcow2_do_open checks that the header fails, in qemu's order and words.
void header_reason(const Qcow2HeaderDisk& d, ReasonText& r) {
    const uint32_t version = load_be32(d.version);
    const uint32_t cb = load_be32(d.cluster_bits);
    if (load_be32(d.magic) != QCOW_MAGIC) {
        r.add("Image is not in qcow2 format");
        return;
    }
    if (version < 2 || version > 3) {
        r.add("Unsupported qcow2 version ").dec(version);
        return;
    }
    if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS) {
        r.add("Unsupported cluster size: 2^").dec(cb);
        return;
    }
    const uint64_t cs = uint64_t{1} << cb;
    const bool v3 = version == 3;
    const uint32_t header_length = v3 ? load_be32(d.header_length) : QCOW2_V2_HEADER_LENGTH;
    const uint64_t incompat = v3 ? load_be64(d.incompatible_features) : 0;
    const uint64_t autoclear = v3 ? load_be64(d.autoclear_features) : 0;
    const uint32_t refcount_order = v3 ? load_be32(d.refcount_order) : 4;
    const uint8_t ctype = header_length > QCOW2_COMPRESSION_TYPE_OFFSET ? d.compression_type[0] : 0;
    const uint32_t crypt = load_be32(d.crypt_method);
    if (v3 && header_length < QCOW2_V3_MIN_HEADER_LENGTH)
        r.add("qcow2 header too short");
    else if (header_length > cs)
        r.add("qcow2 header exceeds cluster size");
    else if (load_be64(d.backing_file_offset) > cs)
        r.add("Invalid backing file offset");
    else if (incompat & ~QCOW2_INCOMPAT_MASK)
        r.add("Unsupported qcow2 feature(s): Unknown incompatible feature: ").hex_bare(incompat & ~QCOW2_INCOMPAT_MASK);
    else if (refcount_order > 6)
        r.add("Reference count entry width too large; may not exceed 64 bits");
    else if (ctype > QCOW2_COMPRESSION_TYPE_ZSTD)
        r.add("qcow2: unknown compression type: ").dec(ctype);
    else if (ctype != QCOW2_COMPRESSION_TYPE_ZLIB && !(incompat & QCOW2_INCOMPAT_COMPRESSION))
        r.add("qcow2: Compression type incompatible feature bit must be set");
    else if (ctype == QCOW2_COMPRESSION_TYPE_ZLIB && (incompat & QCOW2_INCOMPAT_COMPRESSION))
        r.add("qcow2: Compression type incompatible feature bit must not be set");
    else if (crypt > QCOW_CRYPT_LUKS)
        r.add("Unsupported encryption method ").dec(crypt);
    else if ((incompat & QCOW2_INCOMPAT_EXTL2) && cb < QCOW2_MIN_EXTL2_CLUSTER_BITS)
        r.add("Unsupported subcluster size: ").dec(cs / 32);
    else if ((autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && !(incompat & QCOW2_INCOMPAT_DATA_FILE))
        r.add("data-file-raw requires a data file");
    if (r.size() > 0)
        return;
    Qcow2Header h; // the fields the table checks use
    h.cluster_bits = cb;
    h.size = load_be64(d.size);
    h.incompatible_features = incompat;
    const uint32_t rt_clusters = load_be32(d.refcount_table_clusters);
    const uint32_t nb_snapshots = load_be32(d.nb_snapshots);
    const uint32_t l1_size = load_be32(d.l1_size);
    const bool extl2 = (incompat & QCOW2_INCOMPAT_EXTL2) != 0;
    const uint32_t span_bits = cb + cb - (extl2 ? 4 : 3);
    const uint64_t needed = (h.size >> span_bits) + ((h.size & ((uint64_t{1} << span_bits) - 1)) ? 1 : 0);
    if (h.size > QCOW2_MAX_VIRTUAL_SIZE)
        r.add("Image size is too large"); // qemu's int64 size cannot hold it
    else if (rt_clusters > (QCOW_MAX_REFTABLE_SIZE >> cb))
        r.add("Reference count table too large");
    else if (!qcow2_table_offset_valid(h, load_be64(d.refcount_table_offset), rt_clusters, cs))
        r.add("Reference count table offset invalid");
    else if (rt_clusters == 0)
        r.add("Image does not contain a reference count table");
    else if (nb_snapshots > QCOW_MAX_SNAPSHOTS)
        r.add("Snapshot table too large");
    else if (!qcow2_table_offset_valid(h, load_be64(d.snapshots_offset), nb_snapshots, 40))
        r.add("Snapshot table offset invalid");
    else if (l1_size > QCOW_MAX_L1_SIZE / 8)
        r.add("Active L1 table too large");
    else if (needed > QCOW2_MAX_L1_VM_STATE_INDEX)
        r.add("Image is too big");
    else if (l1_size < needed)
        r.add("L1 table is too small");
    else if (!qcow2_table_offset_valid(h, load_be64(d.l1_table_offset), l1_size, 8))
        r.add("Active L1 table offset invalid");
    else
        r.add("qcow2 header is invalid");
}

Status header_failure(guest::ReasonSink* reasons, Status st, const Qcow2HeaderDisk& d) {
    ReasonText r;
    header_reason(d, r);
    r.send(reasons);
    return st;
}

struct Found {
    bool by_id = false, by_name = false, by_both = false;
    Qcow2Snapshot id, name, both;
};

// Walks the whole table (as qemu reads it at open) and keeps the first entry whose id equals
// `want_id`, the first whose name equals `want_name`, and the first with both (a nullptr matches
// nothing, and `both` then needs only the other).
Status scan_snapshots(const Qcow2Header& h, MetadataReader& reader, const char* want_id, const char* want_name,
                      Found* f) {
    uint64_t offset = h.snapshots_offset;
    uint8_t text[256]; // ids and names are compared in pieces
    for (uint32_t i = 0; i < h.nb_snapshots; ++i) {
        offset = round_up8(offset); // offset - start stays below QCOW_MAX_SNAPSHOTS_SIZE
        uint8_t hdr[sizeof(Qcow2SnapshotHeaderDisk)];
        Status st = reader.read(offset, hdr, sizeof hdr);
        if (st != Status::Ok)
            return st;
        offset += sizeof hdr;
        const uint32_t extra_size = load_be32(hdr + 36);
        const size_t known = extra_size < sizeof(Qcow2SnapshotExtraDisk) ? extra_size : sizeof(Qcow2SnapshotExtraDisk);
        uint8_t extra[sizeof(Qcow2SnapshotExtraDisk)] = {};
        if (extra_size <= QCOW_MAX_SNAPSHOT_EXTRA_DATA && (st = reader.read(offset, extra, known)) != Status::Ok)
            return st;
        Qcow2Snapshot s;
        if ((st = qcow2_snapshot_parse(hdr, sizeof hdr, extra, known, &s)) != Status::Ok)
            return st;
        offset += s.extra_data_size;
        // Compare the id with `want_id`, then the name with `want_name`, a piece at a time.
        const uint16_t sizes[2] = {s.id_str_size, s.name_size};
        const char* const wants[2] = {want_id, want_name};
        bool equals[2] = {false, false};
        for (int which = 0; which < 2; ++which) {
            const char* const want = wants[which];
            bool equal = want != nullptr;
            bool ended = false; // a NUL in the stored string ended it
            size_t pos = 0;
            while (equal && pos < sizes[which]) {
                const size_t n = sizes[which] - pos < sizeof text ? sizes[which] - pos : sizeof text;
                if ((st = reader.read(offset + pos, text, n)) != Status::Ok)
                    return st;
                if (!ended) {
                    const size_t len = bounded_strlen(text, n);
                    for (size_t k = 0; k < len && equal; ++k)
                        equal = want[pos + k] != 0 && static_cast<uint8_t>(want[pos + k]) == text[k];
                    if (equal && len < n) {
                        ended = true;
                        equal = want[pos + len] == 0;
                    }
                }
                pos += n;
            }
            if (!ended && equal)
                equal = want[pos] == 0;
            equals[which] = equal;
            offset += sizes[which];
        }
        if (equals[0] && !f->by_id) {
            f->by_id = true;
            f->id = s;
        }
        if (equals[1] && !f->by_name) {
            f->by_name = true;
            f->name = s;
        }
        if ((want_id == nullptr || equals[0]) && (want_name == nullptr || equals[1]) && !f->by_both) {
            f->by_both = true;
            f->both = s;
        }
        if (offset - h.snapshots_offset > QCOW_MAX_SNAPSHOTS_SIZE)
            return Status::TooLarge; // qemu: "Snapshot table is too big"
    }
    return Status::Ok;
}

// qemu's qcow2_validate_table for a snapshot's L1 table: TooLarge, Invalid (bad offset) or Ok.
Status snapshot_l1_check(const Qcow2Header& h, const Qcow2Snapshot& s) {
    if (s.l1_size > QCOW_MAX_L1_SIZE / 8)
        return Status::TooLarge;
    return qcow2_table_offset_valid(h, s.l1_table_offset, s.l1_size, 8) ? Status::Ok : Status::Invalid;
}

Status pick_snapshot(const guest::OpenRequest& req, const Qcow2Header& h, Qcow2Snapshot* out) {
    ArenaBuffer window(*req.allocator, QCOW2_READ_WINDOW);
    if (!window.ok())
        return Status::NoMemory;
    MetadataReader reader(*req.image, window.data(), window.size());
    Found f;
    const char* const want_id = req.snapshot_exact ? req.snapshot_id : req.snapshot;
    const char* const want_name = req.snapshot_exact ? req.snapshot_name : req.snapshot;
    if (const Status st = scan_snapshots(h, reader, want_id, want_name, &f); st != Status::Ok)
        return fail(req.reasons, st, "Snapshot table is corrupt");
    if (req.snapshot_exact) {
        // qcow2_snapshot_load_tmp with find_snapshot_by_id_and_name: one lookup, no fallback.
        if (!f.by_both || (want_id == nullptr && want_name == nullptr))
            return fail(req.reasons, Status::Invalid, "Failed to load snapshot: Can't find snapshot");
        const Status st = snapshot_l1_check(h, f.both);
        if (st == Status::TooLarge)
            return fail(req.reasons, st, "Failed to load snapshot: Snapshot L1 table too large");
        if (st != Status::Ok)
            return fail(req.reasons, Status::Corrupt, "Failed to load snapshot: Snapshot L1 table offset invalid");
        *out = f.both;
        return Status::Ok;
    }
    // bdrv_snapshot_load_tmp_by_id_or_name: by id first; on "not found" or "invalid" by name.
    Status st = Status::Invalid;
    if (f.by_id) {
        st = snapshot_l1_check(h, f.id);
        if (st == Status::Ok)
            *out = f.id;
    }
    if (st == Status::Invalid && f.by_name) {
        st = snapshot_l1_check(h, f.name);
        if (st == Status::Ok)
            *out = f.name;
    }
    if (st == Status::TooLarge)
        return fail(req.reasons, st, "Failed to load snapshot: Snapshot L1 table too large");
    if (st == Status::Invalid && (f.by_id || f.by_name))
        return fail(req.reasons, Status::Corrupt, "Failed to load snapshot: Snapshot L1 table offset invalid");
    if (st != Status::Ok)
        return fail(req.reasons, Status::Invalid, "Failed to load snapshot: Can't find snapshot");
    return Status::Ok;
}

} // namespace

Status qcow2_read_setup(const guest::OpenRequest& req, Qcow2ReadSetup* out) {
    BlockDevice& dev = *req.image;
    Qcow2HeaderDisk disk;
    // SAFETY: Qcow2HeaderDisk is byte arrays only (alignment 1), filled as raw bytes.
    Status st = read_zero_padded(dev, 0, reinterpret_cast<uint8_t*>(&disk), sizeof disk);
    if (st != Status::Ok)
        return st;
    Qcow2Header h;
    if ((st = qcow2_header_parse(disk, &h)) != Status::Ok)
        return header_failure(req.reasons, st, disk);

    // Extensions (data file name, crypto header); they end before the backing name, in cluster 0.
    Qcow2Extensions ext;
    const uint64_t ext_end = h.extensions_end() > sizeof disk ? h.extensions_end() : sizeof disk;
    {
        ArenaBuffer cluster(*req.allocator, static_cast<size_t>(ext_end));
        if (!cluster.ok())
            return Status::NoMemory;
        if ((st = read_zero_padded(dev, 0, cluster.data(), cluster.size())) != Status::Ok)
            return st;
        if ((st = qcow2_extensions_parse(h, cluster.data(), h.header_length, h.extensions_end(), &ext)) != Status::Ok)
            return fail(req.reasons, st, "qcow2 header extensions are corrupt");
        if ((h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) && !ext.has_data_file)
            return fail(req.reasons, Status::Corrupt, "'data-file' is required for this image");
    }
    if (h.crypt_method != QCOW_CRYPT_NONE && req.secret == nullptr) // what qemu-img says when no secret is given
        return fail(req.reasons, Status::Unsupported, "Parameter 'encrypt.key-secret' is required for cipher");

    Qcow2ReadSetup s;
    if (h.crypt_method != QCOW_CRYPT_NONE) {
        s.cipher = guest::arena_new<luks::SectorCipher>(*req.allocator);
        if (s.cipher == nullptr)
            return Status::NoMemory;
        if (h.crypt_method == QCOW_CRYPT_LUKS) {
            // The LUKS header lives in the crypto header extension's clusters; sectors by host offset.
            if (!ext.has_crypto_header)
                return fail(req.reasons, Status::Corrupt, "Could not read encryption header");
            luks::LuksHeader lh;
            if ((st = unlock_in_extension(dev, ext, *req.allocator, req.secret, req.secret_len, &lh, s.cipher,
                                          req.reasons, nullptr, req.qemu_version)) != Status::Ok)
                return st;
            s.crypt_physical_offset = true;
        } else {
            // qemu's crypto/block-qcow.c: the secret's first 16 bytes (zero-padded) are the AES-128
            // key; CBC with plain64 IVs of guest sectors.
            uint8_t key[16] = {};
            for (size_t i = 0; i < 16 && i < req.secret_len && req.secret[i] != 0; ++i)
                key[i] = req.secret[i];
            luks::LuksHeader lh;
            lh.cipher_name = "aes";
            lh.cipher_mode = "cbc";
            lh.ivgen_alg = "plain64";
            st = s.cipher->init(lh, key, sizeof key);
            __builtin_memset(key, 0, sizeof key);
            if (st != Status::Ok)
                return st;
            s.crypt_physical_offset = false;
        }
    }
    s.image = &dev;
    s.data = &dev;
    Qcow2Geometry& g = s.geometry;
    g.version = h.version;
    g.cluster_bits = h.cluster_bits;
    g.extl2 = (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    g.l2_entry_bytes = g.extl2 ? 16 : 8;
    g.l2_bits = h.cluster_bits - (g.extl2 ? 4 : 3);
    g.subcluster_bits = g.extl2 ? h.cluster_bits - 5 : h.cluster_bits;
    g.data_file = (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    if (g.data_file) {
        if (req.file_count < 1 || req.files == nullptr || req.files[0] == nullptr)
            return fail(req.reasons, Status::Invalid, "'data-file' is required for this image");
        s.data = req.files[0];
        s.data_device = 1;
    }
    s.compression_type = h.compression_type;
    s.virtual_size = h.size & ~uint64_t{511}; // qemu's whole sectors; a snapshot keeps the current size
    g.l1_offset = h.l1_table_offset;
    g.l1_size = h.l1_size;
    const char* table = "L1 table";
    if (req.snapshot != nullptr) {
        Qcow2Snapshot snap;
        if ((st = pick_snapshot(req, h, &snap)) != Status::Ok)
            return st;
        g.l1_offset = snap.l1_table_offset;
        g.l1_size = snap.l1_size;
        table = "Snapshot L1 table";
    }
    if (g.l1_size > 0 && !qcow2_region_in_file(dev.size(), g.l1_offset, uint64_t{g.l1_size} * 8, h.cluster_size())) {
        ReasonText r;
        r.add(table).add(" at offset ").hex(g.l1_offset).add(" is past the end of the image file").send(req.reasons);
        return Status::Corrupt;
    }
    *out = s;
    return Status::Ok;
}

} // namespace instar::qcow2
