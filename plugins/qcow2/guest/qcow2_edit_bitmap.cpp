// qcow2: `bitmap`: persistent dirty bitmaps (EditCommand::Bitmap, docs/bitmap.md, docs/edit.md).
//
// The actions run in order on an in-memory copy of the bitmap directory, with qemu's checks and
// messages (block/monitor/bitmap-qmp-cmds.c, block/qcow2-bitmap.c); the first that fails stops
// the run, and what the earlier ones did is stored as qemu-img stores it when it closes the image.
// Storing: new bitmap tables and data clusters, then a new directory, sync, then one write of the
// header cluster (autoclear bit 0 and the bitmaps extension) switches to them, then the old
// directory and the tables and data no longer named are freed. A kill before the switch leaves the
// old bitmaps (and leaked clusters), after it the new ones.
#include "qcow2_bitmap.h"
#include "qcow2_bitmap_carry.h"
#include "qcow2_bitmap_walk.h"
#include "qcow2_bytes.h"
#include "qcow2_edit.h"
#include "qcow2_extensions.h"
#include "qcow2_inplace.h"
#include "qcow2_limits.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/edit_bitmap.h>

namespace instar::qcow2 {

using guest::BitmapActionKind;

namespace {

// Merged bitmap content is held in memory until it is stored (so data clusters and tables are
// allocated in qemu's order, bitmap by bitmap), its non-zero clusters only: at most this much in
// all (a quarter of the guest's default memory; a fully dirty 1 TiB disk at 64 KiB granularity
// needs 2 MiB).
constexpr uint64_t BITMAP_MAX_MERGED_BYTES = 64u << 20;
constexpr char INCONSISTENT_HINT[] = "Try block-dirty-bitmap-remove to delete this bitmap from disk\n";
// One message line at most this long: a 1023-byte name appears in it three times.
constexpr size_t MSG_MAX = 4096;

struct Msg {
    char text[MSG_MAX];
    size_t len = 0;
    Msg& add(const char* s, size_t n) {
        for (size_t i = 0; i < n && len < MSG_MAX; ++i)
            text[len++] = s[i];
        return *this;
    }
    Msg& add(const char* s) {
        size_t n = 0;
        while (s[n] != 0)
            ++n;
        return add(s, n);
    }
    Msg& num(uint64_t v) {
        char d[24];
        size_t n = 0;
        do {
            d[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n > 0 && len < MSG_MAX)
            text[len++] = d[--n];
        return *this;
    }
    const char* c_str() { // NUL-terminated (the last byte gives way when full)
        if (len == MSG_MAX)
            --len;
        text[len] = 0;
        return text;
    }
};

// A bitmap as the run sees it.
struct Bm {
    const uint8_t* name = nullptr;
    uint16_t name_len = 0;
    uint8_t gran_bits = 0;
    uint32_t flags = 0;
    uint64_t table_offset = 0; // on disk (0: none yet)
    uint32_t table_size = 0;        // entries of the table this run stores (the size it covers)
    uint32_t orig_table_size = 0;   // as loaded from the directory
    uint32_t table_entries = 0;     // entries in `table` (as read from disk)
    uint64_t orig_table_offset = 0; // as loaded from the directory (0: added in this run)
    uint32_t orig_flags = 0;        // as loaded (BME_FLAG_IN_USE: inconsistent, left as it is)
    uint64_t* table = nullptr; // a loaded bitmap's table entries (as on disk)
    uint8_t** chunks = nullptr; // content made by this run (merge): table_size clusters, in memory
                                // where not all zeros (nullptr: a zero cluster)
    bool removed = false;
    bool changed = false;      // content changed: new data clusters and table on disk (data, or
                               // all zeros without it: added or cleared)
};

size_t cstr_len(const char* s) {
    size_t n = 0;
    while (s[n] != 0)
        ++n;
    return n;
}

uint32_t ctz64(uint64_t v) { return static_cast<uint32_t>(__builtin_ctzll(v)); }

// The bytes of bits a bitmap of granularity 2^gran_bits has over a disk of `size` bytes, and the
// table entries (data clusters of `cs` bytes) they take (qemu: size_to_clusters of the
// serialization size).
uint64_t bitmap_bytes_for(uint64_t size, uint8_t gran_bits) {
    const uint64_t g = uint64_t{1} << gran_bits;
    return ((size + g - 1) / g + 7) / 8;
}
uint64_t bitmap_table_entries(uint64_t size, uint8_t gran_bits, uint64_t cs) {
    return (bitmap_bytes_for(size, gran_bits) + cs - 1) / cs;
}

class BitmapEdit {
public:
    BitmapEdit(const guest::EditRequest& req, guest::EditHost& host)
        : req_(req), host_(host), alloc_(*req.allocator), img_(own_img_) {}
    // On an image another command has open (resize: Qcow2BitmapCarry).
    BitmapEdit(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& img)
        : req_(req), host_(host), alloc_(*req.allocator), img_(img) {}

    Status run();
    // Carried through another edit (qcow2_bitmap_carry.h): load, check, store at a disk size.
    Status carry_load(bool refuse_inconsistent);
    bool carry_present() const { return count_ > 0; }
    Status carry_check(uint64_t new_size);
    bool carry_tables_change(uint64_t new_size) const;
    Status carry_store(uint64_t new_size);
    Status carry_drop();

private:
    void* allocate(uint64_t bytes) {
        if (bytes > SIZE_MAX)
            return nullptr;
        return alloc_.allocate(static_cast<size_t>(bytes == 0 ? 8 : bytes), 64);
    }
    Status fail(Status st, const char* why) { return guest::edit_refuse(host_, why, st); }
    Status load_directory(Qcow2Inplace& img, const Qcow2Extensions& ext, Bm** list, uint32_t* count,
                          uint32_t* capacity, uint64_t extra_capacity);
    Status load_table(Qcow2Inplace& img, Bm& b);
    Status read_data_cluster(Qcow2Inplace& img, const Bm& b, uint64_t index, uint8_t* buf);
    Status merge(Qcow2Inplace& src_img, const Bm& src, Bm& dst);
    Status chunk(Bm& b, uint64_t index, uint8_t** out);
    Status set_bits(Bm& b, uint64_t first, uint64_t last);
    // An entry of a directory this run writes (or qemu wrote, for the freed ones).
    struct DirEnt {
        const Bm* b;
        uint32_t flags;
        uint64_t table_offset;
        uint32_t table_size;
    };
    Status store();
    uint64_t dir_bytes(const DirEnt* e, uint32_t n) const;
    Status write_dir(const DirEnt* e, uint32_t n, bool qemu_marks, uint64_t offset);
    Status switch_header(uint32_t live, uint64_t dir_size, uint64_t dir_off);
    Status free_original(const Bm& b);
    Status store_bitmap(Bm& b, uint64_t* table_offset);
    Status free_table(const uint64_t* table, uint32_t size, uint64_t table_offset);
    // qmp's block-dirty-bitmap-add with qcow2's checks (persistent): Ok with `why` set when qemu
    // refuses; `granularity` 0: the default, else qemu-img's value (truncated to uint32_t here).
    Status add_bitmap(const uint8_t* name, size_t len, uint64_t granularity, uint32_t flags, const char* node,
                      size_t node_len, Msg& why);
    // qmp's block-dirty-bitmap-merge of `src_name` (of src_list) into `dst_name` of the image.
    Status merge_bitmap(const uint8_t* dst_name, size_t dst_len, Bm* src_list, uint32_t src_count,
                        Qcow2Inplace& src_img, const uint8_t* src_name, size_t src_len, Msg& why, const char** hint);
    static void inconsistent(const Bm& b, Msg& why) {
        why.add("Bitmap '").add(reinterpret_cast<const char*>(b.name), b.name_len);
        why.add("' is inconsistent and cannot be used");
    }

    void op_error(const char* op, const Msg& why, const char* hint = nullptr);
    int find(Bm* list, uint32_t count, const uint8_t* name, size_t len) const;

    const guest::EditRequest& req_;
    guest::EditHost& host_;
    guest::Allocator& alloc_;
    Qcow2Inplace own_img_;
    Qcow2Inplace& img_;
    Qcow2Inplace src_img_;
    Bm* bms_ = nullptr;
    uint32_t count_ = 0;
    uint32_t capacity_ = 0;
    Bm* src_bms_ = nullptr;
    uint32_t src_count_ = 0;
    uint8_t* header_cluster_ = nullptr;
    Qcow2Extensions ext_{};
    uint64_t size_ = 0; // the virtual disk size (the bitmaps' size)
    uint64_t loaded_size_ = 0; // the disk size the loaded bitmaps cover (size_ but in a resize)
    uint64_t switch_size_ = 0; // nonzero: the header switch also writes this disk size (resize)
    uint64_t merged_bytes_ = 0; // in-memory merged content (BITMAP_MAX_MERGED_BYTES)
    uint32_t orig_count_ = 0;   // bms_[0, orig_count_): the bitmaps loaded from the image
    uint32_t* removes_ = nullptr; // indexes of loaded bitmaps --remove took, in order
    uint32_t remove_count_ = 0;
    uint8_t* cache_ = nullptr; // one cluster of zeros for freed data (devices without discard)
    const uint8_t* name_ = nullptr;
    size_t name_len_ = 0;
};

void BitmapEdit::op_error(const char* op, const Msg& why, const char* hint) {
    Msg m;
    m.add("\x01Operation ").add(op).add(" on bitmap ").add(reinterpret_cast<const char*>(name_), name_len_);
    m.add(" failed: ").add(why.text, why.len).add("\n");
    host_.err(m.text, m.len);
    if (hint)
        host_.err(hint, cstr_len(hint));
}

int BitmapEdit::find(Bm* list, uint32_t count, const uint8_t* name, size_t len) const {
    for (uint32_t i = 0; i < count; ++i) {
        if (list[i].removed || list[i].name_len != len)
            continue;
        if (__builtin_memcmp(list[i].name, name, len) == 0)
            return static_cast<int>(i);
    }
    return -1;
}

Status BitmapEdit::load_directory(Qcow2Inplace& img, const Qcow2Extensions& ext, Bm** list, uint32_t* count,
                                  uint32_t* capacity, uint64_t extra_capacity) {
    const Qcow2Header& h = img.header();
    *count = 0;
    const uint64_t cap = uint64_t{ext.nb_bitmaps} + extra_capacity;
    *list = static_cast<Bm*>(allocate(cap * sizeof(Bm)));
    if (*list == nullptr)
        return Status::NoMemory;
    for (uint64_t i = 0; i < cap; ++i)
        new (&(*list)[i]) Bm();
    *capacity = static_cast<uint32_t>(cap);
    if (ext.nb_bitmaps == 0)
        return Status::Ok;
    const uint64_t dsize = ext.bitmap_directory_size;
    if (!qcow2_bitmap_dir_placed(ext, img.file_length()))
        return Status::Corrupt;
    uint8_t* dir = static_cast<uint8_t*>(allocate(dsize));
    if (dir == nullptr)
        return Status::NoMemory;
    if (const Status st = img.read(ext.bitmap_directory_offset, dir, static_cast<size_t>(dsize)); st != Status::Ok)
        return st;
    return qcow2_bitmap_dir_walk(h, dir, dsize, ext.nb_bitmaps,
                                 [&](const Qcow2BitmapDirEntry& e, const uint8_t* bytes, uint64_t) {
        Bm& b = (*list)[*count];
        b.name = bytes + sizeof(Qcow2BitmapDirEntryDisk) + e.extra_data_size;
        b.name_len = e.name_size;
        b.gran_bits = e.granularity_bits;
        b.flags = e.flags;
        b.table_offset = e.bitmap_table_offset;
        b.table_size = e.bitmap_table_size;
        b.orig_table_size = e.bitmap_table_size;
        b.orig_table_offset = e.bitmap_table_offset;
        b.orig_flags = e.flags;
        ++*count;
        return Status::Ok;
    });
}

Status BitmapEdit::load_table(Qcow2Inplace& img, Bm& b) {
    if (b.table != nullptr)
        return Status::Ok;
    b.table = static_cast<uint64_t*>(allocate(uint64_t{b.table_size} * 8));
    if (b.table == nullptr)
        return Status::NoMemory;
    b.table_entries = b.table_size;
    if (b.table_size == 0)
        return Status::Ok;
    if (!img.range_in_file(b.table_offset, uint64_t{b.table_size} * 8))
        return Status::Corrupt;
    if (const Status st = img.read_table(b.table_offset, b.table, b.table_size); st != Status::Ok)
        return st;
    for (uint32_t i = 0; i < b.table_size; ++i)
        if (!qcow2_bitmap_table_entry_ok(b.table[i], [&](uint64_t at) { return img.cluster_in_file(at); }))
            return Status::Corrupt; // qemu: "Bitmap table entry has reserved bits set" and the like
    return Status::Ok;
}

Status BitmapEdit::read_data_cluster(Qcow2Inplace& img, const Bm& b, uint64_t index, uint8_t* buf) {
    const uint64_t cs = img.cluster_size();
    if (b.chunks != nullptr) {
        if (index < b.table_size && b.chunks[index] != nullptr)
            __builtin_memcpy(buf, b.chunks[index], static_cast<size_t>(cs));
        else
            __builtin_memset(buf, 0, static_cast<size_t>(cs));
        return Status::Ok;
    }
    if (b.table == nullptr) { // added or cleared in this run
        __builtin_memset(buf, 0, static_cast<size_t>(cs));
        return Status::Ok;
    }
    const uint64_t e = index < b.table_entries ? b.table[index] : 0;
    const uint64_t off = e & BME_TABLE_ENTRY_OFFSET_MASK;
    if (off == 0) {
        __builtin_memset(buf, (e & BME_TABLE_ENTRY_FLAG_ALL_ONES) ? 0xff : 0, static_cast<size_t>(cs));
        return Status::Ok;
    }
    return img.read(off, buf, static_cast<size_t>(cs));
}


// The merged-content cluster `index` of `b`, allocated (zeros) on first use.
Status BitmapEdit::chunk(Bm& b, uint64_t index, uint8_t** out) {
    if (b.chunks[index] == nullptr) {
        const uint64_t cs = img_.cluster_size();
        if (cs > BITMAP_MAX_MERGED_BYTES - merged_bytes_)
            return fail(Status::TooLarge, "bitmap: the merged bitmaps exceed instar's 64 MiB limit");
        uint8_t* c = static_cast<uint8_t*>(allocate(cs));
        if (c == nullptr)
            return Status::NoMemory;
        __builtin_memset(c, 0, static_cast<size_t>(cs));
        merged_bytes_ += cs;
        b.chunks[index] = c;
    }
    *out = b.chunks[index];
    return Status::Ok;
}

// Sets bits [first, last] of b's merged content.
Status BitmapEdit::set_bits(Bm& b, uint64_t first, uint64_t last) {
    const uint64_t bpc = img_.cluster_size() * 8;
    while (first <= last) {
        const uint64_t ci = first / bpc;
        const uint64_t in = first % bpc;
        const uint64_t end = last - first < bpc - 1 - in ? in + (last - first) : bpc - 1;
        uint8_t* c = nullptr;
        if (const Status st = chunk(b, ci, &c); st != Status::Ok)
            return st;
        first += end - in + 1;
        qcow2_bitmap_set_bits(c, in, end);
    }
    return Status::Ok;
}

// dst |= src over the same disk bytes (qemu's hbitmap_merge: a source bit sets every destination
// bit whose range overlaps its range), into dst's in-memory content. Only the clusters of the
// source that hold data are visited.
Status BitmapEdit::merge(Qcow2Inplace& src_img, const Bm& src, Bm& dst) {
    const uint64_t cs = img_.cluster_size();
    const uint64_t gd = uint64_t{1} << dst.gran_bits;
    const uint64_t gs = uint64_t{1} << src.gran_bits;
    const uint64_t dst_bits = (size_ + gd - 1) / gd;
    const uint64_t scs = src_img.cluster_size();
    uint8_t* sbuf = static_cast<uint8_t*>(allocate(scs > cs ? scs : cs)); // one cluster of either
    if (sbuf == nullptr)
        return Status::NoMemory;
    auto is_zero = [](const uint8_t* p, uint64_t n) {
        for (uint64_t k = 0; k < n; ++k)
            if (p[k] != 0)
                return false;
        return true;
    };
    if (dst.chunks == nullptr) { // first merge into dst: its current content, non-zero clusters only
        uint8_t** ch = static_cast<uint8_t**>(allocate(uint64_t{dst.table_size} * sizeof(uint8_t*)));
        if (ch == nullptr)
            return Status::NoMemory;
        for (uint32_t i = 0; i < dst.table_size; ++i)
            ch[i] = nullptr;
        for (uint32_t i = 0; i < dst.table_size && dst.table != nullptr; ++i) {
            if (dst.table[i] == 0)
                continue;
            if (const Status st = read_data_cluster(img_, dst, i, sbuf); st != Status::Ok)
                return st;
            if (is_zero(sbuf, cs))
                continue;
            if (cs > BITMAP_MAX_MERGED_BYTES - merged_bytes_)
                return fail(Status::TooLarge, "bitmap: the merged bitmaps exceed instar's 64 MiB limit");
            ch[i] = static_cast<uint8_t*>(allocate(cs));
            if (ch[i] == nullptr)
                return Status::NoMemory;
            merged_bytes_ += cs;
            __builtin_memcpy(ch[i], sbuf, static_cast<size_t>(cs));
        }
        dst.chunks = ch;
    }
    const uint64_t src_bits = (size_ + gs - 1) / gs;
    for (uint32_t i = 0; i < src.table_size; ++i) {
        if (src.chunks != nullptr) {
            if (src.chunks[i] == nullptr)
                continue;
        } else if (src.table == nullptr || src.table[i] == 0) {
            continue; // added or cleared in this run, or a zero cluster
        }
        if (const Status st = read_data_cluster(src_img, src, i, sbuf); st != Status::Ok)
            return st;
        if (gd == gs && scs == cs) {
            if (is_zero(sbuf, cs))
                continue;
            uint8_t* o = nullptr;
            if (const Status st = chunk(dst, i, &o); st != Status::Ok)
                return st;
            for (uint64_t k = 0; k < cs; ++k)
                o[k] |= sbuf[k];
            continue;
        }
        // Each set source bit k covers disk bytes [k * gs, (k + 1) * gs) (clamped to the disk).
        for (uint64_t j = 0; j < scs; ++j) {
            if (sbuf[j] == 0)
                continue;
            for (uint32_t t = 0; t < 8; ++t) {
                if (!((sbuf[j] >> t) & 1))
                    continue;
                const uint64_t k = (uint64_t{i} * scs + j) * 8 + t;
                if (k >= src_bits)
                    break;
                const uint64_t lo = k * gs;
                const uint64_t hi = lo + gs < size_ ? lo + gs : size_;
                if (const Status st = set_bits(dst, lo / gd, (hi - 1) / gd); st != Status::Ok)
                    return st;
            }
        }
    }
    alloc_.deallocate(sbuf, static_cast<size_t>(scs > cs ? scs : cs));
    // Bits past the disk's end stay clear, as qemu serializes them.
    const uint64_t bpc = cs * 8;
    for (uint64_t i = dst_bits / bpc; i < dst.table_size; ++i) {
        uint8_t* c = dst.chunks[i];
        if (c == nullptr)
            continue;
        for (uint64_t bit = dst_bits > i * bpc ? dst_bits - i * bpc : 0; bit < bpc; ++bit)
            c[bit / 8] &= static_cast<uint8_t>(~(1u << (bit % 8)));
    }
    dst.changed = true;
    return Status::Ok;
}

// Frees the data clusters a table names and, if `table_offset`, the table itself.
Status BitmapEdit::free_table(const uint64_t* table, uint32_t size, uint64_t table_offset) {
    const uint64_t cs = img_.cluster_size();
    for (uint32_t i = 0; i < size; ++i) {
        const uint64_t off = table[i] & BME_TABLE_ENTRY_OFFSET_MASK;
        if (off == 0)
            continue;
        if (const Status st = img_.free_clusters(off, cs); st != Status::Ok)
            return st;
        // qemu frees bitmap data with QCOW2_DISCARD_ALWAYS: the cluster becomes a hole (zeros).
        if (img_.device().discard(off, cs) != Status::Ok) {
            __builtin_memset(cache_, 0, static_cast<size_t>(cs));
            if (const Status st = img_.write(off, cache_, static_cast<size_t>(cs)); st != Status::Ok)
                return st;
        }
    }
    if (table_offset != 0 && size != 0)
        return img_.free_clusters(table_offset, uint64_t{size} * 8);
    return Status::Ok;
}

// Frees a loaded bitmap's data clusters (in table order) and then its table, as qemu's
// free_bitmap_clusters; its entries are read again (still allocated; checked as on load).
Status BitmapEdit::free_original(const Bm& b) {
    Bm old = b;
    old.table = nullptr;
    old.chunks = nullptr;
    old.table_offset = b.orig_table_offset;
    old.table_size = b.orig_table_size;
    if (const Status st = load_table(img_, old); st != Status::Ok)
        return st == Status::Corrupt ? Status::Ok : st; // a broken table is leaked, as qemu does
    if (const Status st = free_table(old.table, old.table_size, old.table_offset); st != Status::Ok)
        return st;
    alloc_.deallocate(old.table, old.table_size == 0 ? 8 : static_cast<size_t>(uint64_t{old.table_size} * 8));
    return Status::Ok;
}

uint64_t BitmapEdit::dir_bytes(const DirEnt* e, uint32_t n) const {
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; ++i)
        size += round_up8(sizeof(Qcow2BitmapDirEntryDisk) + uint64_t{e[i].b->name_len});
    return size; // <= QCOW2_MAX_BITMAP_DIRECTORY_SIZE: checked on load and by add_bitmap
}

// Writes the directory of `e` at `offset`. qemu_marks: with the in-use flag qemu's open sets on
// every consistent bitmap it loads (the bytes qemu leaves in a directory it frees).
Status BitmapEdit::write_dir(const DirEnt* e, uint32_t n, bool qemu_marks, uint64_t offset) {
    const uint64_t size = dir_bytes(e, n);
    uint8_t* dir = static_cast<uint8_t*>(allocate(size));
    if (dir == nullptr)
        return Status::NoMemory;
    __builtin_memset(dir, 0, static_cast<size_t>(size));
    uint64_t p = 0;
    for (uint32_t i = 0; i < n; ++i) {
        const Bm& b = *e[i].b;
        uint32_t flags = e[i].flags;
        if (qemu_marks && b.orig_table_offset != 0 && !(b.orig_flags & BME_FLAG_IN_USE))
            flags |= BME_FLAG_IN_USE;
        store_be64(dir + p, e[i].table_offset);
        store_be32(dir + p + 8, e[i].table_size);
        store_be32(dir + p + 12, flags);
        dir[p + 16] = BT_DIRTY_TRACKING_BITMAP;
        dir[p + 17] = b.gran_bits;
        store_be16(dir + p + 18, b.name_len);
        store_be32(dir + p + 20, 0);
        __builtin_memcpy(dir + p + 24, b.name, b.name_len);
        p += round_up8(sizeof(Qcow2BitmapDirEntryDisk) + uint64_t{b.name_len});
    }
    const Status st = img_.write(offset, dir, static_cast<size_t>(size));
    alloc_.deallocate(dir, static_cast<size_t>(size));
    return st;
}

// qemu's store_bitmap: the bitmap's non-zero data clusters in ascending order, then its table.
// The content: merged data in memory, zeros (added or cleared), or the loaded bitmap's own.
Status BitmapEdit::store_bitmap(Bm& b, uint64_t* table_offset) {
    const uint64_t cs = img_.cluster_size();
    const uint64_t g = uint64_t{1} << b.gran_bits;
    uint64_t* table = static_cast<uint64_t*>(allocate(uint64_t{b.table_size} * 8));
    uint8_t* buf = static_cast<uint8_t*>(allocate(cs));
    if (table == nullptr || buf == nullptr)
        return Status::NoMemory;
    const bool loaded = b.chunks == nullptr && !b.changed;
    if (loaded)
        if (const Status st = load_table(img_, b); st != Status::Ok)
            return st;
    // The bits stored: those of the disk (size_); a loaded bitmap's own content stops at the size
    // it was loaded for (a resize's hbitmap_truncate: a grown bitmap's new bits are clear).
    const uint64_t nbits = (size_ + g - 1) / g;
    const uint64_t loaded_bits = (loaded_size_ + g - 1) / g;
    const uint64_t keep = loaded && loaded_bits < nbits ? loaded_bits : nbits;
    const uint64_t cluster_bits = cs * 8;
    for (uint32_t k = 0; k < b.table_size; ++k) {
        table[k] = 0;
        if (b.chunks == nullptr ? b.changed || k >= b.table_entries || b.table[k] == 0 : b.chunks[k] == nullptr)
            continue; // all zeros
        const uint64_t first = uint64_t{k} * cluster_bits;
        if (first >= keep)
            continue;
        if (const Status st = read_data_cluster(img_, b, k, buf); st != Status::Ok)
            return st;
        const uint64_t in = keep - first; // bits of this cluster kept; the rest serialize as zeros
        if (in < cluster_bits) {
            uint64_t byte = in / 8;
            if (in % 8 != 0)
                buf[byte++] &= static_cast<uint8_t>((1u << (in % 8)) - 1);
            __builtin_memset(buf + byte, 0, static_cast<size_t>(cs - byte));
        }
        bool zero = true;
        for (uint64_t j = 0; j < cs && zero; ++j)
            zero = buf[j] == 0;
        if (zero)
            continue;
        uint64_t off = 0;
        if (const Status st = img_.alloc_clusters(cs, &off); st != Status::Ok)
            return st;
        if (const Status st = img_.write(off, buf, static_cast<size_t>(cs)); st != Status::Ok)
            return st;
        table[k] = off;
    }
    uint64_t off = 0;
    if (b.table_size != 0) {
        if (const Status st = img_.alloc_clusters(uint64_t{b.table_size} * 8, &off); st != Status::Ok)
            return st;
        if (const Status st = img_.write_table(off, table, b.table_size); st != Status::Ok)
            return st;
    }
    alloc_.deallocate(buf, static_cast<size_t>(cs));
    alloc_.deallocate(table, b.table_size == 0 ? 8 : static_cast<size_t>(uint64_t{b.table_size} * 8));
    *table_offset = off;
    return Status::Ok;
}

// Stores the run's result in qemu-img's sequence, so the file comes out as qemu-img's: qemu's open
// marks the loaded bitmaps in use (in the directory, in place); each --remove writes a directory
// without the bitmap, switches the header to it and frees the old one and the bitmap; closing
// stores every consistent bitmap anew (store_bitmap, in directory order, new ones last), writes a
// new directory, switches, and frees the old directory and tables. Unlike qemu, the in-use marks
// are only written into directories already freed (their bytes, as qemu leaves them), so a kill
// at any point leaves consistent bitmaps.
Status BitmapEdit::store() {
    // The directory on disk: the loaded bitmaps, in order.
    DirEnt* disk = static_cast<DirEnt*>(allocate(uint64_t{orig_count_} * sizeof(DirEnt)));
    DirEnt* prev = static_cast<DirEnt*>(allocate(uint64_t{orig_count_} * sizeof(DirEnt)));
    if (disk == nullptr || prev == nullptr)
        return Status::NoMemory;
    uint32_t n = orig_count_;
    for (uint32_t i = 0; i < n; ++i)
        disk[i] = {&bms_[i], bms_[i].orig_flags, bms_[i].orig_table_offset, bms_[i].orig_table_size};
    uint64_t dir_off = ext_.nb_bitmaps > 0 ? ext_.bitmap_directory_offset : 0;
    // Frees the directory the header no longer names and leaves qemu's bytes in it.
    auto retire_dir = [&](uint64_t off, const DirEnt* e, uint32_t count) -> Status {
        if (off == 0 || count == 0)
            return Status::Ok;
        if (const Status st = img_.free_clusters(off, dir_bytes(e, count)); st != Status::Ok)
            return st;
        return write_dir(e, count, true, off);
    };
    // --remove, in command-line order (qemu: qcow2_co_remove_persistent_dirty_bitmap).
    for (uint32_t r = 0; r < remove_count_; ++r) {
        const Bm* gone = &bms_[removes_[r]];
        uint32_t at = n;
        for (uint32_t i = 0; i < n; ++i)
            if (disk[i].b == gone)
                at = i;
        if (at == n)
            continue;
        __builtin_memcpy(prev, disk, n * sizeof(DirEnt));
        const uint32_t prev_n = n;
        for (uint32_t i = at; i + 1 < n; ++i)
            disk[i] = disk[i + 1];
        --n;
        uint64_t new_off = 0;
        if (n > 0) {
            if (const Status st = img_.alloc_clusters(dir_bytes(disk, n), &new_off); st != Status::Ok)
                return st;
            if (const Status st = write_dir(disk, n, false, new_off); st != Status::Ok)
                return st;
        }
        if (const Status st = img_.sync(); st != Status::Ok)
            return st;
        if (const Status st = switch_header(n, dir_bytes(disk, n), new_off); st != Status::Ok)
            return st;
        if (const Status st = retire_dir(dir_off, prev, prev_n); st != Status::Ok)
            return st;
        dir_off = new_off;
        if (const Status st = free_original(*gone); st != Status::Ok)
            return st;
    }
    // Closing: every consistent bitmap is stored anew (qemu_store_persistent_dirty_bitmaps).
    bool need_write = false;
    for (uint32_t i = 0; i < count_; ++i)
        need_write = need_write || (!bms_[i].removed && !(bms_[i].orig_flags & BME_FLAG_IN_USE));
    if (!need_write)
        return img_.sync();
    uint32_t total = n;
    for (uint32_t i = orig_count_; i < count_; ++i)
        total += !bms_[i].removed;
    DirEnt* fin = static_cast<DirEnt*>(allocate(uint64_t{total} * sizeof(DirEnt)));
    if (fin == nullptr)
        return Status::NoMemory;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; ++i)
        fin[m++] = disk[i];
    for (uint32_t i = orig_count_; i < count_; ++i)
        if (!bms_[i].removed)
            fin[m++] = {&bms_[i], 0, 0, bms_[i].table_size};
    for (uint32_t i = 0; i < m; ++i) {
        Bm& b = *const_cast<Bm*>(fin[i].b);
        if (b.orig_flags & BME_FLAG_IN_USE)
            continue; // inconsistent: left as it is
        if (const Status st = store_bitmap(b, &fin[i].table_offset); st != Status::Ok)
            return st;
        fin[i].flags = b.flags & BME_FLAG_AUTO;
        fin[i].table_size = b.table_size;
    }
    const uint64_t fin_size = dir_bytes(fin, m);
    uint64_t fin_off = 0;
    if (const Status st = img_.alloc_clusters(fin_size, &fin_off); st != Status::Ok)
        return st;
    if (const Status st = write_dir(fin, m, false, fin_off); st != Status::Ok)
        return st;
    if (const Status st = img_.sync(); st != Status::Ok)
        return st;
    if (const Status st = switch_header(m, fin_size, fin_off); st != Status::Ok)
        return st;
    if (const Status st = retire_dir(dir_off, disk, n); st != Status::Ok)
        return st;
    for (uint32_t i = 0; i < n; ++i) // the replaced tables (qemu's drop_tables), in directory order
        if (!(disk[i].b->orig_flags & BME_FLAG_IN_USE))
            if (const Status st = free_original(*disk[i].b); st != Status::Ok)
                return st;
    return img_.sync();
}

// The switch: cluster 0 rebuilt as qemu's qcow2_update_header writes it (autoclear bit 0, the
// extensions with the bitmaps one where qemu puts it, the backing file name after them, zeros to
// the cluster's end), in one write, then flushed.
Status BitmapEdit::switch_header(uint32_t live, uint64_t dir_size, uint64_t dir_off) {
    const uint64_t cs = img_.cluster_size();
    const Qcow2Header& h = img_.header();
    const uint64_t ext_start = h.header_length;
    const uint64_t ext_end = h.extensions_end();
    uint8_t* out = static_cast<uint8_t*>(allocate(cs));
    if (out == nullptr)
        return Status::NoMemory;
    __builtin_memset(out, 0, static_cast<size_t>(cs));
    __builtin_memcpy(out, header_cluster_, static_cast<size_t>(ext_start));
    uint64_t w = ext_start;
    bool placed = false;
    auto put_bitmaps = [&]() -> bool {
        placed = true;
        if (live == 0)
            return true;
        if (cs - w < 8 + 24)
            return false;
        store_be32(out + w, QCOW2_EXT_MAGIC_BITMAPS);
        store_be32(out + w + 4, 24);
        store_be32(out + w + 8, live);
        store_be32(out + w + 12, 0);
        store_be64(out + w + 16, dir_size);
        store_be64(out + w + 24, dir_off);
        w += 32;
        return true;
    };
    uint64_t r = ext_start;
    while (r + 8 <= ext_end) {
        const uint32_t magic = load_be32(header_cluster_ + r);
        const uint32_t len = load_be32(header_cluster_ + r + 4);
        if (magic == QCOW2_EXT_MAGIC_END)
            break;
        const uint64_t total = 8 + round_up8(len);
        if (total > ext_end - r)
            return Status::Corrupt;
        if (magic != QCOW2_EXT_MAGIC_BITMAPS) {
            // qemu writes the bitmaps extension after the feature table, before unknown ones.
            const bool known = magic == QCOW2_EXT_MAGIC_BACKING_FORMAT || magic == QCOW2_EXT_MAGIC_DATA_FILE ||
                               magic == QCOW2_EXT_MAGIC_CRYPTO_HEADER || magic == QCOW2_EXT_MAGIC_FEATURE_TABLE;
            if (!known && !placed && !put_bitmaps())
                return fail(Status::TooLarge, "no room for the bitmaps extension in the header cluster");
            if (cs - w < total)
                return fail(Status::TooLarge, "no room for the bitmaps extension in the header cluster");
            __builtin_memcpy(out + w, header_cluster_ + r, static_cast<size_t>(total));
            w += total;
        }
        r += total;
    }
    if (!placed && !put_bitmaps())
        return fail(Status::TooLarge, "no room for the bitmaps extension in the header cluster");
    if (cs - w < 8)
        return fail(Status::TooLarge, "no room for the bitmaps extension in the header cluster");
    w += 8; // end marker (zeros)
    if (h.backing_file_offset != 0) {
        if (h.backing_file_size > cs - w || h.backing_file_offset > cs || h.backing_file_size > cs - h.backing_file_offset)
            return fail(Status::TooLarge, "no room for the bitmaps extension in the header cluster");
        __builtin_memcpy(out + w, header_cluster_ + h.backing_file_offset, h.backing_file_size);
        store_be64(out + 8, w); // backing_file_offset
        w += h.backing_file_size;
    }
    uint64_t autoclear = h.autoclear_features;
    autoclear = live > 0 ? (autoclear | QCOW2_AUTOCLEAR_BITMAPS) : (autoclear & ~QCOW2_AUTOCLEAR_BITMAPS);
    store_be64(out + QCOW2_HDR_AUTOCLEAR, autoclear);
    if (switch_size_ != 0)
        store_be64(out + QCOW2_HDR_SIZE, switch_size_);
    const Status wst = img_.write_header(0, out, static_cast<size_t>(cs)); // the parsed header follows
    alloc_.deallocate(out, static_cast<size_t>(cs));
    if (wst != Status::Ok)
        return wst;
    if (const Status st = host_.flush(img_.device()); st != Status::Ok)
        return st;
    return Status::Ok;
}

Status BitmapEdit::add_bitmap(const uint8_t* name, size_t len, uint64_t granularity, uint32_t flags, const char* node,
                              size_t node_len, Msg& why) {
    const Qcow2Header& h = img_.header();
    const uint64_t cs = img_.cluster_size();
    // qemu-img passes -g as qmp's uint32_t granularity (4G becomes 0, still "given"); without
    // -g, qemu's default: the cluster size within [4 KiB, 64 KiB].
    const uint64_t g = granularity != 0 ? (granularity & 0xffffffffu) : (cs < 4096 ? 4096 : cs > 65536 ? 65536 : cs);
    if (len == 0) {
        why.add("Bitmap name cannot be empty");
        return Status::Ok;
    }
    if (granularity != 0 && (g < 512 || (g & (g - 1)) != 0)) {
        why.add("Granularity must be power of 2 and at least 512");
        return Status::Ok;
    }
    if (find(bms_, count_, name, len) >= 0) {
        why.add("Bitmap already exists: ").add(reinterpret_cast<const char*>(name), len);
        return Status::Ok;
    }
    Msg inner;
    const uint32_t bits = ctz64(g);
    const uint64_t bytes = bitmap_bytes_for(size_, static_cast<uint8_t>(bits)); // g: a power of 2 below 2^32
    uint32_t live = 0;
    uint64_t dsize = 0;
    for (uint32_t k = 0; k < count_; ++k)
        if (!bms_[k].removed) {
            ++live;
            dsize += round_up8(sizeof(Qcow2BitmapDirEntryDisk) + uint64_t{bms_[k].name_len});
        }
    dsize += round_up8(sizeof(Qcow2BitmapDirEntryDisk) + uint64_t{len});
    if (h.version < 3)
        inner.add("Cannot store dirty bitmaps in qcow2 v2 files");
    else if (bits > BME_MAX_GRANULARITY_BITS)
        inner.add("Granularity exceeds maximum (2147483648 bytes)");
    else if (bits < BME_MIN_GRANULARITY_BITS)
        inner.add("Granularity is under minimum (512 bytes)");
    else if (bytes > BME_MAX_PHYS_SIZE || bytes > BME_MAX_TABLE_SIZE * cs)
        inner.add("Too much space will be occupied by the bitmap. Use larger granularity");
    else if (len > BME_MAX_NAME_SIZE)
        inner.add("Name length exceeds maximum (1023 characters)");
    else if (live + 1 > QCOW2_MAX_BITMAPS)
        inner.add("Maximum number of persistent bitmaps is already reached");
    else if (dsize > QCOW2_MAX_BITMAP_DIRECTORY_SIZE)
        inner.add("Not enough space in the bitmap directory");
    if (inner.len != 0) {
        why.add("Can't make bitmap '").add(reinterpret_cast<const char*>(name), len);
        why.add("' persistent in '").add(node, node_len).add("': ").add(inner.text, inner.len);
        return Status::Ok;
    }
    if (count_ >= capacity_)
        return fail(Status::Invalid, "bitmap: directory capacity");
    Bm& b = bms_[count_++];
    b = Bm();
    b.name = name;
    b.name_len = static_cast<uint16_t>(len);
    b.gran_bits = static_cast<uint8_t>(bits);
    b.flags = flags;
    b.table_size = static_cast<uint32_t>(bitmap_table_entries(size_, b.gran_bits, cs));
    b.changed = true;
    return Status::Ok;
}

Status BitmapEdit::merge_bitmap(const uint8_t* dst_name, size_t dst_len, Bm* src_list, uint32_t src_count,
                                Qcow2Inplace& src_img, const uint8_t* src_name, size_t src_len, Msg& why,
                                const char** hint) {
    auto not_found = [&](const uint8_t* n, size_t len) {
        why.add("Dirty bitmap '").add(reinterpret_cast<const char*>(n), len).add("' not found");
    };
    const int found = find(bms_, count_, dst_name, dst_len);
    if (found < 0) {
        not_found(dst_name, dst_len);
        return Status::Ok;
    }
    const int s = find(src_list, src_count, src_name, src_len);
    if (s < 0) {
        not_found(src_name, src_len);
        return Status::Ok;
    }
    Bm& dst = bms_[found];
    Bm& src = src_list[s];
    if (dst.flags & BME_FLAG_IN_USE) {
        inconsistent(dst, why);
        *hint = INCONSISTENT_HINT;
        return Status::Ok;
    }
    if (src.flags & BME_FLAG_IN_USE) {
        inconsistent(src, why);
        *hint = INCONSISTENT_HINT;
        return Status::Ok;
    }
    const uint64_t src_size = src_img.header().size;
    if (src_size != size_) {
        why.add("Bitmaps are of different sizes (destination size is ").num(size_);
        why.add(", source size is ").num(src_size).add(") and can't be merged");
        return Status::Ok;
    }
    // A bitmap added or cleared in this run has no table yet: all zeros.
    if (!dst.changed)
        if (const Status st = load_table(img_, dst); st != Status::Ok)
            return st;
    if (src.table == nullptr && !src.changed)
        if (const Status st = load_table(src_img, src); st != Status::Ok)
            return st;
    if (src.table == nullptr && src.chunks == nullptr)
        return Status::Ok; // added or cleared in this run: nothing to merge
    return merge(src_img, src, dst);
}

Status BitmapEdit::run() {
    // Arguments (host-built, still checked against their length).
    if (req_.args_len < sizeof(guest::BitmapArgs))
        return fail(Status::Invalid, "bitmap: truncated arguments");
    guest::BitmapArgs a;
    __builtin_memcpy(&a, req_.args, sizeof a);
    const bool copy_all = (a.flags & guest::BITMAP_COPY_ALL) != 0;
    const bool store_only = (a.flags & guest::BITMAP_STORE_ONLY) != 0;
    if ((a.action_count == 0 && !copy_all && !store_only) || a.action_count > guest::BITMAP_MAX_ACTIONS)
        return fail(Status::Invalid, "bitmap: bad action count");
    size_t pos = sizeof a;
    struct Act {
        uint32_t kind;
        const uint8_t* src;
        uint32_t src_len;
    };
    Act* acts = static_cast<Act*>(allocate(uint64_t{a.action_count == 0 ? 1 : a.action_count} * sizeof(Act)));
    if (acts == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < a.action_count; ++i) {
        if (req_.args_len - pos < sizeof(guest::BitmapAction))
            return fail(Status::Invalid, "bitmap: truncated arguments");
        guest::BitmapAction ba;
        __builtin_memcpy(&ba, req_.args + pos, sizeof ba);
        pos += sizeof ba;
        if (ba.src_len > req_.args_len - pos)
            return fail(Status::Invalid, "bitmap: truncated arguments");
        acts[i] = {ba.kind, req_.args + pos, ba.src_len};
        pos += ba.src_len;
    }
    if (a.name_len > req_.args_len - pos)
        return fail(Status::Invalid, "bitmap: truncated arguments");
    name_ = req_.args + pos;
    name_len_ = a.name_len;
    pos += a.name_len;
    if (a.node_len != req_.args_len - pos)
        return fail(Status::Invalid, "bitmap: truncated arguments");
    const char* node = reinterpret_cast<const char*>(req_.args + pos);
    const size_t node_len = a.node_len;

    if (!req_.writable)
        return fail(Status::Invalid, "bitmap: the image is not writable");
    if (const Status st = img_.open(*req_.image, req_.image_length, alloc_, &host_); st != Status::Ok)
        return st;
    const Qcow2Header& h = img_.header();
    const uint64_t cs = img_.cluster_size();
    if (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        return fail(Status::Corrupt, "qcow2: Image is corrupt; cannot be opened read/write");
    if (h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return fail(Status::Unsupported,
                    "the image is dirty (lazy refcounts); repair it first with 'qemu-img check -r all'");
    size_ = h.size;
    loaded_size_ = h.size;
    header_cluster_ = static_cast<uint8_t*>(allocate(cs));
    cache_ = static_cast<uint8_t*>(allocate(cs));
    if (header_cluster_ == nullptr || cache_ == nullptr)
        return Status::NoMemory;
    if (const Status st = qcow2_header_cluster_read(img_.device(), img_.file_length(), h, header_cluster_, &ext_);
        st != Status::Ok)
        return st;

    // The source image of -b (read-only), its bitmaps loaded the same way.
    Bm* src_list = nullptr;
    uint32_t src_count = 0;
    Qcow2Inplace* src_img = &img_;
    if (a.flags & guest::BITMAP_SOURCE_EMPTY) {
        src_count = 0;
    } else if (a.flags & guest::BITMAP_SOURCE_FILE) {
        if (req_.extra_count < 1)
            return fail(Status::Invalid, "bitmap: the source image is missing");
        guest::BlockDevice& sd = *req_.extra[0];
        if (const Status st = src_img_.open(sd, sd.size(), alloc_, nullptr); st != Status::Ok)
            return fail(st, "bitmap: the source image is not a valid qcow2 image");
        uint8_t* shdr = static_cast<uint8_t*>(allocate(src_img_.cluster_size()));
        if (shdr == nullptr)
            return Status::NoMemory;
        Qcow2Extensions sext{};
        if (const Status st = qcow2_header_cluster_read(sd, src_img_.file_length(), src_img_.header(), shdr, &sext);
            st != Status::Ok)
            return st;
        uint32_t scap = 0;
        if (const Status st = load_directory(src_img_, sext, &src_bms_, &src_count_, &scap, 0); st != Status::Ok)
            return st;
        src_list = src_bms_;
        src_count = src_count_;
        src_img = &src_img_;
    }
    // The image's bitmaps, with room for every one this run may add.
    uint32_t adds = copy_all ? src_count : 0;
    for (uint32_t i = 0; i < a.action_count; ++i)
        adds += acts[i].kind == static_cast<uint32_t>(BitmapActionKind::Add);
    if (const Status st = load_directory(img_, ext_, &bms_, &count_, &capacity_, adds); st != Status::Ok)
        return st;
    orig_count_ = count_;
    removes_ = static_cast<uint32_t*>(allocate(uint64_t{a.action_count == 0 ? 1 : a.action_count} * 4));
    if (removes_ == nullptr)
        return Status::NoMemory;
    if (!(a.flags & (guest::BITMAP_SOURCE_FILE | guest::BITMAP_SOURCE_EMPTY))) {
        src_list = bms_; // --merge from the image itself
        src_count = count_;
    }

    bool any_change = false;
    Status result = Status::Ok;
    // convert --bitmaps: qemu-img's convert_copy_bitmaps over the source's bitmaps.
    for (uint32_t i = 0; copy_all && i < src_count && result == Status::Ok; ++i) {
        const Bm& s = src_list[i];
        if (s.flags & BME_FLAG_IN_USE)
            continue; // "Skipping inconsistent bitmap" (the host warns)
        Msg why;
        const char* what = "create";
        const char* hint = nullptr;
        if (const Status st = add_bitmap(s.name, s.name_len, uint64_t{1} << s.gran_bits, s.flags & BME_FLAG_AUTO, node,
                                         node_len, why);
            st != Status::Ok)
            return st;
        if (why.len == 0) {
            any_change = true;
            what = "populate";
            if (const Status st = merge_bitmap(s.name, s.name_len, src_list, src_count, *src_img, s.name, s.name_len,
                                               why, &hint);
                st != Status::Ok)
                return st;
            if (why.len != 0) { // qemu removes the bitmap it could not fill
                const int d = find(bms_, count_, s.name, s.name_len);
                if (d >= 0)
                    bms_[d].removed = true;
            }
        }
        if (why.len != 0) {
            Msg m;
            m.add("\x01" "Failed to ").add(what).add(" bitmap ").add(reinterpret_cast<const char*>(s.name), s.name_len);
            m.add(": ").add(why.text, why.len).add("\n");
            host_.err(m.text, m.len);
            if (hint)
                host_.err(hint, cstr_len(hint));
            result = Status::Invalid;
        }
    }
    for (uint32_t i = 0; i < a.action_count && result == Status::Ok; ++i) {
        const Act& act = acts[i];
        const int found = find(bms_, count_, name_, name_len_);
        Msg why;
        const char* op = "";
        auto not_found = [&](const uint8_t* n, size_t len) {
            why.add("Dirty bitmap '").add(reinterpret_cast<const char*>(n), len).add("' not found");
        };
        const char* hint = nullptr;
        switch (static_cast<BitmapActionKind>(act.kind)) {
        case BitmapActionKind::Add:
            op = "add";
            if (const Status st = add_bitmap(name_, name_len_, a.granularity, BME_FLAG_AUTO, node, node_len, why);
                st != Status::Ok)
                return st;
            break;
        case BitmapActionKind::Remove:
            op = "remove";
            if (found < 0) {
                not_found(name_, name_len_);
                break;
            }
            bms_[found].removed = true;
            if (bms_[found].orig_table_offset != 0)
                removes_[remove_count_++] = static_cast<uint32_t>(found);
            break;
        case BitmapActionKind::Clear:
        case BitmapActionKind::Enable:
        case BitmapActionKind::Disable: {
            const auto k = static_cast<BitmapActionKind>(act.kind);
            op = k == BitmapActionKind::Clear ? "clear" : k == BitmapActionKind::Enable ? "enable" : "disable";
            if (found < 0) {
                not_found(name_, name_len_);
                break;
            }
            Bm& b = bms_[found];
            if (b.flags & BME_FLAG_IN_USE) {
                inconsistent(b, why);
                hint = INCONSISTENT_HINT;
                break;
            }
            if (k == BitmapActionKind::Clear) {
                b.table = nullptr; // all zeros from now on
                b.chunks = nullptr;
                b.changed = true;
            } else if (k == BitmapActionKind::Enable) {
                b.flags |= BME_FLAG_AUTO;
            } else {
                b.flags &= ~BME_FLAG_AUTO;
            }
            break;
        }
        case BitmapActionKind::Merge:
            op = "merge";
            // From the image itself, bitmaps added by earlier actions count too.
            if (const Status st = merge_bitmap(name_, name_len_, src_list, src_list == bms_ ? count_ : src_count,
                                               *src_img, act.src, act.src_len,
                                               why, &hint);
                st != Status::Ok)
                return st;
            break;
        default:
            return fail(Status::Invalid, "bitmap: unknown action");
        }
        if (why.len != 0) {
            op_error(op, why, hint);
            result = Status::Invalid;
            break;
        }
        any_change = true;
    }
    (void)any_change; // qemu-img stores on close whatever happened (all consistent bitmaps anew)
    if (const Status st = store(); st != Status::Ok)
        return st;
    return result;
}

// qemu-img's read-write open loads every bitmap (resize: qcow2_co_truncate refuses when one is
// inconsistent, qcow2_truncate_bitmaps_check); its close stores each anew (carry_store).
Status BitmapEdit::carry_load(bool refuse_inconsistent) {
    const Qcow2Header& h = img_.header();
    const uint64_t cs = img_.cluster_size();
    size_ = h.size;
    loaded_size_ = h.size;
    header_cluster_ = static_cast<uint8_t*>(allocate(cs));
    cache_ = static_cast<uint8_t*>(allocate(cs));
    removes_ = static_cast<uint32_t*>(allocate(4));
    if (header_cluster_ == nullptr || cache_ == nullptr || removes_ == nullptr)
        return Status::NoMemory;
    if (const Status st = qcow2_header_cluster_read(img_.device(), img_.file_length(), h, header_cluster_, &ext_);
        st != Status::Ok)
        return st;
    if (const Status st = load_directory(img_, ext_, &bms_, &count_, &capacity_, 0); st != Status::Ok)
        return st;
    orig_count_ = count_;
    for (uint32_t i = 0; i < count_; ++i) {
        Bm& b = bms_[i];
        if ((b.flags & BME_FLAG_IN_USE) && !refuse_inconsistent)
            continue; // left as it is
        if (b.flags & BME_FLAG_IN_USE) {
            Msg why;
            why.add("\x01");
            inconsistent(b, why);
            why.add("\n").add(INCONSISTENT_HINT);
            host_.err(why.text, why.len);
            return Status::Unsupported;
        }
        // The tables are read now, while the directory still matches the disk's size.
        if (const Status st = load_table(img_, b); st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

// What qemu's store refuses for a bitmap grown too large (check_constraints_on_bitmap): qemu has
// resized the image by then, warns "Lost persistent bitmaps" and leaves them all inconsistent;
// instar refuses the resize before writing anything (divergence qcow2-resize-bitmap-too-big).
Status BitmapEdit::carry_check(uint64_t new_size) {
    const uint64_t cs = img_.cluster_size();
    for (uint32_t i = 0; i < count_; ++i) {
        if (bms_[i].orig_flags & BME_FLAG_IN_USE)
            continue;
        const uint64_t bytes = bitmap_bytes_for(new_size, bms_[i].gran_bits);
        if (bytes > BME_MAX_PHYS_SIZE || bitmap_table_entries(new_size, bms_[i].gran_bits, cs) > BME_MAX_TABLE_SIZE) {
            Msg why;
            why.add("Bitmap '").add(reinterpret_cast<const char*>(bms_[i].name), bms_[i].name_len);
            why.add("' doesn't satisfy the constraints at the new size: Too much space will be occupied by the "
                    "bitmap. Use larger granularity (instar refuses the resize: qemu-img resizes and loses the "
                    "persistent bitmaps)");
            return fail(Status::TooLarge, why.c_str());
        }
    }
    return Status::Ok;
}

bool BitmapEdit::carry_tables_change(uint64_t new_size) const {
    const uint64_t cs = img_.cluster_size();
    for (uint32_t i = 0; i < count_; ++i)
        if (!(bms_[i].orig_flags & BME_FLAG_IN_USE) &&
            bitmap_table_entries(new_size, bms_[i].gran_bits, cs) != bms_[i].orig_table_size)
            return true;
    return false;
}

// Every bitmap stored anew for `new_size` (qemu's close), the header switch carrying the size too:
// the image is the resized one with bitmaps to match from that one write on.
Status BitmapEdit::carry_store(uint64_t new_size) {
    const uint64_t cs = img_.cluster_size();
    size_ = new_size;
    for (uint32_t i = 0; i < count_; ++i)
        if (!(bms_[i].orig_flags & BME_FLAG_IN_USE)) // an inconsistent one keeps its entry as it is
            bms_[i].table_size = static_cast<uint32_t>(bitmap_table_entries(new_size, bms_[i].gran_bits, cs));
    // The header cluster as the resize left it (a new L1 table, the size when shrinking).
    Qcow2Extensions ext{};
    if (const Status st = qcow2_header_cluster_read(img_.device(), img_.file_length(), img_.header(),
                                                    header_cluster_, &ext);
        st != Status::Ok)
        return st;
    switch_size_ = new_size;
    return store();
}

// The host prints a reason for a refusal; a failed action printed its own message.
class ReasonWatch final : public guest::EditHost {
public:
    explicit ReasonWatch(guest::EditHost& h) : h_(h) {}
    Status set_length(guest::BlockDevice& f, uint64_t l, guest::Prealloc m) override { return h_.set_length(f, l, m); }
    Status flush(guest::BlockDevice& f) override { return h_.flush(f); }
    Status add_file(const char* n, guest::BlockDevice** o) override { return h_.add_file(n, o); }
    Status out(const char* t, size_t l) override { return h_.out(t, l); }
    Status err(const char* t, size_t l) override {
        said = true;
        return h_.err(t, l);
    }
    void reason(const char* t, size_t l) override {
        said = true;
        h_.reason(t, l);
    }
    Status data(uint32_t k, const void* b, size_t l) override { return h_.data(k, b, l); }
    void progress(uint64_t d, uint64_t t) override { h_.progress(d, t); }
    bool said = false;

private:
    guest::EditHost& h_;
};

const char* status_words(Status st) {
    switch (st) {
    case Status::IoError: return "bitmap: I/O error on the image";
    case Status::Corrupt: return "bitmap: the image's bitmap metadata is corrupt";
    case Status::Unsupported: return "bitmap: the image uses a feature instar does not support";
    case Status::TooLarge: return "bitmap: the image's bitmap metadata exceeds instar's limits";
    case Status::NoMemory: return "bitmap: out of guest memory";
    default: return "bitmap: failed";
    }
}

} // namespace

guest::Status edit_bitmap(const guest::EditRequest& req, guest::EditHost& host) {
    ReasonWatch watch(host);
    BitmapEdit e(req, watch);
    const Status st = e.run();
    if (st != Status::Ok && !watch.said)
        return guest::edit_refuse(host, status_words(st), st);
    return st;
}

// Every bitmap dropped (amend's downgrade: a v2 image has no bitmaps): refcounts synced, the header
// switched to no directory (the extension gone, the autoclear bit cleared), then the directory,
// every table and every data cluster freed. A kill after the switch leaks what is not freed yet.
Status BitmapEdit::carry_drop() {
    if (count_ == 0 || ext_.nb_bitmaps == 0)
        return Status::Ok;
    if (const Status st = img_.sync(); st != Status::Ok)
        return st;
    if (const Status st = switch_header(0, 0, 0); st != Status::Ok)
        return st;
    uint64_t dir_size = 0;
    for (uint32_t i = 0; i < count_; ++i)
        dir_size += round_up8(sizeof(Qcow2BitmapDirEntryDisk) + uint64_t{bms_[i].name_len});
    if (const Status st = img_.free_clusters(ext_.bitmap_directory_offset, dir_size); st != Status::Ok)
        return st;
    for (uint32_t i = 0; i < count_; ++i)
        if (const Status st = free_original(bms_[i]); st != Status::Ok)
            return st;
    return img_.sync();
}

Qcow2BitmapCarry::Qcow2BitmapCarry(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& img)
    : alloc_(*req.allocator), edit_(guest::arena_new<BitmapEdit>(*req.allocator, req, host, img)) {}

Qcow2BitmapCarry::~Qcow2BitmapCarry() { guest::arena_delete(alloc_, static_cast<BitmapEdit*>(edit_)); }

Status Qcow2BitmapCarry::load(bool refuse_inconsistent) {
    return edit_ == nullptr ? Status::NoMemory : static_cast<BitmapEdit*>(edit_)->carry_load(refuse_inconsistent);
}
bool Qcow2BitmapCarry::present() const {
    return edit_ != nullptr && static_cast<const BitmapEdit*>(edit_)->carry_present();
}
Status Qcow2BitmapCarry::check(uint64_t new_size) { return static_cast<BitmapEdit*>(edit_)->carry_check(new_size); }
bool Qcow2BitmapCarry::tables_change(uint64_t new_size) const {
    return static_cast<const BitmapEdit*>(edit_)->carry_tables_change(new_size);
}
Status Qcow2BitmapCarry::store(uint64_t new_size) { return static_cast<BitmapEdit*>(edit_)->carry_store(new_size); }
Status Qcow2BitmapCarry::drop() { return static_cast<BitmapEdit*>(edit_)->carry_drop(); }

} // namespace instar::qcow2
