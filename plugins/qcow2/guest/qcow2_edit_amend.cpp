// qcow2: `amend`: changing format options in place (EditCommand::Amend, docs/amend.md), in the
// order and with the refusals of qemu's qcow2_amend_options: the option checks in qemu's table
// order, upgrade, (LUKS key slots), refcount width, data file settings, header rewrite, backing
// check, lazy refcounts, size, downgrade.
//
// encrypt.* keys change the key slots of the LUKS header in the image's crypto clusters with the
// luks plugin's key-slot code (luks_keyslots.h), crash-safe as it is for a luks image. What instar
// cannot do yet is refused before anything is written: dirty images (qemu repairs them when it
// opens them for writing) and downgrading an image with persistent bitmaps.
//
// Crash consistency: the header cluster is written once, at the end; a refcount width change
// writes and flushes its new structures before its header switch and frees the old ones after; a
// downgrade first turns zero clusters into data clusters (zeros written and flushed before the L2
// entry that points at them), which a v3 image reads the same, and switches the version last.
#include "qcow2_bitmap_carry.h"
#include "qcow2_bytes.h"
#include "qcow2_create_header.h"
#include "qcow2_edit.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_inplace.h"
#include "qcow2_limits.h"
#include "qcow2_reader.h"
#include "qcow2_snapshot.h"

#include "luks_keyslots.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/edit_amend.h>
#include <instar/guest/edit_resize.h>

namespace instar::qcow2 {

namespace {

using guest::AmendArgs;
using guest::EditHost;
using guest::EditRequest;

// Header extensions qemu keeps without knowing them: at most what fits in a 2 MiB header cluster
// (8 bytes each), and far more than any real image has.
inline constexpr size_t AMEND_MAX_UNKNOWN_EXTENSIONS = 256;
// L2 entry bits (qcow2 spec).
inline constexpr uint64_t L2E_ZERO = 1;
inline constexpr uint64_t L2E_OFFSET_MASK = 0x00fffffffffffe00ull;
inline constexpr uint64_t L2E_COMPRESSED = 1ull << 62;
inline constexpr uint64_t L1E_OFFSET_MASK = 0x00fffffffffffe00ull;
// The backing file name's buffer: qemu's limit, plus the NUL.
inline constexpr size_t BACKING_NAME_BUF = QCOW2_MAX_BACKING_FILE_NAME + 1;

size_t cstr_len(const char* s) {
    size_t n = 0;
    while (s[n] != 0)
        ++n;
    return n;
}

// One line of refusal text.
// A Qcow2Inplace in the arena, opened on the image of `file_length` bytes (NoMemory when the arena
// is exhausted; close() releases what it holds).
Status open_inplace(const EditRequest& req, EditHost& host, uint64_t file_length, Qcow2Inplace** out) {
    void* p = req.allocator->allocate(sizeof(Qcow2Inplace), alignof(Qcow2Inplace));
    if (p == nullptr)
        return Status::NoMemory;
    *out = new (p) Qcow2Inplace();
    return (*out)->open(*req.image, file_length, *req.allocator, &host);
}

Status refuse(EditHost& host, const char* text, Status st = Status::Unsupported) {
    host.reason(text, cstr_len(text));
    return st;
}

// g_strcmp0 on (pointer, length) strings, nullptr sorting first.
bool same_string(const char* a, size_t alen, const char* b, size_t blen) {
    if (a == nullptr || b == nullptr)
        return a == b;
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; ++i)
        if (a[i] != b[i])
            return false;
    return true;
}

bool equals(const char* s, size_t len, const char* lit) {
    return same_string(s, len, lit, cstr_len(lit));
}

// The image's state as qemu's BDRVQcow2State holds it, and the header cluster it came from.
struct State {
    Qcow2Header h;
    Qcow2Extensions ext;
    uint8_t* cluster = nullptr; // cluster_size + BACKING_NAME_BUF bytes (zero-padded)
    size_t cluster_size = 0;
    const char* backing_file = nullptr;
    size_t backing_file_len = 0;
    char backing_name[BACKING_NAME_BUF] = {};
    char backing_fmt[QCOW2_MAX_BACKING_FORMAT + 1] = {};
    bool has_backing_fmt = false;
    const char* data_file = nullptr; // image_data_file (nullptr: no extension written)
    size_t data_file_len = 0;
    Qcow2RawExtension unknown[AMEND_MAX_UNKNOWN_EXTENSIONS];
    size_t unknown_count = 0;
    uint8_t* written = nullptr; // the header cluster as it is on disk now
    size_t unknown_fields_len = 0; // v3 header bytes past 112 when opened (at cluster + 112)
    bool header_pending = false; // qemu would have rewritten the header by now
    uint64_t file_length = 0;    // the image file's length now (new clusters grow it)
};

// The extensions qemu does not know (it keeps them in order), in cluster[start, end).
Status collect_unknown_extensions(State& s, uint64_t start, uint64_t end) {
    uint64_t offset = start;
    while (offset + sizeof(Qcow2ExtensionDisk) <= end) {
        const uint32_t magic = load_be32(s.cluster + offset);
        const uint32_t len = load_be32(s.cluster + offset + 4);
        offset += sizeof(Qcow2ExtensionDisk);
        if (magic == QCOW2_EXT_MAGIC_END || len > end - offset)
            return Status::Ok; // the parser has checked the framing already
        switch (magic) {
        case QCOW2_EXT_MAGIC_BACKING_FORMAT:
        case QCOW2_EXT_MAGIC_FEATURE_TABLE:
        case QCOW2_EXT_MAGIC_BITMAPS:
        case QCOW2_EXT_MAGIC_CRYPTO_HEADER:
        case QCOW2_EXT_MAGIC_DATA_FILE:
            break;
        default:
            if (s.unknown_count == AMEND_MAX_UNKNOWN_EXTENSIONS)
                return Status::TooLarge;
            s.unknown[s.unknown_count++] = {magic, s.cluster + offset, len};
        }
        offset = round_up8(offset + len);
    }
    return Status::Ok;
}

Status load_state(const EditRequest& req, EditHost& host, State& s) {
    Qcow2HeaderDisk disk;
    Status st = read_zero_padded(*req.image, 0, reinterpret_cast<uint8_t*>(&disk), sizeof disk);
    if (st != Status::Ok)
        return st;
    HeaderProblem why;
    st = qcow2_header_parse(disk, &s.h, &why);
    if (st != Status::Ok) {
        if (why.len)
            host.reason(why.text, why.len);
        return st;
    }
    s.cluster_size = static_cast<size_t>(s.h.cluster_size()); // at most 2 MiB (QCOW2_MAX_CLUSTER_BITS)
    const size_t buf_len = s.cluster_size + BACKING_NAME_BUF;
    s.cluster = static_cast<uint8_t*>(req.allocator->allocate(buf_len, 16));
    s.written = static_cast<uint8_t*>(req.allocator->allocate(s.cluster_size, 16));
    if (s.cluster == nullptr || s.written == nullptr)
        return Status::NoMemory;
    // Only the bytes the file has: an output device's size() is its limit, not its length.
    const size_t have = req.image_length < buf_len ? static_cast<size_t>(req.image_length) : buf_len;
    if (have != 0 && (st = req.image->read(0, s.cluster, have)) != Status::Ok)
        return st;
    __builtin_memset(s.cluster + have, 0, buf_len - have);
    __builtin_memcpy(s.written, s.cluster, s.cluster_size);
    s.file_length = req.image_length;
    if (s.h.version >= 3 && s.h.header_length > sizeof(Qcow2HeaderDisk))
        s.unknown_fields_len = s.h.header_length - sizeof(Qcow2HeaderDisk);
    if (s.h.backing_file_offset != 0) {
        if (s.h.backing_file_offset > s.cluster_size || s.h.backing_file_size > QCOW2_MAX_BACKING_FILE_NAME)
            return refuse(host, "Invalid backing file offset or size", Status::Corrupt);
    }
    const uint64_t ext_end = s.h.extensions_end();
    if (s.h.header_length < ext_end) {
        st = qcow2_extensions_parse(s.h, s.cluster, s.h.header_length, ext_end, &s.ext);
        if (st != Status::Ok)
            return refuse(host, "Could not read the qcow2 header extensions", st);
        st = collect_unknown_extensions(s, s.h.header_length, ext_end);
        if (st != Status::Ok)
            return refuse(host, "too many unknown qcow2 header extensions (AMEND_MAX_UNKNOWN_EXTENSIONS)", st);
    }
    if (s.h.backing_file_offset != 0) {
        // qemu reads the name into a buffer and stops at a NUL.
        const uint8_t* name = s.cluster + s.h.backing_file_offset;
        s.backing_file_len = bounded_strlen(name, s.h.backing_file_size);
        __builtin_memcpy(s.backing_name, name, s.backing_file_len);
        s.backing_file = s.backing_name;
    }
    if (s.ext.backing_format != nullptr) {
        s.has_backing_fmt = true;
        __builtin_memcpy(s.backing_fmt, s.ext.backing_format, s.ext.backing_format_len);
    }
    if (s.ext.has_data_file) {
        s.data_file = s.ext.data_file;
        s.data_file_len = s.ext.data_file_len;
    }
    // An image opened for writing loses the autoclear bits qemu does not know.
    s.h.autoclear_features &= QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    return Status::Ok;
}

bool has_data_file(const State& s) { return (s.h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0; }

// qcow2_update_header: the whole header cluster, written only when it differs from the file's.
// Called once, at the end (see update_header).
Status write_header(const EditRequest& req, EditHost& host, State& s) {
    Qcow2HeaderState hs;
    hs.version = s.h.version;
    hs.cluster_bits = s.h.cluster_bits;
    hs.size = s.h.size;
    hs.l1_size = s.h.l1_size;
    hs.l1_table_offset = s.h.l1_table_offset;
    hs.refcount_table_offset = s.h.refcount_table_offset;
    hs.refcount_table_clusters = s.h.refcount_table_clusters;
    hs.incompatible_features = s.h.incompatible_features;
    hs.compatible_features = s.h.compatible_features;
    hs.autoclear_features = s.h.autoclear_features;
    hs.refcount_order = s.h.refcount_order;
    hs.compression_type = s.h.compression_type;
    hs.crypt_method = s.h.crypt_method;
    hs.nb_snapshots = s.h.nb_snapshots;
    hs.snapshots_offset = s.h.snapshots_offset;
    if (s.ext.has_crypto_header) {
        hs.has_crypto_header = true;
        hs.crypto_header_offset = s.ext.crypto_header_offset;
        hs.crypto_header_length = s.ext.crypto_header_length;
    }
    hs.nb_bitmaps = s.ext.nb_bitmaps;
    hs.bitmap_directory_size = s.ext.bitmap_directory_size;
    hs.bitmap_directory_offset = s.ext.bitmap_directory_offset;
    if (s.unknown_fields_len != 0) {
        hs.unknown_fields = s.cluster + sizeof(Qcow2HeaderDisk);
        hs.unknown_fields_len = s.unknown_fields_len;
    }
    hs.unknown_extensions = s.unknown;
    hs.unknown_extension_count = s.unknown_count;
    // NUL-terminated copies for the builder.
    char data_file[QCOW2_MAX_DATA_FILE_NAME + 1];
    if (has_data_file(s) && s.data_file != nullptr) {
        __builtin_memcpy(data_file, s.data_file, s.data_file_len);
        data_file[s.data_file_len] = 0;
        hs.data_file = data_file;
    }
    if (s.has_backing_fmt)
        hs.backing_fmt = s.backing_fmt;
    if (s.backing_file != nullptr)
        hs.backing_file = s.backing_name;

    uint8_t* buf = static_cast<uint8_t*>(req.allocator->allocate(s.cluster_size, 16));
    if (buf == nullptr)
        return Status::NoMemory;
    // The file's header now: the in-place layer may have moved the refcount table meanwhile.
    Status st = read_zero_padded(*req.image, 0, s.written, s.cluster_size);
    if (st != Status::Ok) {
        req.allocator->deallocate(buf, s.cluster_size);
        return st;
    }
    if (!qcow2_build_header_cluster(hs, buf, s.cluster_size)) {
        st = refuse(host, "Failed to update the image header: No space left on device", Status::TooLarge);
    } else if (__builtin_memcmp(buf, s.written, s.cluster_size) != 0) {
        st = req.image->write(0, buf, s.cluster_size);
        if (st == Status::Ok)
            st = host.flush(*req.image);
        if (st == Status::Ok)
            __builtin_memcpy(s.written, buf, s.cluster_size);
        else
            refuse(host, "Failed to update the image header: Input/output error", st);
    }
    req.allocator->deallocate(buf, s.cluster_size);
    return st;
}

// Where qemu calls qcow2_update_header, instar only notes it: the header is written once, when the
// command ends (done or refused past that point), so a kill leaves the old header or the new one,
// never one of qemu's intermediate ones. The result on disk is the same.
Status update_header(const EditRequest&, EditHost&, State& s) {
    s.header_pending = true;
    return Status::Ok;
}

// The snapshot table's entries, one at a time (the table is bounded as the reader bounds it).
struct SnapshotWalk {
    uint64_t offset;
    uint32_t left;
};

Status next_snapshot(const EditRequest& req, SnapshotWalk& w, Qcow2Snapshot* out) {
    uint8_t hdr[sizeof(Qcow2SnapshotHeaderDisk)];
    if (w.offset > req.image_length || req.image_length - w.offset < sizeof hdr)
        return Status::Corrupt;
    Status st = req.image->read(w.offset, hdr, sizeof hdr);
    if (st != Status::Ok)
        return st;
    const uint32_t extra_size = load_be32(hdr + 36);
    if (extra_size > QCOW_MAX_SNAPSHOT_EXTRA_DATA)
        return Status::Corrupt;
    uint8_t extra[sizeof(Qcow2SnapshotExtraDisk)] = {};
    const size_t extra_len = extra_size < sizeof extra ? extra_size : sizeof extra;
    if (req.image_length - w.offset - sizeof hdr < extra_len)
        return Status::Corrupt;
    if (extra_len != 0 && (st = req.image->read(w.offset + sizeof hdr, extra, extra_len)) != Status::Ok)
        return st;
    st = qcow2_snapshot_parse(hdr, sizeof hdr, extra, extra_len, out);
    if (st != Status::Ok)
        return st;
    uint64_t next = w.offset + sizeof hdr + extra_size + out->id_str_size + out->name_size;
    w.offset = round_up8(next);
    --w.left;
    return Status::Ok;
}

// qcow2_amend_helper_cb for one operation out of `total_ops`, as qemu projects the total work.
struct ProgressInfo {
    EditHost* host = nullptr;
    uint32_t total_ops = 0;
    uint32_t done_ops = 0;
    int last = -1;
    int64_t offset_completed = 0, last_work = 0;
    void report(int op, int64_t offset, int64_t work) {
        if (host == nullptr || total_ops == 0)
            return;
        if (op != last) {
            if (last != -1) {
                offset_completed += last_work;
                ++done_ops;
            }
            last = op;
        }
        last_work = work;
        const int64_t current_work = offset_completed + work;
        const int64_t projected = current_work * (total_ops - done_ops - 1) / (done_ops + 1);
        host->progress(static_cast<uint64_t>(offset_completed + offset), static_cast<uint64_t>(current_work + projected));
    }
};
enum { UPGRADING = 1, DOWNGRADING = 4 };

// Progress through the L1 entries of every table (qcow2_expand_zero_clusters' status_cb).
struct L1Progress {
    ProgressInfo* info = nullptr;
    int64_t visited = 0, total = 0;
    void step() {
        ++visited;
        if (info != nullptr)
            info->report(DOWNGRADING, visited, total);
    }
};

// Zero clusters in the L2 tables named by one L1 table, made data clusters as qemu's
// qcow2_expand_zero_clusters does: preallocated ones get zeros written, unallocated ones become
// unallocated (no backing file) or new clusters of zeros.
Status expand_zero_clusters_in_l1(const EditRequest& req, EditHost& host, const State& s, Qcow2Inplace& ip,
                                  uint64_t l1_offset, uint32_t l1_size, L1Progress& progress) {
    const size_t cs = s.cluster_size;
    const uint64_t l2_entries = cs / 8;
    uint64_t l1_bytes = 0;
    if (mul_overflow(l1_size, 8, &l1_bytes) || !qcow2_table_offset_valid(s.h, l1_offset, l1_size, 8) ||
        !ip.range_in_file(l1_offset, l1_bytes))
        return refuse(host, "The L1 table lies outside the image", Status::Corrupt);
    uint8_t* l2 = static_cast<uint8_t*>(req.allocator->allocate(cs, 16));
    uint8_t* zeros = static_cast<uint8_t*>(req.allocator->allocate(cs, 16));
    if (l2 == nullptr || zeros == nullptr)
        return Status::NoMemory;
    __builtin_memset(zeros, 0, cs);
    Status st = Status::Ok;
    for (uint32_t i = 0; i < l1_size && st == Status::Ok; ++i) {
        uint8_t e[8];
        if ((st = ip.read(l1_offset + uint64_t{i} * 8, e, 8)) != Status::Ok)
            break;
        const uint64_t l2_offset = load_be64(e) & L1E_OFFSET_MASK;
        if (l2_offset == 0) {
            progress.step();
            continue;
        }
        if (!ip.cluster_in_file(l2_offset)) {
            st = refuse(host, "An L2 table lies outside the image", Status::Corrupt);
            break;
        }
        uint64_t l2_refcount = 0;
        if ((st = ip.get_refcount(l2_offset >> s.h.cluster_bits, &l2_refcount)) != Status::Ok)
            break;
        if ((st = ip.read(l2_offset, l2, cs)) != Status::Ok)
            break;
        bool changed = false;
        for (uint64_t j = 0; j < l2_entries; ++j) {
            const uint64_t entry = load_be64(l2 + j * 8);
            if ((entry & L2E_COMPRESSED) || !(entry & L2E_ZERO))
                continue;
            uint64_t data = entry & L2E_OFFSET_MASK;
            if (data == 0) {
                if (s.backing_file == nullptr) { // not backed: unallocated reads as zeros too
                    store_be64(l2 + j * 8, 0);
                    changed = true;
                    continue;
                }
                if ((st = ip.alloc_clusters(cs, &data)) != Status::Ok)
                    break;
                if (l2_refcount > 1 && (st = ip.update_refcount(data, cs, l2_refcount - 1, false)) != Status::Ok)
                    break;
                if ((st = ip.sync()) != Status::Ok) // the new cluster is owned before anything names it
                    break;
            } else if (!ip.cluster_in_file(data)) {
                st = refuse(host, "A data cluster lies outside the image", Status::Corrupt);
                break;
            }
            // Zeros first, durable, then the entry that names them.
            if ((st = ip.write(data, zeros, cs)) != Status::Ok || (st = host.flush(*req.image)) != Status::Ok)
                break;
            store_be64(l2 + j * 8, data | (l2_refcount == 1 ? QCOW_OFLAG_COPIED : 0));
            changed = true;
        }
        if (st == Status::Ok && changed) {
            st = ip.write(l2_offset, l2, cs);
            if (st == Status::Ok)
                st = host.flush(*req.image);
        }
        if (st == Status::Ok)
            progress.step();
    }
    req.allocator->deallocate(zeros, cs);
    req.allocator->deallocate(l2, cs);
    return st;
}

// qcow2_expand_zero_clusters: the active L1, then every snapshot's L1 table.
Status zero_clusters(const EditRequest& req, EditHost& host, State& s, ProgressInfo* info) {
    L1Progress progress;
    progress.info = info;
    progress.total = s.h.l1_size;
    SnapshotWalk w{s.h.snapshots_offset, s.h.nb_snapshots};
    Status st = Status::Ok;
    while (w.left != 0) {
        Qcow2Snapshot sn;
        if ((st = next_snapshot(req, w, &sn)) != Status::Ok)
            return refuse(host, "Could not read the snapshot table", st);
        progress.total += sn.l1_size;
    }
    Qcow2Inplace* ipp = nullptr;
    if ((st = open_inplace(req, host, s.file_length, &ipp)) != Status::Ok)
        return st;
    Qcow2Inplace& ip = *ipp;
    w = {s.h.snapshots_offset, s.h.nb_snapshots};
    st = expand_zero_clusters_in_l1(req, host, s, ip, s.h.l1_table_offset, s.h.l1_size, progress);
    while (st == Status::Ok && w.left != 0) {
        Qcow2Snapshot sn;
        if ((st = next_snapshot(req, w, &sn)) != Status::Ok) {
            refuse(host, "Could not read the snapshot table", st);
            break;
        }
        st = expand_zero_clusters_in_l1(req, host, s, ip, sn.l1_table_offset, sn.l1_size, progress);
    }
    const Status sst = ip.sync();
    s.file_length = ip.file_length();
    ip.close();
    return st != Status::Ok ? st : sst;
}

// Persistent bitmaps on a downgrade (divergence qcow2-amend-downgrade-bitmaps): a v2 image has no
// autoclear bits, so qemu's downgrade leaves the extension behind with its clusters leaked and the
// bitmaps unusable ("must all be considered inconsistent" on every open). instar drops them: the
// header switched to no bitmaps, then their directory, tables and data clusters freed
// (Qcow2BitmapCarry::drop); a kill leaves a v3 image without them, at worst with leaks.
// `live`: the autoclear bit was set (without it qemu ignores the extension, and so does this: its
// clusters may have been reused by a program that did not know it; qemu's bytes, kept).
Status drop_bitmaps(const EditRequest& req, EditHost& host, State& s, bool live) {
    if (s.ext.nb_bitmaps == 0 || !live)
        return Status::Ok;
    Qcow2Inplace* ipp = nullptr;
    Status st = open_inplace(req, host, s.file_length, &ipp);
    if (st != Status::Ok)
        return st;
    Qcow2Inplace& ip = *ipp;
    {
        Qcow2BitmapCarry carry(req, host, ip);
        st = carry.load(false);
        if (st == Status::Ok)
            st = carry.drop();
    }
    s.file_length = ip.file_length();
    ip.close();
    if (st != Status::Ok)
        return st;
    s.ext.nb_bitmaps = 0;
    s.ext.bitmap_directory_size = 0;
    s.ext.bitmap_directory_offset = 0;
    return Status::Ok;
}

// Any compressed cluster in the active L1 (qcow2_has_compressed_clusters looks at the active disk).
Status has_compressed(const EditRequest& req, const State& s, bool* out) {
    const size_t cs = s.cluster_size;
    uint8_t* l2 = static_cast<uint8_t*>(req.allocator->allocate(cs, 16));
    if (l2 == nullptr)
        return Status::NoMemory;
    Status st = Status::Ok;
    for (uint32_t i = 0; i < s.h.l1_size && !*out; ++i) {
        uint8_t e[8];
        if ((st = req.image->read(s.h.l1_table_offset + uint64_t{i} * 8, e, 8)) != Status::Ok)
            break;
        const uint64_t l2_offset = load_be64(e) & L1E_OFFSET_MASK;
        if (l2_offset == 0)
            continue;
        if ((l2_offset & (cs - 1)) != 0 || l2_offset > req.image_length || req.image_length - l2_offset < cs) {
            st = Status::Corrupt;
            break;
        }
        if ((st = req.image->read(l2_offset, l2, cs)) != Status::Ok)
            break;
        for (size_t j = 0; j < cs / 8; ++j)
            if (load_be64(l2 + j * 8) & L2E_COMPRESSED)
                *out = true;
    }
    req.allocator->deallocate(l2, cs);
    return st;
}



// ---- size=: qemu's blk_truncate(exact, PREALLOC_MODE_OFF), done by resize's code ---------------

// The image device as another command's code sees it: every call forwarded, the file's length
// followed through writes past its end and set_length.
class TrackedDevice final : public guest::BlockDevice {
public:
    TrackedDevice(guest::BlockDevice& inner, uint64_t length) : inner_(inner), length_(length) {}
    uint64_t size() const override { return inner_.size(); }
    Status read(uint64_t offset, void* buf, size_t len) override { return inner_.read(offset, buf, len); }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        const Status st = inner_.write(offset, buf, len);
        uint64_t end = 0;
        if (st == Status::Ok && !add_overflow(offset, len, &end) && end > length_)
            length_ = end;
        return st;
    }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        return inner_.allocation(offset, data, length);
    }
    Status discard(uint64_t offset, uint64_t len) override { return inner_.discard(offset, len); }
    guest::BlockDevice& inner() { return inner_; }
    uint64_t length() const { return length_; }
    void set_length(uint64_t l) { length_ = l; }

private:
    guest::BlockDevice& inner_;
    uint64_t length_;
};

class TrackedHost final : public EditHost {
public:
    TrackedHost(EditHost& inner, TrackedDevice& dev) : inner_(inner), dev_(dev) {}
    Status set_length(guest::BlockDevice& file, uint64_t length, guest::Prealloc mode) override {
        if (&file != &dev_)
            return inner_.set_length(file, length, mode);
        const Status st = inner_.set_length(dev_.inner(), length, mode);
        if (st == Status::Ok)
            dev_.set_length(length);
        return st;
    }
    Status flush(guest::BlockDevice& file) override { return inner_.flush(&file == &dev_ ? dev_.inner() : file); }
    Status add_file(const char* name, guest::BlockDevice** out) override { return inner_.add_file(name, out); }
    Status out(const char* text, size_t len) override { return inner_.out(text, len); }
    Status err(const char* text, size_t len) override { return inner_.err(text, len); }
    void reason(const char* text, size_t len) override { inner_.reason(text, len); }
    Status data(uint32_t kind, const void* bytes, size_t len) override { return inner_.data(kind, bytes, len); }
    void progress(uint64_t, uint64_t) override {} // amend reports its own progress

private:
    EditHost& inner_;
    TrackedDevice& dev_;
};

// Resizes to `new_size` with resize's code (exact, no preallocation, shrinking allowed as qemu's
// amend allows it), after writing what the header holds so far; then reloads the state.
Status amend_size(const EditRequest& req, EditHost& host, State& s, uint64_t new_size) {
    if (s.header_pending) {
        if (const Status st = write_header(req, host, s); st != Status::Ok)
            return st;
        s.header_pending = false;
    }
    guest::ResizeArgs ra{};
    ra.new_size = new_size;
    ra.old_size = s.h.size;
    ra.prealloc = static_cast<uint32_t>(guest::Prealloc::Off);
    ra.flags = guest::RESIZE_SHRINK;
    if (req.args_len >= sizeof(AmendArgs)) {
        AmendArgs a;
        __builtin_memcpy(&a, req.args, sizeof a);
        if (a.has_backing != 0) {
            ra.flags |= guest::RESIZE_HAS_BACKING;
            ra.backing_size = a.backing_size;
        }
    }
    TrackedDevice dev(*req.image, s.file_length);
    TrackedHost th(host, dev);
    EditRequest r = req;
    r.command = guest::EditCommand::Resize;
    r.image = &dev;
    r.image_length = s.file_length;
    r.args = reinterpret_cast<const uint8_t*>(&ra);
    r.args_len = sizeof ra;
    Status st = edit_resize(r, th);
    if (st != Status::Ok)
        return st;
    EditRequest again = req;
    again.image_length = dev.length();
    s.~State();
    new (&s) State();
    return load_state(again, host, s);
}

// ---- qcow2_change_refcount_order -------------------------------------------------------------

// One refcount of width 2^order into a refcount block (qemu's set_refcount_ro*: sub-byte widths
// fill each byte from its least significant bits).
void set_refcount(uint8_t* b, uint64_t index, uint64_t v, uint32_t order) {
    switch (order) {
    case 0:
    case 1:
    case 2: {
        const uint32_t w = uint32_t{1} << order;
        const uint64_t per = 8 / w;
        const uint32_t shift = static_cast<uint32_t>(index % per) * w;
        const uint8_t mask = static_cast<uint8_t>(((1u << w) - 1) << shift);
        b[index / per] = static_cast<uint8_t>((b[index / per] & ~mask) | ((v << shift) & mask));
        return;
    }
    case 3:
        b[index] = static_cast<uint8_t>(v);
        return;
    case 4:
        store_be16(b + index * 2, static_cast<uint16_t>(v));
        return;
    case 5:
        store_be32(b + index * 4, static_cast<uint32_t>(v));
        return;
    default:
        store_be64(b + index * 8, v);
    }
}

// Appends text, a decimal or a 0x-hex number to a reason buffer.
struct Msg {
    char text[guest::CREATE_MAX_REASON];
    size_t len = 0;
    Msg& add(const char* s) {
        while (*s != 0 && len + 1 < sizeof text)
            text[len++] = *s++;
        return *this;
    }
    Msg& num(uint64_t v, bool hex) {
        char d[24];
        size_t k = 0;
        const uint64_t base = hex ? 16 : 10;
        do {
            d[k++] = "0123456789abcdef"[v % base];
            v /= base;
        } while (v != 0);
        if (hex && !(k == 1 && d[0] == '0'))
            add("0x");
        while (k != 0 && len + 1 < sizeof text)
            text[len++] = d[--k];
        return *this;
    }
};

// The state of qemu's walk_over_reftable and its two operations (alloc_refblock, flush_refblock).
struct RefWalk {
    Qcow2Inplace* ip;
    EditHost* host;
    ProgressInfo* progress;
    uint32_t new_order;
    uint64_t new_bits;
    uint64_t new_rb_size;    // refcounts per new block
    uint64_t* table = nullptr; // the new refcount table (host order)
    uint64_t table_size = 0; // entries
    uint64_t table_cap = 0;  // entries allocated
    uint8_t* block = nullptr; // the new block being filled (flush walk), else nullptr
    bool allocated = false;
    uint64_t index = 0;      // new_reftable_index
};

// The new table's largest size: qemu's limit.
inline constexpr uint64_t NEW_REFTABLE_MAX_ENTRIES = QCOW_MAX_REFTABLE_SIZE / 8;

Status walk_op(RefWalk& w, bool empty) {
    const uint64_t cs = w.ip->cluster_size();
    if (w.block == nullptr) { // alloc_refblock
        if (!empty && w.index >= w.table_size) {
            const uint64_t per = cs / 8;
            const uint64_t size = (w.index + 1 + per - 1) / per * per;
            if (size > NEW_REFTABLE_MAX_ENTRIES)
                return refuse(*w.host, "This operation would make the refcount table grow beyond the maximum size "
                                       "supported by QEMU, aborting");
            if (size > w.table_cap) {
                auto* t = static_cast<uint64_t*>(w.ip->allocator().allocate(size * 8, 16));
                if (t == nullptr)
                    return refuse(*w.host, "Failed to increase reftable buffer size", Status::NoMemory);
                for (uint64_t i = 0; i < size; ++i)
                    t[i] = i < w.table_size ? w.table[i] : 0;
                if (w.table != nullptr)
                    w.ip->allocator().deallocate(w.table, w.table_cap * 8);
                w.table = t;
                w.table_cap = size;
            }
            w.table_size = size;
        }
        if (!empty && w.table[w.index] == 0) {
            uint64_t off = 0;
            if (const Status st = w.ip->alloc_clusters(cs, &off); st != Status::Ok)
                return refuse(*w.host, "Failed to allocate refblock", st);
            w.table[w.index] = off;
            w.allocated = true;
        }
        return Status::Ok;
    }
    // flush_refblock
    if (w.index < w.table_size && w.table[w.index] != 0) {
        if (const Status st = w.ip->write(w.table[w.index], w.block, cs); st != Status::Ok)
            return refuse(*w.host, "Failed to write refblock", st);
    } else if (!empty) {
        return refuse(*w.host, "a new refcount block was not allocated", Status::Corrupt);
    }
    if (!empty) // an empty block is all zeros already: the next one starts from it
        __builtin_memset(w.block, 0, cs);
    return Status::Ok;
}

Status walk_over_reftable(RefWalk& w, uint64_t walk, uint64_t total) {
    Qcow2Inplace& ip = *w.ip;
    const uint64_t cs = ip.cluster_size();
    const uint64_t rb_size = uint64_t{1} << ip.refblock_bits();
    uint64_t new_index = 0;
    bool new_empty = true;
    if (w.block != nullptr)
        __builtin_memset(w.block, 0, cs);
    // Completes the new block when full.
    auto boundary = [&]() -> Status {
        if (new_index < w.new_rb_size)
            return Status::Ok;
        if (const Status st = walk_op(w, new_empty); st != Status::Ok)
            return st;
        ++w.index;
        new_index = 0;
        new_empty = true;
        return Status::Ok;
    };
    for (uint64_t rt = 0; rt < ip.reftable_size(); ++rt) { // the table may grow as the walk allocates
        const uint64_t rb_offset = ip.reftable_entry(rt) & QCOW2_REFT_OFFSET_MASK;
        if (w.progress != nullptr)
            w.progress->report(3, static_cast<int64_t>(walk * ip.reftable_size() + rt),
                               static_cast<int64_t>(total * ip.reftable_size()));
        if (rb_offset == 0) {
            // No block: rb_size zero refcounts (the new block is zero-filled already).
            uint64_t left = rb_size;
            while (left != 0) {
                if (const Status st = boundary(); st != Status::Ok)
                    return st;
                const uint64_t room = w.new_rb_size - new_index;
                const uint64_t take = left < room ? left : room;
                new_index += take;
                left -= take;
            }
            continue;
        }
        if ((rb_offset & (cs - 1)) != 0)
            return refuse(*w.host, "Image is corrupt (unaligned refblock offset)", Status::Corrupt);
        for (uint64_t i = 0; i < rb_size; ++i) {
            if (const Status st = boundary(); st != Status::Ok)
                return st;
            uint64_t refcount = 0;
            if (const Status st = ip.get_refcount((rt << ip.refblock_bits()) + i, &refcount); st != Status::Ok)
                return refuse(*w.host, "Failed to retrieve refblock", st);
            if (w.new_bits < 64 && (refcount >> w.new_bits) != 0) {
                Msg m;
                m.add("Cannot decrease refcount entry width to ").num(w.new_bits, false).add(" bits: Cluster at offset ");
                m.num(((rt << ip.refblock_bits()) + i) << ip.cluster_bits(), true).add(" has a refcount of ");
                m.num(refcount, false);
                w.host->reason(m.text, m.len);
                return Status::Invalid;
            }
            if (w.block != nullptr)
                set_refcount(w.block, new_index, refcount, w.new_order);
            ++new_index;
            new_empty = new_empty && refcount == 0;
        }
    }
    if (new_index > 0) {
        if (const Status st = walk_op(w, new_empty); st != Status::Ok)
            return st;
        ++w.index;
    }
    if (w.progress != nullptr)
        w.progress->report(3, static_cast<int64_t>((walk + 1) * ip.reftable_size()),
                           static_cast<int64_t>(total * ip.reftable_size()));
    return Status::Ok;
}

// qcow2_change_refcount_order: new refcount blocks and table in new clusters (allocated through
// the old structures until nothing more needs allocating), written and flushed; then the header
// switch (one write: everything qemu's header holds by now); then the old blocks and table freed
// through the new structures. A kill before the switch leaves the old structures with leaked new
// clusters; after it, the new ones with the old clusters leaked.
Status change_refcount_order(const EditRequest& req, EditHost& host, State& s, uint32_t new_order,
                             ProgressInfo* progress) {
    Qcow2Inplace* ipp = nullptr;
    Status st = open_inplace(req, host, s.file_length, &ipp);
    if (st != Status::Ok)
        return st;
    Qcow2Inplace& ip = *ipp;
    const uint64_t cs = ip.cluster_size();
    RefWalk w{};
    w.ip = &ip;
    w.host = &host;
    w.progress = progress;
    w.new_order = new_order;
    w.new_bits = uint64_t{1} << new_order;
    w.new_rb_size = uint64_t{1} << (ip.cluster_bits() + 3 - new_order);
    uint64_t new_table_offset = 0, allocated_table_size = 0;
    uint64_t walk_index = 0;
    do {
        w.allocated = false;
        const uint64_t total = walk_index + 2 > 3 ? walk_index + 2 : 3;
        st = walk_over_reftable(w, walk_index++, total);
        if (st != Status::Ok)
            break;
        w.index = 0;
        if (w.allocated) {
            if (new_table_offset != 0 && (st = ip.free_clusters(new_table_offset, allocated_table_size * 8)) != Status::Ok)
                break;
            if ((st = ip.alloc_clusters(w.table_size * 8, &new_table_offset)) != Status::Ok) {
                refuse(host, "Failed to allocate the new reftable", st);
                new_table_offset = 0;
                break;
            }
            allocated_table_size = w.table_size;
        }
    } while (w.allocated);
    if (st == Status::Ok) {
        w.block = static_cast<uint8_t*>(req.allocator->allocate(cs, 16));
        if (w.block == nullptr)
            st = Status::NoMemory;
        else
            st = walk_over_reftable(w, walk_index, walk_index + 1);
    }
    if (st == Status::Ok) {
        if (w.allocated)
            st = refuse(host, "the refcount structures changed while they were written", Status::Corrupt);
        else if (new_table_offset == 0) // no cluster in use at all, not even the header's
            st = refuse(host, "Image is corrupt (no cluster has a reference count)", Status::Corrupt);
        else if ((st = ip.write_table(new_table_offset, w.table, w.table_size)) != Status::Ok)
            refuse(host, "Failed to write the new reftable", st);
    }
    if (st == Status::Ok && (st = ip.sync()) != Status::Ok)
        refuse(host, "Failed to flush the refblock cache", st);
    if (st != Status::Ok) {
        // qemu's cleanup: the new blocks and table freed through the old structures.
        for (uint64_t i = 0; i < w.table_size; ++i)
            if ((w.table[i] & QCOW2_REFT_OFFSET_MASK) != 0)
                ip.free_clusters(w.table[i] & QCOW2_REFT_OFFSET_MASK, cs);
        if (new_table_offset != 0)
            ip.free_clusters(new_table_offset, allocated_table_size * 8);
        ip.sync();
        s.file_length = ip.file_length();
        ip.close();
        return st;
    }
    // The old structures, to be freed after the switch.
    const uint64_t old_size = ip.reftable_size();
    const uint64_t old_table_offset = ip.header().refcount_table_offset;
    auto* old = static_cast<uint64_t*>(req.allocator->allocate(old_size * 8, 16));
    if (old == nullptr)
        return Status::NoMemory;
    for (uint64_t i = 0; i < old_size; ++i)
        old[i] = ip.reftable_entry(i) & QCOW2_REFT_OFFSET_MASK;
    const uint64_t file_length = ip.file_length();
    ip.close();

    // The switch.
    s.h.refcount_order = new_order;
    s.h.refcount_table_offset = new_table_offset;
    s.h.refcount_table_clusters = static_cast<uint32_t>(w.table_size * 8 / cs);
    if ((st = write_header(req, host, s)) != Status::Ok)
        return st;
    s.header_pending = false;

    Qcow2Inplace* nipp = nullptr;
    if ((st = open_inplace(req, host, file_length, &nipp)) != Status::Ok)
        return st;
    Qcow2Inplace& nip = *nipp;
    for (uint64_t i = 0; i < old_size && st == Status::Ok; ++i)
        if (old[i] != 0)
            st = nip.free_clusters(old[i], cs);
    if (st == Status::Ok)
        st = nip.free_clusters(old_table_offset, old_size * 8);
    if (st == Status::Ok)
        st = nip.sync();
    s.file_length = nip.file_length();
    nip.close();
    return st;
}

Status amend(const EditRequest& req, EditHost& host, State& s);

} // namespace

guest::Status edit_amend(const guest::EditRequest& req, guest::EditHost& host) {
    State* sp = static_cast<State*>(req.allocator->allocate(sizeof(State), alignof(State)));
    if (sp == nullptr)
        return Status::NoMemory;
    State& s = *new (sp) State();
    const Status st = amend(req, host, s);
    if (!s.header_pending)
        return st;
    const Status wst = write_header(req, host, s);
    return st != Status::Ok ? st : wst;
}

namespace {

Status amend(const EditRequest& req, EditHost& host, State& s) {
    if (req.args_len < sizeof(AmendArgs))
        return refuse(host, "amend: truncated arguments", Status::Corrupt);
    AmendArgs a;
    __builtin_memcpy(&a, req.args, sizeof a);
    const uint64_t strings = uint64_t{a.compat_len} + a.backing_file_len + a.backing_fmt_len + a.data_file_len;
    // encrypt.* keys: KeySlotArgs and its ids follow the strings (edit_amend.h).
    const bool keyslot_bytes = (a.given & guest::AMEND_ENCRYPT) != 0;
    if (a.compat_len > guest::AMEND_MAX_STRING || a.backing_file_len > guest::AMEND_MAX_STRING ||
        a.backing_fmt_len > guest::AMEND_MAX_STRING || a.data_file_len > guest::AMEND_MAX_STRING ||
        (keyslot_bytes ? req.args_len - sizeof a < strings : req.args_len - sizeof a != strings))
        return refuse(host, "amend: malformed arguments", Status::Corrupt);
    luks::KeySlotChange keyslots;
    if (keyslot_bytes && luks::read_keyslot_change(req, sizeof a + strings, (a.flags & guest::AMEND_FORCE) != 0,
                                                   &keyslots) != Status::Ok)
        return refuse(host, "amend: malformed arguments", Status::Corrupt);
    const char* compat = reinterpret_cast<const char*>(req.args + sizeof a);
    const char* backing_file = compat + a.compat_len;
    const char* backing_fmt = backing_file + a.backing_file_len;
    const char* data_file = backing_fmt + a.backing_fmt_len;
    if (!(a.given & guest::AMEND_BACKING_FILE))
        backing_file = nullptr;
    if (!(a.given & guest::AMEND_BACKING_FMT))
        backing_fmt = nullptr;
    if (!(a.given & guest::AMEND_DATA_FILE))
        data_file = nullptr;

    Status st = load_state(req, host, s);
    if (st != Status::Ok)
        return st;
    if (s.h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        return refuse(host, "qcow2: Image is corrupt; cannot be opened read/write", Status::Corrupt);

    // qcow2_amend_options' loop over the table, in qemu's order.
    const uint32_t old_version = s.h.version;
    uint32_t new_version = old_version;
    bool lazy = (s.h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0 && old_version >= 3;
    const bool old_lazy = lazy;
    bool data_file_raw = (s.h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0;
    uint64_t refcount_bits = uint64_t{1} << s.h.refcount_order;
    const uint64_t old_refcount_bits = refcount_bits;
    bool encryption_update = false;
    if (a.given & guest::AMEND_ENCRYPT) {
        if (s.h.crypt_method == QCOW_CRYPT_NONE)
            return refuse(host, "Can't amend encryption options - encryption not present", Status::Invalid);
        if (s.h.crypt_method != QCOW_CRYPT_LUKS)
            return refuse(host, "Only LUKS encryption options can be amended");
        encryption_update = true;
    }
    if (a.given & guest::AMEND_COMPAT) {
        if (equals(compat, a.compat_len, "0.10") || equals(compat, a.compat_len, "v2")) {
            new_version = 2;
        } else if (equals(compat, a.compat_len, "1.1") || equals(compat, a.compat_len, "v3")) {
            new_version = 3;
        } else {
            char msg[guest::CREATE_MAX_REASON];
            const char prefix[] = "Unknown compatibility level ";
            size_t n = sizeof prefix - 1;
            __builtin_memcpy(msg, prefix, n);
            for (size_t i = 0; i < a.compat_len && n + 1 < sizeof msg; ++i)
                msg[n++] = compat[i];
            host.reason(msg, n);
            return Status::Invalid;
        }
    }
    if (a.given & guest::AMEND_LAZY_REFCOUNTS)
        lazy = a.lazy_refcounts != 0;
    if (a.given & guest::AMEND_REFCOUNT_BITS) {
        refcount_bits = a.refcount_bits;
        if (refcount_bits == 0 || refcount_bits > 64 || (refcount_bits & (refcount_bits - 1)) != 0)
            return refuse(host, "Refcount width must be a power of two and may not exceed 64 bits", Status::Invalid);
    }
    if (data_file != nullptr && !has_data_file(s))
        return refuse(host, "data-file can only be set for images that use an external data file", Status::Invalid);
    if (a.given & guest::AMEND_DATA_FILE_RAW) {
        const bool want = a.data_file_raw != 0;
        if (want && !data_file_raw)
            return refuse(host, "data-file-raw cannot be set on existing images", Status::Invalid);
        data_file_raw = want;
    }

    // What instar cannot do yet: refused before anything is written.
    if (s.h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return refuse(host, "instar cannot amend a dirty image (lazy refcounts not yet written back): run 'instar "
                            "check -r all' on it first");
    ProgressInfo progress;
    if (a.flags & guest::AMEND_PROGRESS)
        progress.host = &host;
    progress.total_ops = (new_version != old_version) + (refcount_bits != old_refcount_bits) + encryption_update;

    // Upgrade first (some features need compat=1.1).
    if (new_version > old_version) {
        progress.report(UPGRADING, 0, 2);
        SnapshotWalk w{s.h.snapshots_offset, s.h.nb_snapshots};
        while (w.left != 0) {
            Qcow2Snapshot sn;
            if ((st = next_snapshot(req, w, &sn)) != Status::Ok)
                return refuse(host, "Could not read the snapshot table", st);
            if (sn.extra_data_size < 16)
                return refuse(host, "instar cannot upgrade this image yet: its snapshot table needs rewriting (v2 "
                                    "entries without the v3 extra data)");
        }
        progress.report(UPGRADING, 1, 2);
        s.h.version = 3;
        s.h.header_length = sizeof(Qcow2HeaderDisk);
        s.h.refcount_order = 4;
        if ((st = update_header(req, host, s)) != Status::Ok)
            return st;
        progress.report(UPGRADING, 2, 2);
    }

    // The key slots of the LUKS header in the crypto header extension's clusters (qemu's
    // qcrypto_block_amend_options through qcow2_crypto_hdr_*_func, bounded by the extension). It
    // reports no progress, as in qemu, but counts in total_ops.
    if (encryption_update) {
        if (!s.ext.has_crypto_header)
            return refuse(host, "Could not read encryption header", Status::Corrupt);
        if ((st = luks::luks_amend_keyslots(*req.image, s.ext.crypto_header_offset, s.ext.crypto_header_length,
                                            keyslots, req, host)) != Status::Ok)
            return st;
    }

    if (refcount_bits != old_refcount_bits && new_version < 3 && refcount_bits != 16)
        return refuse(host, "Refcount widths other than 16 bits require compatibility level 1.1 or above (use "
                            "compat=1.1 or greater)", Status::Invalid);
    if (refcount_bits != old_refcount_bits) {
        const uint32_t order = static_cast<uint32_t>(__builtin_ctzll(refcount_bits));
        if ((st = change_refcount_order(req, host, s, order, progress.host ? &progress : nullptr)) != Status::Ok)
            return st;
    }

    // data-file-raw blocks backing files, so it is cleared first when asked.
    if (data_file_raw)
        s.h.autoclear_features |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    else
        s.h.autoclear_features &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (data_file != nullptr) {
        s.data_file = a.data_file_len ? data_file : nullptr;
        s.data_file_len = a.data_file_len;
    }
    if ((st = update_header(req, host, s)) != Status::Ok)
        return st;

    if (backing_file != nullptr || backing_fmt != nullptr) {
        if (!same_string(backing_file, a.backing_file_len, s.backing_file, s.backing_file_len) ||
            !same_string(backing_fmt, a.backing_fmt_len, s.has_backing_fmt ? s.backing_fmt : nullptr,
                         cstr_len(s.backing_fmt))) {
            static const char msg[] = "\x01" "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.\n";
            host.err(msg, sizeof msg - 1);
            return Status::Invalid;
        }
    }

    if (old_lazy != lazy) {
        if (lazy) {
            if (new_version < 3)
                return refuse(host, "Lazy refcounts only supported with compatibility level 1.1 and above (use "
                                    "compat=1.1 or greater)", Status::Invalid);
            s.h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        } else {
            s.h.compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS; // the image is clean (checked above)
        }
        if ((st = update_header(req, host, s)) != Status::Ok)
            return st;
    }

    if (a.size != 0 && a.size != s.h.size && (st = amend_size(req, host, s, a.size)) != Status::Ok)
        return st;

    // Downgrade last, so unsupported features can be removed before.
    if (new_version < old_version) {
        if (s.h.refcount_order != 4)
            return refuse(host, "compat=0.10 requires refcount_bits=16");
        if (has_data_file(s))
            return refuse(host, "Cannot downgrade an image with a data file");
        SnapshotWalk w{s.h.snapshots_offset, s.h.nb_snapshots};
        while (w.left != 0) {
            Qcow2Snapshot sn;
            if ((st = next_snapshot(req, w, &sn)) != Status::Ok)
                return refuse(host, "Could not read the snapshot table", st);
            if (sn.vm_state_size > 0xffffffffull || !sn.has_disk_size || sn.disk_size != s.h.size)
                return refuse(host, "Internal snapshots prevent downgrade of image");
        }
        const uint64_t incompat = s.h.incompatible_features & ~QCOW2_INCOMPAT_COMPRESSION;
        if (incompat != 0) {
            char msg[96];
            const char prefix[] = "Cannot downgrade an image with incompatible features 0x";
            size_t n = sizeof prefix - 1;
            __builtin_memcpy(msg, prefix, n);
            char hex[16];
            size_t k = 0;
            uint64_t v = incompat;
            do {
                hex[k++] = "0123456789abcdef"[v & 15];
                v >>= 4;
            } while (v != 0);
            while (k != 0)
                msg[n++] = hex[--k];
            const char tail[] = " set";
            __builtin_memcpy(msg + n, tail, sizeof tail - 1);
            n += sizeof tail - 1;
            host.reason(msg, n);
            return Status::Unsupported;
        }
        s.h.compatible_features = 0;
        const bool live_bitmaps = (s.h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) != 0;
        s.h.autoclear_features = 0;
        if ((st = zero_clusters(req, host, s, &progress)) != Status::Ok)
            return st;
        if (s.h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION) {
            bool compressed = false;
            if ((st = has_compressed(req, s, &compressed)) != Status::Ok)
                return refuse(host, "Failed to check block status", Status::Invalid);
            if (compressed)
                return refuse(host, "Cannot downgrade an image with zstd compression type and existing compressed "
                                    "clusters");
            s.h.incompatible_features &= ~QCOW2_INCOMPAT_COMPRESSION;
            s.h.compression_type = QCOW2_COMPRESSION_TYPE_ZLIB;
        }
        if ((st = drop_bitmaps(req, host, s, live_bitmaps)) != Status::Ok)
            return st;
        s.h.version = 2;
        s.h.header_length = QCOW2_V2_HEADER_LENGTH;
        if ((st = update_header(req, host, s)) != Status::Ok)
            return st;
    }
    return Status::Ok;
}

} // namespace

} // namespace instar::qcow2
