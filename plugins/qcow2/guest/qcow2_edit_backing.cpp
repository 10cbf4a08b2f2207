// qcow2: the backing-file switch of `rebase` (and of `commit`) (EditCommand::SetBacking, docs/rebase.md).
//
// qemu's qcow2_change_backing_file rewrites the whole header cluster through qcow2_update_header:
// the header, qemu's extensions in its order (backing format, data file, crypto header, feature
// table, bitmaps, then the unknown ones in reverse order of reading), the end marker and the backing
// file name right after it. A name longer than the old one is therefore "relocated" to wherever the
// new layout puts it; one that does not fit in cluster 0 is -ENOSPC. The same layout here, written
// with one write of cluster 0: a kill before it leaves the old header, after it the new one.
#include "qcow2_create_header.h"
#include "qcow2_bytes.h"
#include "qcow2_edit.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_limits.h"
#include "qcow2_reader.h"

#include <instar/guest/edit_backing.h>

namespace instar::qcow2 {

namespace {

using guest::EditHost;
using guest::EditRequest;

// qemu's bound on header extensions it keeps as unknown: it keeps them all, but each takes at least
// 8 bytes of cluster 0 (at most 2 MiB), so this many always suffices.
inline constexpr size_t MAX_UNKNOWN_EXTENSIONS = QCOW2_MAX_HEADER_EXTENSIONS;
// qemu's autoclear bits (QCOW2_AUTOCLEAR_MASK): a read-write open clears every other one.
inline constexpr uint64_t QCOW2_AUTOCLEAR_KNOWN = QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW;

Status refuse(EditHost& host, const char* text, Status st) { return guest::edit_refuse(host, text, st); }

bool is_known(uint32_t magic) {
    return magic == QCOW2_EXT_MAGIC_END || magic == QCOW2_EXT_MAGIC_BACKING_FORMAT ||
           magic == QCOW2_EXT_MAGIC_FEATURE_TABLE || magic == QCOW2_EXT_MAGIC_BITMAPS ||
           magic == QCOW2_EXT_MAGIC_CRYPTO_HEADER || magic == QCOW2_EXT_MAGIC_DATA_FILE;
}

// The unknown extensions in cluster[start, end) (already validated by qcow2_extensions_parse),
// stored last-read first as qemu's QLIST_INSERT_HEAD list holds them.
size_t collect_unknown(const uint8_t* cluster, uint64_t start, uint64_t end, Qcow2RawExtension* out) {
    size_t count = 0;
    uint64_t offset = start;
    while (offset + sizeof(Qcow2ExtensionDisk) <= end && count < MAX_UNKNOWN_EXTENSIONS) {
        const uint32_t magic = load_be32(cluster + offset);
        const uint32_t len = load_be32(cluster + offset + 4);
        offset += sizeof(Qcow2ExtensionDisk);
        if (magic == QCOW2_EXT_MAGIC_END || len > end - offset)
            break;
        if (!is_known(magic))
            out[count++] = Qcow2RawExtension{magic, cluster + offset, len};
        offset = round_up8(offset + len);
    }
    for (size_t i = 0; i < count / 2; ++i) {
        const Qcow2RawExtension t = out[i];
        out[i] = out[count - 1 - i];
        out[count - 1 - i] = t;
    }
    return count;
}

// A C string for the header writer: `len` bytes copied, NUL added. Refuses embedded NULs.
char* arena_string(Allocator& alloc, const uint8_t* p, size_t len) {
    char* s = static_cast<char*>(alloc.allocate(len + 1, 1));
    if (s == nullptr)
        return nullptr;
    for (size_t i = 0; i < len; ++i)
        s[i] = static_cast<char>(p[i]);
    s[len] = 0;
    return s;
}

} // namespace

guest::Status edit_backing(const EditRequest& req, EditHost& host) {
    if (!req.writable)
        return refuse(host, "the image was not opened for writing", Status::Invalid);
    // The arguments (trusted, still checked: they size what we write).
    guest::SetBackingArgs a{};
    if (req.args_len < sizeof a)
        return refuse(host, "truncated set-backing arguments", Status::Invalid);
    __builtin_memcpy(&a, req.args, sizeof a);
    if (a.name_len > req.args_len - sizeof a || a.format_len > req.args_len - sizeof a - a.name_len)
        return refuse(host, "truncated set-backing arguments", Status::Invalid);
    const uint8_t* name = req.args + sizeof a;
    const uint8_t* format = name + a.name_len;
    const bool detach = (a.flags & guest::SET_BACKING_DETACH) != 0;
    for (size_t i = 0; i < a.name_len; ++i)
        if (name[i] == 0)
            return refuse(host, guest::SET_BACKING_INVALID, Status::Invalid);
    for (size_t i = 0; i < a.format_len; ++i)
        if (format[i] == 0)
            return refuse(host, guest::SET_BACKING_INVALID, Status::Invalid);

    // The header, checked as the reader checks it.
    BlockDevice& dev = *req.image;
    Qcow2HeaderDisk disk{};
    Status st = read_zero_padded(dev, 0, reinterpret_cast<uint8_t*>(&disk), sizeof disk);
    if (st != Status::Ok)
        return refuse(host, "could not read the qcow2 header", st);
    Qcow2Header h;
    HeaderProblem problem;
    if ((st = qcow2_header_parse(disk, &h, &problem)) != Status::Ok) {
        host.reason(problem.text, problem.len);
        return st;
    }
    if (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        return refuse(host, "qcow2: Image is corrupt; cannot be opened read/write", Status::Corrupt);
    if (h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return refuse(host, "the image is dirty (lazy refcounts): run 'check -r all' first", Status::Unsupported);
    // An encrypted image (the host unlocked its key first, as qemu's open does): the header is laid
    // out again with its crypto header extension; no data is read or written, so no key is needed.
    const size_t cluster_size = static_cast<size_t>(h.cluster_size());
    ArenaBuffer old_cluster(*req.allocator, cluster_size);
    ArenaBuffer new_cluster(*req.allocator, cluster_size);
    if (!old_cluster.ok() || !new_cluster.ok())
        return refuse(host, "out of memory for the header cluster", Status::NoMemory);
    if ((st = read_zero_padded(dev, 0, old_cluster.data(), cluster_size)) != Status::Ok)
        return refuse(host, "could not read the qcow2 header cluster", st);
    Qcow2Extensions ext;
    if ((st = qcow2_extensions_parse(h, old_cluster.data(), h.header_length, h.extensions_end(), &ext)) != Status::Ok)
        return refuse(host, "qcow2 header extensions are corrupt", st);
    const bool data_file = (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    if (data_file && !ext.has_data_file)
        return refuse(host, "'data-file' is required for this image", Status::Corrupt);

    // qemu's own checks (qcow2_change_backing_file): a raw external data file alone is the content.
    if (!detach && data_file && (h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
        return refuse(host, guest::SET_BACKING_INVALID, Status::Invalid);
    if (!detach && a.name_len > QCOW2_MAX_BACKING_FILE_NAME)
        return refuse(host, guest::SET_BACKING_INVALID, Status::Invalid);

    Qcow2HeaderState s;
    s.version = h.version;
    s.cluster_bits = h.cluster_bits;
    s.size = h.size;
    s.l1_size = h.l1_size;
    s.l1_table_offset = h.l1_table_offset;
    s.refcount_table_offset = h.refcount_table_offset;
    s.refcount_table_clusters = h.refcount_table_clusters;
    s.incompatible_features = h.incompatible_features;
    s.compatible_features = h.compatible_features;
    s.autoclear_features = h.autoclear_features & QCOW2_AUTOCLEAR_KNOWN;
    s.refcount_order = h.refcount_order;
    s.compression_type = h.compression_type;
    s.crypt_method = h.crypt_method;
    s.nb_snapshots = h.nb_snapshots;
    s.snapshots_offset = h.snapshots_offset;
    if (h.version >= 3 && h.header_length > sizeof(Qcow2HeaderDisk)) {
        s.unknown_fields = old_cluster.data() + sizeof(Qcow2HeaderDisk);
        s.unknown_fields_len = h.header_length - sizeof(Qcow2HeaderDisk);
    }
    if (!detach) {
        s.backing_file = arena_string(*req.allocator, name, a.name_len);
        if (a.format_len > 0)
            s.backing_fmt = arena_string(*req.allocator, format, a.format_len);
        if (s.backing_file == nullptr || (a.format_len > 0 && s.backing_fmt == nullptr))
            return refuse(host, "out of memory for the backing file name", Status::NoMemory);
    }
    if (data_file) // qemu keeps the name only while the image uses an external data file
        s.data_file = arena_string(*req.allocator, reinterpret_cast<const uint8_t*>(ext.data_file), ext.data_file_len);
    s.has_crypto_header = ext.has_crypto_header;
    s.crypto_header_offset = ext.crypto_header_offset;
    s.crypto_header_length = ext.crypto_header_length;
    if (s.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) {
        s.nb_bitmaps = ext.nb_bitmaps;
        s.bitmap_directory_size = ext.bitmap_directory_size;
        s.bitmap_directory_offset = ext.bitmap_directory_offset;
    }
    const size_t unknown_bytes = MAX_UNKNOWN_EXTENSIONS * sizeof(Qcow2RawExtension);
    ArenaBuffer unknown(*req.allocator, unknown_bytes);
    if (!unknown.ok())
        return refuse(host, "out of memory for the header extensions", Status::NoMemory);
    auto* raw = reinterpret_cast<Qcow2RawExtension*>(unknown.data());
    s.unknown_extensions = raw;
    s.unknown_extension_count = collect_unknown(old_cluster.data(), h.header_length, h.extensions_end(), raw);

    if (!qcow2_build_header_cluster(s, new_cluster.data(), cluster_size))
        return refuse(host, guest::SET_BACKING_NO_SPACE, Status::TooLarge);
    // The one write that switches the image; then make it durable.
    if ((st = dev.write(0, new_cluster.data(), cluster_size)) != Status::Ok)
        return refuse(host, "could not write the qcow2 header", st);
    if ((st = host.flush(dev)) != Status::Ok)
        return refuse(host, "could not flush the qcow2 header", st);
    return Status::Ok;
}

} // namespace instar::qcow2
