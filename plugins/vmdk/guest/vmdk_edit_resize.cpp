// vmdk: `resize`: growing or shrinking the virtual disk (EditCommand::Resize, docs/edit.md,
// docs/resize.md "vmdk, vpc, vhdx"). qemu-img refuses every vmdk resize ("Image format driver does
// not support resize"); this is an instar extension (divergence `vmdk-resize`).
//
// - monolithicSparse (a hosted sparse extent opened directly): the grain directory (and its
//   redundant copy) gains entries pointing at new zeroed grain tables at the file's end, moved
//   there whole when its sectors have no room; the header's capacity (and directory offsets) is the
//   switch; the embedded descriptor's extent line and cylinders follow.
// - descriptor files with FLAT extents (monolithicFlat, twoGbMaxExtentFlat, vmfs): the last extent
//   file grows (a twoGbMaxExtentFlat extent up to 2 GiB, then new NAME-fNNN.vmdk files beside it);
//   the rewritten descriptor is the switch. Shrinking shortens the last extent.
// - twoGbMaxExtentSparse: growing adds new sparse NAME-sNNN.vmdk extents (the last one is left as
//   it is: qemu sizes it by its header, so changing it would not wait for the descriptor);
//   shrinking cuts the last extent as monolithicSparse, then the descriptor.
// - streamOptimized as qemu writes it (tables after the header, compressed grains behind markers)
//   resizes as monolithicSparse; a grow first rewrites the old last grain when the old size ends
//   inside it (qemu inflates a grain to the length it was written with and fails a read past that,
//   so the grain is deflated again whole, its tail zeroed, at the file's end).
// - a shrink past the last extent's start drops the extents wholly past the new end from the
//   descriptor (the switch), cuts the one holding it, and reports the dropped files for the host
//   to remove (RESIZE_DATA_DROPPED_FILE).
// - descriptors mixing FLAT/VMFS and SPARSE extents, or with SPARSE extents under another
//   createType qemu opens (monolithicFlat, vmfs, twoGbMaxExtentFlat): the last extent decides the
//   grow (a sparse one outside a split set grows its capacity as monolithicSparse, its header
//   first, then the descriptor), the kept one decides the cut of a shrink.
// - COWD (vmfsSparse) files, alone or as VMFSSPARSE extents: resize_cowd (its header is the switch;
//   a grow gives the exposed range zeroed grain tables, the directory moved when too short).
// - a delta disk grown over a parent that reaches past the old end: the grown area gets grains of
//   its own so the parent does not show there (vmdk_resize_expose.h): monolithicSparse and a SPARSE
//   extent behind a descriptor (zeroed-grain entries or new grains), the new files of a
//   twoGbMaxExtentSparse set (and the grain holding its last extent's end, settle_split_tail), COWD
//   (new grains: it has no zeroed-grain entry), streamOptimized in qemu's layout (zeroed-grain
//   entries, the header's flag set with the switch; write_compressed_head). A streamOptimized delta
//   disk in VMware's footer layout is refused: its grow makes no grain tables for the new range.
#include "vmdk_edit.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/edit_device.h>
#include <instar/guest/edit_resize.h>
#include <instar/guest/format_util.h>

#include "vmdk_bytes.h"
#include "vmdk_create_descriptor.h"
#include "vmdk_create_extent.h"
#include "vmdk_descriptor.h"
#include "vmdk_existing_write.h"
#include "vmdk_read.h"
#include "vmdk_resize_expose.h"
#include "vmdk_sparse_header.h"
#include "vmdk_write.h"

namespace instar::vmdk {

using guest::EditHost;
using guest::EditRequest;
using guest::SizedDevice;
using guest::Status;

namespace {

// Bytes of tables copied, filled or scanned at a time (bounded guest buffer).
constexpr size_t CHUNK = 64 * 1024;
// Grain directory entries are 32-bit sector numbers: a sparse file ends below 2 TiB.
constexpr uint64_t SPARSE_MAX_FILE = (uint64_t{1} << 32) * 512;
// A descriptor file instar rewrites: qemu reads at most this much of one.
constexpr size_t DESC_MAX = VMDK_DESC_MAX;
// Extents one resize handles (the descriptor's bound).
constexpr uint32_t MAX_EXTENTS = VMDK_MAX_EXTENTS;

Status refuse(EditHost& host, Status st, const char* why) {
    guest::edit_refuse(host, why, st);
    return st;
}

void store_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// ---- descriptor text ----------------------------------------------------------------------------

struct LineEdit {
    size_t line_start; // offset of the extent line in the old text
    uint64_t sectors;  // its new sector count (DROP_LINE: the line goes)
};
constexpr uint64_t DROP_LINE = ~uint64_t{0};

struct Collected {
    const char* base;
    uint32_t count;
    uint32_t capacity;
    size_t* line_starts;
    ExtentLine* lines;
};

Status collect_line(void* ctx, const ExtentLine& line) {
    auto* c = static_cast<Collected*>(ctx);
    if (c->count == c->capacity)
        return Status::TooLarge;
    size_t at = static_cast<size_t>(line.file - c->base);
    while (at > 0 && c->base[at - 1] != '\n')
        --at;
    c->line_starts[c->count] = at;
    c->lines[c->count] = line;
    ++c->count;
    return Status::Ok;
}

// The integer value of `key = "N"` in the descriptor (def when absent or unparsable).
uint64_t ddb_number(Text t, const char* key, uint64_t def) {
    const long at = text_find(t, key);
    if (at < 0)
        return def;
    const char* p = t.s + at;
    const char* end = t.s + t.len;
    while (p < end && *p != '"' && *p != '\n')
        ++p;
    if (p == end || *p != '"')
        return def;
    ++p;
    uint64_t v = 0;
    bool any = false;
    while (p < end && *p >= '0' && *p <= '9' && v < (uint64_t{1} << 40)) {
        v = v * 10 + static_cast<uint64_t>(*p++ - '0');
        any = true;
    }
    return any && v > 0 ? v : def;
}

// Text output into a bounded buffer (Invalid when it does not fit).
struct Out {
    char* p;
    size_t cap;
    size_t n = 0;
    bool overflow = false;
    void put(const char* s, size_t len) {
        if (len > cap - n) {
            overflow = true;
            return;
        }
        __builtin_memcpy(p + n, s, len);
        n += len;
    }
    void put(const char* s) {
        size_t len = 0;
        while (s[len])
            ++len;
        put(s, len);
    }
    void put_u64(uint64_t v) {
        char tmp[20];
        size_t k = 0;
        do {
            tmp[k++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        char o[20];
        for (size_t i = 0; i < k; ++i)
            o[i] = tmp[k - 1 - i];
        put(o, k);
    }
};

// The old descriptor text with the edited extent lines' sector counts, `extra` (whole lines)
// after the last extent line, and ddb.geometry.cylinders for `size` (qemu's create formula).
Status rewrite_descriptor(Text t, const LineEdit* edits, uint32_t n_edits, const char* extra, size_t extra_len,
                          uint64_t size, Out* out) {
    const uint64_t heads = ddb_number(t, "ddb.geometry.heads", 16);
    const uint64_t sectors = ddb_number(t, "ddb.geometry.sectors", 63);
    const long cyl = text_find(t, "ddb.geometry.cylinders");
    size_t last_line_end = 0;
    for (uint32_t i = 0; i < n_edits; ++i) {
        size_t e = edits[i].line_start;
        while (e < t.len && t.s[e] != '\n')
            ++e;
        if (e < t.len)
            ++e;
        if (e > last_line_end)
            last_line_end = e;
    }
    size_t pos = 0;
    uint32_t next_edit = 0;
    while (pos < t.len) {
        size_t e = pos;
        while (e < t.len && t.s[e] != '\n')
            ++e;
        if (e < t.len)
            ++e;
        if (next_edit < n_edits && edits[next_edit].line_start == pos && edits[next_edit].sectors == DROP_LINE) {
            ++next_edit;
        } else if (next_edit < n_edits && edits[next_edit].line_start == pos) {
            // "RW <n> ...": the number after the access word is replaced.
            size_t q = pos;
            while (q < e && (t.s[q] == ' ' || t.s[q] == '\t'))
                ++q;
            while (q < e && t.s[q] != ' ' && t.s[q] != '\t')
                ++q;
            while (q < e && (t.s[q] == ' ' || t.s[q] == '\t'))
                ++q;
            size_t d = q;
            if (d < e && (t.s[d] == '+' || t.s[d] == '-'))
                ++d;
            while (d < e && t.s[d] >= '0' && t.s[d] <= '9')
                ++d;
            out->put(t.s + pos, q - pos);
            out->put_u64(edits[next_edit].sectors);
            out->put(t.s + d, e - d);
            ++next_edit;
        } else if (cyl >= 0 && static_cast<size_t>(cyl) >= pos && static_cast<size_t>(cyl) < e) {
            out->put(t.s + pos, static_cast<size_t>(cyl) - pos);
            out->put("ddb.geometry.cylinders = \"");
            out->put_u64(size / (sectors * heads * 512));
            out->put("\"\n");
        } else {
            out->put(t.s + pos, e - pos);
        }
        if (e == last_line_end && extra_len > 0) {
            if (e > 0 && t.s[e - 1] != '\n')
                out->put("\n", 1);
            out->put(extra, extra_len);
        }
        pos = e;
    }
    return out->overflow ? Status::TooLarge : Status::Ok;
}

// ---- monolithicSparse -----------------------------------------------------------------------------

struct Sparse {
    Vmdk4Header h;
    uint64_t l1_entry_sectors;
    uint64_t gt_bytes;     // one grain table, whole sectors
};

uint64_t l1_size(const Sparse& s, uint64_t capacity) { return (capacity + s.l1_entry_sectors - 1) / s.l1_entry_sectors; }

// Zeros grain-table entries for the grains of [from, to) sectors (to capped at the directory's
// reach) in the tables the directory at `gd` points to, so grains left behind by an earlier shrink
// never reappear; and zeros a partly kept grain's tail.
Status clear_range(SizedDevice& dev, guest::Allocator& alloc, const Sparse& s, uint64_t gd, uint64_t l1,
                   uint64_t from, uint64_t to, bool zero_tail) {
    const uint64_t gran = s.h.granularity;
    uint64_t first_grain = (from + gran - 1) / gran;
    if (zero_tail && from % gran != 0) {
        const uint64_t g = from / gran;
        uint8_t b[4];
        Status st = dev.read(gd + (g / s.h.num_gtes_per_gt) * 4, b, 4);
        if (st != Status::Ok)
            return st;
        const uint32_t gt = load_le32(b);
        if (gt != 0 && uint64_t{gt} * 512 + s.gt_bytes > dev.size())
            return Status::Corrupt; // a grain table outside the file
        if (gt != 0 && g / s.h.num_gtes_per_gt < l1) {
            if ((st = dev.read(uint64_t{gt} * 512 + (g % s.h.num_gtes_per_gt) * 4, b, 4)) != Status::Ok)
                return st;
            const uint32_t grain = load_le32(b);
            if (grain > 1) {
                const uint64_t at = uint64_t{grain} * 512 + (from - g * gran) * 512;
                const uint64_t len = ((g + 1) * gran - from) * 512;
                if (uint64_t{grain} * 512 >= dev.size())
                    return Status::Corrupt; // a grain outside the file: never written through
                guest::ScopedBuffer z(alloc, CHUNK);
                if (!z.p)
                    return Status::NoMemory;
                __builtin_memset(z.p, 0, CHUNK);
                for (uint64_t done = 0; done < len && st == Status::Ok;) {
                    const size_t n = len - done < CHUNK ? static_cast<size_t>(len - done) : CHUNK;
                    st = dev.write(at + done, z.p, n);
                    done += n;
                }
                if (st != Status::Ok)
                    return st;
            }
        }
    }
    const uint64_t reach = l1 * s.l1_entry_sectors;
    const uint64_t last_grain = ((to < reach ? to : reach) + gran - 1) / gran;
    static constexpr uint8_t zeros[2048] = {};
    for (uint64_t g = first_grain; g < last_grain;) {
        const uint64_t table = g / s.h.num_gtes_per_gt;
        const uint64_t in = g % s.h.num_gtes_per_gt;
        uint64_t n = s.h.num_gtes_per_gt - in;
        if (n > last_grain - g)
            n = last_grain - g;
        if (n > sizeof zeros / 4)
            n = sizeof zeros / 4;
        uint8_t b[4];
        Status st = dev.read(gd + table * 4, b, 4);
        if (st != Status::Ok)
            return st;
        const uint32_t gt = load_le32(b);
        if (gt != 0 && uint64_t{gt} * 512 + s.gt_bytes > dev.size())
            return Status::Corrupt; // a grain table outside the file: never written through
        if (gt != 0 && (st = dev.write(uint64_t{gt} * 512 + in * 4, zeros, static_cast<size_t>(n * 4))) != Status::Ok)
            return st;
        g += n;
    }
    return Status::Ok;
}

// A compressed grain's input: qemu reads two grains' bytes for the marker and the deflated data.
constexpr uint64_t PACKED_GRAINS = 2;

// The grain-table entry of grain `g` in the tables the directory at `gd` points to: its offset in
// the file (0: no table) and value.
Status grain_entry(SizedDevice& dev, const Sparse& s, uint64_t gd, uint64_t g, uint64_t* entry_at, uint32_t* value) {
    *entry_at = 0;
    *value = 0;
    uint8_t b[4];
    Status st = dev.read(gd + (g / s.h.num_gtes_per_gt) * 4, b, 4);
    if (st != Status::Ok)
        return st;
    const uint32_t gt = load_le32(b);
    if (gt == 0)
        return Status::Ok;
    if (uint64_t{gt} * 512 + s.gt_bytes > dev.size())
        return Status::Corrupt; // a grain table outside the file
    *entry_at = uint64_t{gt} * 512 + (g % s.h.num_gtes_per_gt) * 4;
    if ((st = dev.read(*entry_at, b, 4)) != Status::Ok)
        return st;
    *value = load_le32(b);
    return Status::Ok;
}

// A compressed extent's grain `g` (at sector `grain`), holding sector `from` of the disk, as it
// must be once the disk grows past `from`: inflated as the reader inflates it, its bytes from `from`
// on zeroed, deflated again whole (qemu's compress(): zlib, level 6, memLevel 8) behind a new marker
// (with `marker`), padded to a sector, into `out` (PACKED_GRAINS grains); *len its length. qemu
// inflates a grain to the length it was written with and fails a read past that, and a shrink
// leaves old data in the grain's tail: neither survives this.
// Grain `g`'s plain bytes (granularity * 512 of them) as a compressed grain: its marker (when the
// image has them), the deflated bytes, zeros to a whole sector. `out` holds PACKED_GRAINS grains.
Status pack_grain(const guest::Codecs* codecs, const Sparse& s, bool marker, uint64_t g, const uint8_t* plain,
                  uint8_t* out, size_t* len) {
    const uint64_t gran = s.h.granularity;
    const size_t in_cap = static_cast<size_t>(PACKED_GRAINS * gran * 512);
    size_t packed_len = 0;
    const size_t head = marker ? VMDK_GRAIN_MARKER_BYTES : 0;
    if (const Status st = codecs->deflate_mem(plain, static_cast<size_t>(gran * 512), out + head, in_cap - head - 512,
                                              &packed_len, VMDK_DEFLATE_WINDOW, VMDK_DEFLATE_LEVEL,
                                              VMDK_DEFLATE_MEM_LEVEL);
        st != Status::Ok)
        return st;
    if (marker) {
        const uint64_t lba = g * gran;
        for (int i = 0; i < 8; ++i)
            out[i] = static_cast<uint8_t>(lba >> (8 * i));
        store_le32(out + 8, static_cast<uint32_t>(packed_len));
    }
    *len = static_cast<size_t>(round_up(head + packed_len, 512));
    __builtin_memset(out + head + packed_len, 0, *len - head - packed_len);
    return Status::Ok;
}

Status pack_partial_grain(SizedDevice& dev, guest::Allocator& alloc, const guest::Codecs* codecs, const Sparse& s,
                          bool marker, uint32_t grain, uint64_t from, uint8_t* out, size_t* len) {
    const uint64_t gran = s.h.granularity;
    const uint64_t g = from / gran;
    const uint64_t grain_bytes = gran * 512;
    if (grain_bytes > VMDK_READ_MAX_COMPRESSED_GRAIN)
        return Status::Unsupported;
    if (codecs == nullptr || codecs->inflate == nullptr || codecs->deflate_mem == nullptr)
        return Status::Unsupported;
    const size_t in_cap = static_cast<size_t>(PACKED_GRAINS * grain_bytes);
    guest::ScopedBuffer plain(alloc, static_cast<size_t>(grain_bytes));
    if (!plain.p)
        return Status::NoMemory;
    const uint64_t at = uint64_t{grain} * 512;
    if (at >= dev.size())
        return Status::Corrupt; // a grain outside the file
    Status st = read_zero_filled(dev, at, out, in_cap);
    if (st != Status::Ok)
        return st;
    const uint8_t* src = out;
    size_t src_len = in_cap;
    if (marker) {
        src = out + VMDK_GRAIN_MARKER_BYTES;
        src_len = load_le32(out + 8);
        if (src_len == 0 || src_len > in_cap - VMDK_GRAIN_MARKER_BYTES)
            return Status::Corrupt; // the reader's "Invalid compressed grain size"
    }
    size_t out_len = 0;
    if ((st = codecs->inflate(src, src_len, plain.p, static_cast<size_t>(grain_bytes), &out_len, VMDK_DEFLATE_WINDOW)) !=
        Status::Ok)
        return st == Status::TooLarge ? Status::Corrupt : st;
    const uint64_t keep = (from - g * gran) * 512;
    __builtin_memset(plain.p + (out_len < keep ? out_len : keep), 0,
                     static_cast<size_t>(grain_bytes - (out_len < keep ? out_len : keep)));
    return pack_grain(codecs, s, marker, g, plain.p, out, len);
}

// A packed grain (`len` bytes) written at the file's end, then the grain-table entries at
// `entry_at` (0: none) switched to it, in that order.
Status append_grain(SizedDevice& dev, const uint8_t* packed, size_t len, const uint64_t entry_at[2]) {
    const uint64_t at = round_up(dev.size(), 512);
    if (at + len > SPARSE_MAX_FILE)
        return Status::TooLarge;
    Status st = dev.write(at, packed, len);
    uint8_t e[4];
    store_le32(e, static_cast<uint32_t>(at / 512));
    for (int k = 0; k < 2 && st == Status::Ok; ++k)
        if (entry_at[k] != 0)
            st = dev.write(entry_at[k], e, sizeof e);
    return st;
}

// pack_partial_grain for a directory after the header: the new grain at the file's end, then the
// grain-table entries (primary and redundant) switched to it.
Status rewrite_partial_grain(SizedDevice& dev, guest::Allocator& alloc, const guest::Codecs* codecs, const Sparse& s,
                             bool marker, uint64_t rgd, uint64_t from) {
    const uint64_t g = from / s.h.granularity;
    uint64_t entry_at[2] = {0, 0};
    uint32_t grain = 0, ignored = 0;
    Status st = grain_entry(dev, s, s.h.gd_offset * 512, g, &entry_at[0], &grain);
    if (st == Status::Ok && rgd != 0)
        st = grain_entry(dev, s, rgd, g, &entry_at[1], &ignored);
    if (st != Status::Ok || grain <= 1)
        return st; // unallocated or a zero grain: reads as zeros
    guest::ScopedBuffer packed(alloc, static_cast<size_t>(PACKED_GRAINS * s.h.granularity * 512));
    if (!packed.p)
        return Status::NoMemory;
    size_t len = 0;
    if ((st = pack_partial_grain(dev, alloc, codecs, s, marker, grain, from, packed.p, &len)) != Status::Ok)
        return st;
    return append_grain(dev, packed.p, len, entry_at);
}

// Copies `count` directory entries from `from` to `to` and appends entries [count, l1) pointing at
// consecutive new grain tables from sector *next_gt.
Status write_directory(SizedDevice& dev, guest::Allocator& alloc, const Sparse& s, uint64_t from, uint64_t to,
                       uint64_t count, uint64_t l1, uint64_t* next_gt) {
    guest::ScopedBuffer buf(alloc, CHUNK);
    if (!buf.p)
        return Status::NoMemory;
    Status st = Status::Ok;
    if (from != to) {
        for (uint64_t done = 0; done < count * 4 && st == Status::Ok;) {
            const size_t n = count * 4 - done < CHUNK ? static_cast<size_t>(count * 4 - done) : CHUNK;
            st = dev.read(from + done, buf.p, n);
            if (st == Status::Ok)
                st = dev.write(to + done, buf.p, n);
            done += n;
        }
    }
    for (uint64_t i = count; i < l1 && st == Status::Ok;) {
        const uint64_t n = l1 - i < CHUNK / 4 ? l1 - i : CHUNK / 4;
        for (uint64_t k = 0; k < n; ++k) {
            store_le32(buf.p + k * 4, static_cast<uint32_t>(*next_gt));
            *next_gt += s.gt_bytes / 512;
        }
        st = dev.write(to + i * 4, buf.p, static_cast<size_t>(n * 4));
        i += n;
    }
    return st;
}

Status update_embedded_descriptor(SizedDevice& dev, guest::Allocator& alloc, const Vmdk4Header& h, uint64_t size) {
    if (h.desc_offset == 0 || h.desc_size == 0 || h.desc_size > DESC_MAX / 512)
        return Status::Ok; // no embedded descriptor: nothing names the size
    const size_t cap = static_cast<size_t>(h.desc_size * 512);
    guest::ScopedBuffer old_buf(alloc, cap + 1);
    guest::ScopedBuffer new_buf(alloc, cap);
    if (!old_buf.p || !new_buf.p)
        return Status::NoMemory;
    Status st = read_zero_filled(dev, h.desc_offset * 512, old_buf.p, cap);
    if (st != Status::Ok)
        return st;
    old_buf.p[cap] = 0;
    const Text t = text_of(old_buf.p, cap);
    size_t starts[1];
    ExtentLine lines[1];
    Collected c{t.s, 0, 1, starts, lines};
    if (descriptor_extents(t, collect_line, &c) != Status::Ok || c.count != 1)
        return Status::Ok; // not the one-extent descriptor qemu writes: left as it is
    const LineEdit edit{starts[0], size / 512};
    Out out{reinterpret_cast<char*>(new_buf.p), cap};
    if (rewrite_descriptor(t, &edit, 1, nullptr, 0, size, &out) != Status::Ok)
        return Status::Ok; // no room: the header is what qemu reads
    __builtin_memset(new_buf.p + out.n, 0, cap - out.n);
    const size_t len = out.n > t.len ? out.n : t.len;
    return dev.write(h.desc_offset * 512, new_buf.p, len);
}

// ---- streamOptimized with the directory at the end (VMware's layout) --------------------------

// Metadata marker types (VMware's stream format) and the footer's three sectors.
constexpr uint32_t MARKER_GT = 1;
constexpr uint32_t MARKER_GD = 2;
constexpr uint64_t FOOTER_BYTES = 1536;

void put_marker(uint8_t* p, uint64_t sectors, uint32_t type) {
    __builtin_memset(p, 0, 512);
    for (int i = 0; i < 8; ++i)
        p[i] = static_cast<uint8_t>(sectors >> (8 * i));
    store_le32(p + 12, type);
}

// qemu (and libvmdk) take the header from the footer the file ends with. The new tables go after
// the old end: (1) a copy of the old footer at the new end, the file still the old disk; (2) the
// old end's grain deflated again whole (a grow from inside it), a copy of the grain table holding
// the boundary (entries past the end cleared, that grain switched), each behind its marker, and the
// directory (old entries, the new ones empty: grain tables are made when grains are written);
// (3) the new footer over the copy, the switch; (4) the header at 0 and the embedded descriptor,
// which nothing reads the size from. The old footer stays where it was, a stream reader's end.
Status resize_stream_footer(SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const guest::Codecs* codecs,
                            const Sparse& s, bool compressed, uint64_t size) {
    const uint64_t cap = s.h.capacity;
    const uint64_t new_cap = size / 512;
    const uint64_t gran = s.h.granularity;
    const bool marker = (s.h.flags & VMDK4_FLAG_MARKER) != 0;
    if ((s.h.flags & VMDK4_FLAG_RGD) != 0 && s.h.rgd_offset != 0)
        return refuse(host, Status::Unsupported,
                      "vmdk: a streamOptimized footer naming a redundant grain directory is not supported");
    const uint64_t old_l1 = l1_size(s, cap);
    const uint64_t new_l1 = l1_size(s, new_cap);
    const uint64_t gd = s.h.gd_offset * 512;
    if (gd + old_l1 * 4 > dev.size())
        return refuse(host, Status::Corrupt, "vmdk: the grain directory lies past the end of the file");
    const uint64_t old_end = round_up(dev.size(), 512);
    guest::ScopedBuffer old_footer(alloc, FOOTER_BYTES);
    guest::ScopedBuffer gt(alloc, static_cast<size_t>(s.gt_bytes) + 512);
    guest::ScopedBuffer buf(alloc, CHUNK);
    if (!old_footer.p || !gt.p || !buf.p)
        return Status::NoMemory;
    Status st = read_zero_filled(dev, old_end - FOOTER_BYTES, old_footer.p, FOOTER_BYTES);
    if (st != Status::Ok)
        return st;

    // The grain table holding the new boundary (the old end for a grow, the new one for a shrink).
    const uint64_t edge = new_cap > cap ? cap : new_cap;
    const uint64_t edge_grain = edge / gran;
    const uint64_t first_cleared = (edge + gran - 1) / gran;
    const uint64_t table = edge_grain / s.h.num_gtes_per_gt;
    uint32_t table_at = 0;
    if (table < old_l1) {
        uint8_t b[4];
        if ((st = dev.read(gd + table * 4, b, 4)) != Status::Ok)
            return st;
        table_at = load_le32(b);
        if (table_at != 0 && uint64_t{table_at} * 512 + s.gt_bytes > dev.size())
            return refuse(host, Status::Corrupt, "vmdk: a grain table lies past the end of the file");
    }
    uint64_t pos = old_end;
    // The partial grain deflated again (a grow from inside a written compressed grain).
    guest::ScopedBuffer packed(alloc, static_cast<size_t>(PACKED_GRAINS * gran * 512));
    if (!packed.p)
        return Status::NoMemory;
    size_t packed_len = 0;
    uint64_t new_grain_at = 0;
    if (table_at != 0) {
        put_marker(gt.p, s.gt_bytes / 512, MARKER_GT);
        if ((st = dev.read(uint64_t{table_at} * 512, gt.p + 512, static_cast<size_t>(s.gt_bytes))) != Status::Ok)
            return st;
        const uint64_t t0 = table * s.h.num_gtes_per_gt;
        for (uint64_t g = first_cleared > t0 ? first_cleared : t0; g < t0 + s.h.num_gtes_per_gt; ++g)
            store_le32(gt.p + 512 + (g - t0) * 4, 0);
        const uint32_t grain = load_le32(gt.p + 512 + (edge_grain - t0) * 4);
        if (new_cap > cap && compressed && cap % gran != 0 && grain > 1) {
            if ((st = pack_partial_grain(dev, alloc, codecs, s, marker, grain, cap, packed.p, &packed_len)) !=
                Status::Ok)
                return refuse(host, st, "vmdk: the resize failed");
            new_grain_at = pos;
            pos += packed_len;
            store_le32(gt.p + 512 + (edge_grain - t0) * 4, static_cast<uint32_t>(new_grain_at / 512));
        }
    }
    const uint64_t gt_at = table_at != 0 ? pos : 0;
    if (table_at != 0)
        pos += 512 + s.gt_bytes;
    const uint64_t gd_bytes = round_up(new_l1 * 4, 512);
    const uint64_t gd_at = pos;
    pos += 512 + gd_bytes;
    const uint64_t new_end = pos + FOOTER_BYTES;
    if (new_end > SPARSE_MAX_FILE)
        return refuse(host, Status::TooLarge, "vmdk: the sparse file would exceed 2 TiB");

    // (1) the old footer at the new end; (2) the tables before it.
    st = dev.write(new_end - FOOTER_BYTES, old_footer.p, FOOTER_BYTES);
    if (st == Status::Ok && packed_len != 0)
        st = dev.write(new_grain_at, packed.p, packed_len);
    if (st == Status::Ok && gt_at != 0)
        st = dev.write(gt_at, gt.p, static_cast<size_t>(512 + s.gt_bytes));
    if (st == Status::Ok) {
        put_marker(buf.p, gd_bytes / 512, MARKER_GD);
        st = dev.write(gd_at, buf.p, 512);
    }
    const uint64_t kept = old_l1 < new_l1 ? old_l1 : new_l1;
    for (uint64_t i = 0; i < gd_bytes / 4 && st == Status::Ok;) {
        const uint64_t n = gd_bytes / 4 - i < CHUNK / 4 ? gd_bytes / 4 - i : CHUNK / 4;
        __builtin_memset(buf.p, 0, CHUNK);
        const uint64_t copy = i < kept ? (kept - i < n ? kept - i : n) : 0;
        if (copy != 0)
            st = dev.read(gd + i * 4, buf.p, static_cast<size_t>(copy * 4));
        if (st == Status::Ok && i <= table && table < i + n && gt_at != 0 && table < new_l1)
            store_le32(buf.p + (table - i) * 4, static_cast<uint32_t>((gt_at + 512) / 512));
        if (st == Status::Ok)
            st = dev.write(gd_at + 512 + i * 4, buf.p, static_cast<size_t>(n * 4));
        i += n;
    }
    if (st == Status::Ok)
        st = dev.flush(host);
    // (3) the switch: the new footer (capacity, directory) over the copy.
    Vmdk4Header nh = s.h;
    nh.capacity = new_cap;
    nh.gd_offset = (gd_at + 512) / 512;
    if (st == Status::Ok) {
        vmdk4_header_encode(nh, old_footer.p + 512);
        st = dev.write(new_end - FOOTER_BYTES, old_footer.p, FOOTER_BYTES);
    }
    if (st == Status::Ok)
        st = dev.flush(host);
    // (4) the header at 0 (its directory offset stays "at the end") and the embedded descriptor.
    uint8_t hdr[VMDK4_HEADER_BYTES];
    if (st == Status::Ok)
        st = dev.read(0, hdr, sizeof hdr);
    if (st == Status::Ok) {
        Vmdk4Header h0{};
        vmdk4_header_decode(hdr + 4, &h0);
        h0.capacity = new_cap;
        vmdk4_header_encode(h0, hdr);
        st = dev.write(0, hdr, sizeof hdr);
    }
    if (st == Status::Ok)
        st = update_embedded_descriptor(dev, alloc, nh, size);
    return st == Status::Ok ? st : refuse(host, st, "vmdk: the resize failed");
}

// A delta disk's parent, as a grow must know it (vmdk_resize_expose.h).
struct SparseParent {
    uint64_t end = 0;                               // bytes of the parent the grown disk would show (0: none)
    uint64_t base = 0;                              // the extent's first byte in the disk (an extent
                                                    // behind a descriptor): `end` and the parent's
                                                    // offsets are the disk's
    bool bytes_sent = false;                        // RESIZE_BACKING_BYTES: extra[0] holds what was asked
    guest::BlockDevice* const* extra = nullptr;
    uint32_t extra_count = 0;
    // Where the parent's data ends in the extent, sectors (0: before its start), capped at `cap`.
    uint64_t end_sectors(uint64_t cap) const {
        const uint64_t n = end > base ? (end - base + 511) / 512 : 0;
        return n < cap ? n : cap;
    }
};

// The parent's bytes of the grain holding the old end, when the grow needs them: asked for (the
// host runs the resize again with them; nothing written yet) or read from what the host sent.
Status parent_head(EditHost& host, guest::Allocator& alloc, const SparseParent& p, uint64_t offset, uint64_t len,
                   uint8_t** out) {
    if (!p.bytes_sent) {
        const guest::ResizeNeedBacking need{offset, len};
        const Status st = host.data(guest::RESIZE_DATA_NEED_BACKING, &need, sizeof need);
        return refuse(host, st != Status::Ok ? st : Status::Unsupported,
                      "instar cannot zero the new area of this delta disk without its parent's bytes");
    }
    if (p.extra_count < 1 || p.extra == nullptr || p.extra[0] == nullptr)
        return refuse(host, Status::Invalid, "resize: the backing file's bytes were not sent");
    auto* bytes = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(len), 64));
    if (bytes == nullptr)
        return Status::NoMemory;
    __builtin_memset(bytes, 0, static_cast<size_t>(len));
    const uint64_t n = p.extra[0]->size() < len ? p.extra[0]->size() : len;
    if (n > 0 && p.extra[0]->read(0, bytes, static_cast<size_t>(n)) != Status::Ok)
        return refuse(host, Status::IoError, "Could not read the backing file: Input/output error");
    *out = bytes;
    return Status::Ok;
}

// A compressed delta disk's grain holding the old end, which its parent served: the parent's bytes
// up to the old end (`head` holds the whole grain's; its tail is zeroed here), zeros after,
// compressed into a new grain at the file's end; both directories' entries then point at it.
Status write_compressed_head(SizedDevice& dev, guest::Allocator& alloc, const guest::Codecs* codecs, const Sparse& s,
                             bool marker, const VmdkExpose& x, uint8_t* head) {
    const uint64_t gran = s.h.granularity;
    const uint64_t g = x.cap / gran;
    const uint64_t keep = (x.cap % gran) * 512;
    __builtin_memset(head + keep, 0, static_cast<size_t>(gran * 512 - keep));
    // Both entries first (the redundant one is switched first, as vmdk_expose_zeros does).
    uint64_t entry_at[2] = {0, 0};
    const uint64_t dirs[2] = {x.rgd, x.gd};
    for (int k = 0; k < 2; ++k) {
        uint32_t grain = 0;
        if (dirs[k] == 0)
            continue;
        if (const Status st = grain_entry(dev, s, dirs[k], g, &entry_at[k], &grain); st != Status::Ok)
            return st;
        if (entry_at[k] == 0)
            return Status::Unsupported; // a grain table the directory does not have
    }
    guest::ScopedBuffer packed(alloc, static_cast<size_t>(PACKED_GRAINS * gran * 512));
    if (!packed.p)
        return Status::NoMemory;
    size_t len = 0;
    if (const Status st = pack_grain(codecs, s, marker, g, head, packed.p, &len); st != Status::Ok)
        return st;
    return append_grain(dev, packed.p, len, entry_at);
}

Status resize_sparse(SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const guest::Codecs* codecs,
                     uint64_t size, bool shrink_ok, const SparseParent& parent = SparseParent{}) {
    Sparse s{};
    VmdkSparseExtent x{};
    bool embedded = false;
    Status st = vmdk_sparse_open(dev, &x, &s.h, &embedded);
    if (st != Status::Ok || embedded)
        return refuse(host, st != Status::Ok ? st : Status::Unsupported, "vmdk: cannot open the sparse extent");
    uint8_t first[4 + sizeof(Vmdk4HeaderDisk)];
    if ((st = dev.read(0, first, sizeof first)) != Status::Ok)
        return st;
    Vmdk4Header at_start{};
    vmdk4_header_decode(first + 4, &at_start);
    const bool marker = (s.h.flags & VMDK4_FLAG_MARKER) != 0;
    s.l1_entry_sectors = uint64_t{s.h.num_gtes_per_gt} * s.h.granularity;
    s.gt_bytes = round_up(uint64_t{s.h.num_gtes_per_gt} * 4, 512);
    const uint64_t cap = s.h.capacity;
    const uint64_t new_cap = size / 512;
    if (new_cap == cap)
        return Status::Ok;
    if (new_cap < cap && !shrink_ok)
        return refuse(host, Status::Invalid, "Use the --shrink option to perform a shrink operation.");
    if (new_cap > VMDK_MAX_L1_SIZE * s.l1_entry_sectors || new_cap > VMDK_MAX_EXTENT_SECTORS)
        return refuse(host, Status::TooLarge, "vmdk: the new size exceeds what a sparse extent can address");
    // A delta disk's parent must not show in the grown area (vmdk_resize_expose.h): up to where it
    // ends, capped at the new end.
    const uint64_t parent_end = parent.end_sectors(new_cap);
    if (at_start.gd_offset == VMDK4_GD_AT_END) {
        if (parent_end > cap)
            return refuse(host, Status::Unsupported,
                          "vmdk: a streamOptimized delta disk with its grain directory in a footer cannot grow over a "
                          "parent that reaches past its end");
        return resize_stream_footer(dev, host, alloc, codecs, s, x.compressed, size);
    }
    const bool rgd = s.h.rgd_offset != 0 && (s.h.flags & VMDK4_FLAG_RGD) != 0;
    const uint64_t old_l1 = l1_size(s, cap);
    const uint64_t new_l1 = l1_size(s, new_cap);
    uint8_t hdr[512];
    if ((st = dev.read(0, hdr, sizeof hdr)) != Status::Ok)
        return st;
    Vmdk4Header nh = s.h;
    nh.capacity = new_cap;

    if (new_cap < cap) {
        // The header is the switch; then the grain tables forget what lies past the new end.
        vmdk4_header_encode(nh, hdr);
        st = dev.write(0, hdr, VMDK4_HEADER_BYTES);
        if (st == Status::Ok)
            st = dev.flush(host);
        if (st == Status::Ok)
            st = clear_range(dev, alloc, s, s.h.gd_offset * 512, new_l1, new_cap, cap, false);
        if (st == Status::Ok && rgd)
            st = clear_range(dev, alloc, s, s.h.rgd_offset * 512, new_l1, new_cap, cap, false);
        if (st == Status::Ok)
            st = update_embedded_descriptor(dev, alloc, nh, size);
        return st == Status::Ok ? st : refuse(host, st, "vmdk: the resize failed");
    }

    // The grain holding the old end may need the parent's bytes, asked for before anything is
    // written. A compressed extent cannot hold hole grains: its grown area gets zeroed-grain entries,
    // the header's flag for them set with the switch (GTE 1 is no grain of a valid image without
    // it: sector 1 is the header's), and the head grain is written compressed.
    VmdkExpose expose{s.h.gd_offset * 512, rgd ? s.h.rgd_offset * 512 : 0, s.h.num_gtes_per_gt, s.h.granularity,
                      cap, parent_end, (s.h.flags & VMDK4_FLAG_ZERO_GRAIN) != 0 || x.compressed};
    uint8_t* head = nullptr;
    if (parent_end > cap) {
        if (x.compressed) {
            if (codecs == nullptr || codecs->deflate_mem == nullptr)
                return refuse(host, Status::Unsupported,
                              "vmdk: a compressed delta disk cannot grow over a parent that reaches past its end here");
            nh.flags |= VMDK4_FLAG_ZERO_GRAIN;
        }
        uint64_t asked = UINT64_MAX;
        if ((st = vmdk_expose_head(dev, expose, &asked)) != Status::Ok)
            return refuse(host, st,
                          st == Status::Unsupported ? "vmdk: the grain holding the old end has no grain table"
                          : st == Status::Corrupt   ? "vmdk: a grain table lies past the end of the file"
                          : st == Status::TooLarge  ? "vmdk: the grain holding the old end is larger than the 2 MiB "
                                                      "instar reads of a parent"
                                                    : "vmdk: the resize failed");
        if (asked != UINT64_MAX &&
            (st = parent_head(host, alloc, parent, parent.base + asked, s.h.granularity * 512, &head)) != Status::Ok)
            return st;
    }

    // Grow: old tables forget stale grains past the old end; new tables at the file's end. A
    // compressed grain holding the old end is written anew (rewrite_partial_grain).
    if (x.compressed && cap % s.h.granularity != 0)
        st = rewrite_partial_grain(dev, alloc, codecs, s, marker, rgd ? s.h.rgd_offset * 512 : 0, cap);
    if (st == Status::Ok)
        st = clear_range(dev, alloc, s, s.h.gd_offset * 512, old_l1, cap, new_cap, !x.compressed);
    if (st == Status::Ok && rgd)
        st = clear_range(dev, alloc, s, s.h.rgd_offset * 512, old_l1, cap, new_cap, false);
    if (st != Status::Ok)
        return refuse(host, st, "vmdk: the resize failed");
    if (new_l1 > old_l1) {
        const uint64_t room = round_up(old_l1 * 4, 512) / 4;
        const bool relocate = new_l1 > room;
        const uint64_t gd_bytes = round_up(new_l1 * 4, 512);
        uint64_t next = round_up(dev.size(), 512);
        uint64_t new_gd = s.h.gd_offset * 512, new_rgd = s.h.rgd_offset * 512;
        if (relocate) {
            if (rgd) {
                new_rgd = next;
                next += gd_bytes;
            }
            new_gd = next;
            next += gd_bytes;
        }
        const uint64_t tables = (new_l1 - old_l1) * (rgd ? 2 : 1);
        const uint64_t end = next + tables * s.gt_bytes;
        if (end > SPARSE_MAX_FILE)
            return refuse(host, Status::TooLarge, "vmdk: the sparse file would exceed 2 TiB");
        st = dev.set_length(host, end, guest::Prealloc::Off);
        uint64_t next_gt = next / 512;
        if (st == Status::Ok && rgd)
            st = write_directory(dev, alloc, s, s.h.rgd_offset * 512, new_rgd, old_l1, new_l1, &next_gt);
        if (st == Status::Ok)
            st = write_directory(dev, alloc, s, s.h.gd_offset * 512, new_gd, old_l1, new_l1, &next_gt);
        if (st == Status::Ok)
            st = dev.flush(host);
        if (st != Status::Ok)
            return refuse(host, st, "vmdk: the resize failed");
        nh.gd_offset = new_gd / 512;
        if (rgd)
            nh.rgd_offset = new_rgd / 512;
    }
    if (parent_end > cap) {
        expose.gd = nh.gd_offset * 512;
        expose.rgd = rgd ? nh.rgd_offset * 512 : 0;
        if (x.compressed && head != nullptr) {
            st = write_compressed_head(dev, alloc, codecs, s, marker, expose, head);
            head = nullptr;
        }
        if (st == Status::Ok)
            st = vmdk_expose_zeros(dev, host, alloc, expose, head);
        if (st == Status::Ok)
            st = dev.flush(host);
        if (st != Status::Ok)
            return refuse(host, st, "vmdk: the resize failed");
    }
    vmdk4_header_encode(nh, hdr);
    st = dev.write(0, hdr, VMDK4_HEADER_BYTES);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok)
        st = update_embedded_descriptor(dev, alloc, nh, size);
    return st == Status::Ok ? st : refuse(host, st, "vmdk: the resize failed");
}

// ---- descriptor + flat extents -----------------------------------------------------------------

// The next split extent's file name after `name` ("x-f007.vmdk" -> "x-f008.vmdk", `letter` 'f' or
// 's'); false when the name does not follow qemu's pattern.
bool next_split_name(const char* name, size_t len, uint64_t step, char letter, char* out, size_t cap) {
    size_t dot = len;
    for (size_t i = len; i > 0; --i)
        if (name[i - 1] == '.') {
            dot = i - 1;
            break;
        }
    size_t d = dot;
    while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9')
        --d;
    if (dot - d < 3 || d < 2 || name[d - 1] != letter || name[d - 2] != '-')
        return false;
    uint64_t v = 0;
    for (size_t i = d; i < dot; ++i)
        v = v * 10 + static_cast<uint64_t>(name[i] - '0');
    v += step;
    char digits[20];
    size_t k = 0;
    do {
        digits[k++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (k < 3)
        digits[k++] = '0';
    if (d + k + (len - dot) + 1 > cap)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < d; ++i)
        out[n++] = name[i];
    while (k > 0)
        out[n++] = digits[--k];
    for (size_t i = dot; i < len; ++i)
        out[n++] = name[i];
    out[n] = 0;
    for (size_t i = 0; i < n; ++i)
        if (out[i] == '/')
            return false;
    return true;
}

// create's target interface over the edit's host, for write_sparse_extent on a new extent file.
class ExtentTarget final : public guest::CreateTarget {
public:
    ExtentTarget(EditHost& host, guest::BlockDevice& image) : host_(host), image_(image) {}
    guest::BlockDevice& image() override { return image_; }
    Status set_length(guest::BlockDevice& file, uint64_t length, guest::Prealloc mode) override {
        return host_.set_length(file, length, mode);
    }
    Status add_file(const char* name, guest::BlockDevice** out) override { return host_.add_file(name, out); }
    void reason(const char* text, size_t len) override { host_.reason(text, len); }
    void resolved_unit_size(uint64_t) override {}

private:
    EditHost& host_;
    guest::BlockDevice& image_;
};

// A shrink: the extents wholly past the new end leave the descriptor, the one holding it is cut.
// The descriptor is the switch (a FLAT extent's size is its line), padded with blanks over the old
// text's tail until that is cut. A SPARSE extent's size is its header (qemu sizes it so): when only
// the last extent is cut its header goes first, then the descriptor; when extents are dropped the
// descriptor goes first, then the kept last extent's header, so a kill between leaves the kept
// extents' old length, the old content up to there. Then each dropped file is reported
// (RESIZE_DATA_DROPPED_FILE) for the host to remove.
// COWD (vmfsSparse; qemu's vmdk_open_vmfs_sparse): a header of 32-bit little-endian fields
// (magic, version, flags, disk_sectors, granularity, l1dir_offset, l1dir_size, file_sectors, ...),
// a grain directory of l1dir_size 32-bit sector numbers, 4096-entry grain tables. qemu sizes the
// extent by disk_sectors: one sector-0 write of the header is the switch. A shrink changes only
// that (the tables past the new end become unreachable; nothing is freed in a COWD file anyway);
// a grow first clears whatever a shrink left in the range it exposes (the tail of the grain holding
// the old end, the table entries and directory entries past it), so it reads as zeros, gives every
// directory entry from there a zeroed table (a hole at the file's end), and moves the directory
// whole after them when it has too few entries.
constexpr uint64_t COWD_MAX_SECTORS = 0xffffffffu; // disk_sectors and every sector number are 32-bit

Status cowd_corrupt(EditHost& host) {
    return refuse(host, Status::Corrupt, "vmdk: a COWD grain directory or table lies past the end of the file");
}

// A grow's first step: what a shrink left in the range the grow exposes reads as zeros again. The
// tail of the grain holding the old end `cap` is zeroed, and the entries of the grains wholly past it
// in the same table are cleared (the directory entries past it are cowd_grow_directory's).
Status cowd_clear_exposed(SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const VmdkAltExtent& x,
                          const uint8_t* gd, uint64_t cap) {
    const uint64_t span = uint64_t{x.gtes} * x.grain_sectors;
    const uint64_t gde = cap / span;
    if (gde >= x.l1_size || cap % span == 0)
        return Status::Ok; // the old end closes a table: nothing past it shares one
    const uint64_t gt = uint64_t{load_le32(gd + gde * 4)} * 512;
    if (gt == 0)
        return Status::Ok;
    const uint64_t gt_bytes = uint64_t{x.gtes} * 4;
    if (gt + gt_bytes > dev.size())
        return cowd_corrupt(host);
    guest::ScopedBuffer table(alloc, static_cast<size_t>(gt_bytes));
    if (!table.p)
        return Status::NoMemory;
    Status st = dev.read(gt, table.p, static_cast<size_t>(gt_bytes));
    if (st != Status::Ok)
        return st;
    if (cap % x.grain_sectors != 0) {
        const uint64_t g = cap / x.grain_sectors;
        const uint64_t at = uint64_t{load_le32(table.p + (g % x.gtes) * 4)} * 512;
        const uint64_t keep = (cap % x.grain_sectors) * 512;
        const uint64_t grain_bytes = x.grain_sectors * 512;
        if (at != 0) {
            if (at + grain_bytes > dev.size())
                return cowd_corrupt(host);
            guest::ScopedBuffer zeros(alloc, static_cast<size_t>(grain_bytes - keep));
            if (!zeros.p)
                return Status::NoMemory;
            __builtin_memset(zeros.p, 0, static_cast<size_t>(grain_bytes - keep));
            if ((st = dev.write(at + keep, zeros.p, static_cast<size_t>(grain_bytes - keep))) != Status::Ok)
                return st;
        }
    }
    const uint64_t first_free = (cap + x.grain_sectors - 1) / x.grain_sectors; // first grain wholly past cap
    const uint64_t from = first_free % x.gtes; // 0: those grains start the next table
    bool stale = false;
    for (uint64_t e = from; from != 0 && e < x.gtes; ++e)
        stale = stale || load_le32(table.p + e * 4) != 0;
    if (!stale)
        return Status::Ok;
    __builtin_memset(table.p + from * 4, 0, static_cast<size_t>((x.gtes - from) * 4));
    return dev.write(gt, table.p, static_cast<size_t>(gt_bytes));
}

// The directory of a grow to `need` entries: the old ones up to the old end `cap`, then a new zeroed
// grain table for every entry from there that has none (qemu's vmdk_pwritev cannot allocate a
// table: with none its write lands at the file's start, as on a VMware image missing one); the
// tables are a hole at the file's end, the directory stays or moves after them. `hdr` (the header's
// first sector) gets the moved directory and the file's new sector count; the caller writes it.
Status cowd_grow_directory(SizedDevice& dev, EditHost& host, guest::Allocator& alloc, const VmdkAltExtent& x,
                           const uint8_t* gd, uint64_t cap, uint64_t need, uint8_t* hdr) {
    const uint64_t span = uint64_t{x.gtes} * x.grain_sectors;
    const uint64_t l1 = x.l1_size;
    const uint64_t gt_bytes = uint64_t{x.gtes} * 4;
    const uint64_t used = (cap + span - 1) / span;
    const uint64_t gd_new = round_up(need * 4, 512);
    const uint64_t dir_bytes = need <= l1 ? l1 * 4 : gd_new; // in place, or moved
    guest::ScopedBuffer dir(alloc, static_cast<size_t>(dir_bytes) + 4);
    if (!dir.p)
        return Status::NoMemory;
    __builtin_memset(dir.p, 0, static_cast<size_t>(dir_bytes));
    __builtin_memcpy(dir.p, gd, static_cast<size_t>((used < l1 ? used : l1) * 4));
    uint64_t end = round_up(dev.size(), 512);
    for (uint64_t e = cap / span; e < need; ++e) {
        if (e < used && e < l1 && load_le32(dir.p + e * 4) != 0)
            continue;
        if ((end + gt_bytes) / 512 > COWD_MAX_SECTORS)
            return refuse(host, Status::TooLarge, "vmdk: the COWD file would exceed 2 TiB");
        store_le32(dir.p + e * 4, static_cast<uint32_t>(end / 512));
        end += gt_bytes;
    }
    const uint64_t dir_at = need <= l1 ? x.gd_offset : end;
    if (need > l1) {
        if ((end + gd_new) / 512 > COWD_MAX_SECTORS)
            return refuse(host, Status::TooLarge, "vmdk: the COWD file would exceed 2 TiB");
        end += gd_new;
    }
    Status st = Status::Ok;
    if (end > dev.size() && (st = dev.set_length(host, end, guest::Prealloc::Off)) != Status::Ok)
        return st;
    if ((st = dev.write(dir_at, dir.p, static_cast<size_t>(dir_bytes))) != Status::Ok)
        return st;
    if (need > l1) {
        store_le32(hdr + 20, static_cast<uint32_t>(dir_at / 512));
        store_le32(hdr + 24, static_cast<uint32_t>(need));
    }
    if (load_le32(hdr + 28) < end / 512)
        store_le32(hdr + 28, static_cast<uint32_t>(end / 512));
    return Status::Ok;
}

// A delta disk's grain holding the old end `cap` of a COWD extent, when the parent reaches past it:
// the parent's bytes it needs (nullptr: none, allocated or closing on a grain) asked for or taken.
Status cowd_head(EditHost& host, guest::Allocator& alloc, const VmdkAltExtent& x, const uint8_t* gd, uint64_t cap,
                 SizedDevice& dev, const SparseParent& parent, uint8_t** head) {
    *head = nullptr;
    if (cap % x.grain_sectors == 0)
        return Status::Ok;
    const uint64_t g = cap / x.grain_sectors;
    const uint64_t gde = g / x.gtes;
    const uint64_t gt = gde < x.l1_size ? uint64_t{load_le32(gd + gde * 4)} * 512 : 0;
    if (gt != 0) {
        if (gt + uint64_t{x.gtes} * 4 > dev.size())
            return cowd_corrupt(host);
        uint8_t b[4];
        if (const Status st = dev.read(gt + (g % x.gtes) * 4, b, sizeof b); st != Status::Ok)
            return st;
        if (load_le32(b) != 0)
            return Status::Ok; // allocated: cowd_clear_exposed zeroes its tail
    }
    if (x.grain_sectors * 512 > guest::RESIZE_MAX_BACKING_BYTES)
        return refuse(host, Status::TooLarge,
                      "vmdk: the grain holding the old end is larger than the 2 MiB instar reads of a parent");
    return parent_head(host, alloc, parent, parent.base + g * x.grain_sectors * 512, x.grain_sectors * 512, head);
}

Status resize_cowd(SizedDevice& dev, EditHost& host, guest::Allocator& alloc, uint64_t size, bool shrink_ok,
                   const SparseParent& parent = SparseParent{}) {
    VmdkAltExtent x{};
    char why[VMDK_REASON_MAX];
    Status st = vmdk_cowd_open(dev, &x, why);
    if (st != Status::Ok)
        return refuse(host, st, why[0] != 0 ? why : "vmdk: cannot open the COWD extent");
    const uint64_t cap = x.sectors;
    const uint64_t new_cap = size / 512;
    if (new_cap == cap)
        return Status::Ok;
    if (new_cap < cap && !shrink_ok)
        return refuse(host, Status::Invalid, "Use the --shrink option to perform a shrink operation.");
    if (new_cap > COWD_MAX_SECTORS)
        return refuse(host, Status::TooLarge, "vmdk: a COWD extent addresses at most 2 TiB");
    const uint64_t span = uint64_t{x.gtes} * x.grain_sectors;
    const uint64_t need = (new_cap + span - 1) / span;
    if (need > VMDK_MAX_L1_SIZE)
        return refuse(host, Status::TooLarge, "vmdk: the new size needs too many grain directory entries");
    uint8_t hdr[512];
    if ((st = read_zero_filled(dev, 0, hdr, sizeof hdr)) != Status::Ok)
        return st;
    if (new_cap > cap) {
        const uint64_t gd_bytes = uint64_t{x.l1_size} * 4;
        if (x.gd_offset + gd_bytes > dev.size())
            return cowd_corrupt(host);
        guest::ScopedBuffer gd(alloc, static_cast<size_t>(gd_bytes) + 4);
        if (!gd.p)
            return Status::NoMemory;
        if ((st = dev.read(x.gd_offset, gd.p, static_cast<size_t>(gd_bytes))) != Status::Ok)
            return st;
        // A delta disk's parent must not show in the grown area (vmdk_resize_expose.h): COWD has
        // no zeroed-grain entry, so every grain there gets one of its own (holes at the file's end).
        const uint64_t parent_end = parent.end_sectors(new_cap);
        uint8_t* head = nullptr;
        if (parent_end > cap && (st = cowd_head(host, alloc, x, gd.p, cap, dev, parent, &head)) != Status::Ok)
            return st;
        if ((st = cowd_clear_exposed(dev, host, alloc, x, gd.p, cap)) != Status::Ok ||
            (st = cowd_grow_directory(dev, host, alloc, x, gd.p, cap, need, hdr)) != Status::Ok)
            return st;
        if (parent_end > cap) {
            const uint64_t dir = need > x.l1_size ? uint64_t{load_le32(hdr + 20)} * 512 : x.gd_offset;
            const VmdkExpose expose{dir, 0, x.gtes, x.grain_sectors, cap, parent_end, false};
            if ((st = vmdk_expose_zeros(dev, host, alloc, expose, head)) != Status::Ok)
                return refuse(host, st, "vmdk: the resize failed");
            const uint64_t end = round_up(dev.size(), 512) / 512; // the next free sector follows the new grains
            if (load_le32(hdr + 28) < end)
                store_le32(hdr + 28, static_cast<uint32_t>(end));
        }
        if ((st = dev.flush(host)) != Status::Ok)
            return st;
    }
    store_le32(hdr + 12, static_cast<uint32_t>(new_cap));
    if ((st = dev.write(0, hdr, sizeof hdr)) == Status::Ok) // the switch
        st = dev.flush(host);
    return st;
}

// Extents qemu sizes by their own header (the descriptor's number is not read): a new size is
// written there, as monolithicSparse or COWD.
bool header_sized(ExtentType t) { return t == ExtentType::Sparse || t == ExtentType::VmfsSparse; }

Status resize_in_place(SizedDevice& file, ExtentType t, EditHost& host, guest::Allocator& alloc, uint64_t size,
                       const SparseParent& parent = SparseParent{}) {
    if (t == ExtentType::VmfsSparse)
        return resize_cowd(file, host, alloc, size, true, parent);
    return resize_sparse(file, host, alloc, nullptr, size, true, parent);
}

Status shrink_extents(SizedDevice& dev, SizedDevice* const* files, uint32_t count, Text t, const ExtentLine* lines,
                      const size_t* starts, LineEdit* edits, EditHost& host, guest::Allocator& alloc, uint64_t size) {
    const uint64_t new_sectors = size / 512;
    uint64_t before = 0;
    uint32_t keep = 0; // the extent holding the new end
    while (keep + 1 < count && before + static_cast<uint64_t>(lines[keep].sectors) < new_sectors)
        before += static_cast<uint64_t>(lines[keep++].sectors);
    const uint64_t kept_sectors = new_sectors - before;
    const bool drops = keep + 1 < count;
    const bool cut = kept_sectors < static_cast<uint64_t>(lines[keep].sectors);
    const bool sparse = header_sized(lines[keep].type); // the kept one's kind decides its cut
    SizedDevice& kept = *files[keep];
    Status st = Status::Ok;
    if (sparse && cut && !drops && (st = resize_in_place(kept, lines[keep].type, host, alloc, kept_sectors * 512)) != Status::Ok)
        return st;
    uint32_t n = 0;
    edits[n++] = {starts[keep], kept_sectors};
    for (uint32_t i = keep + 1; i < count; ++i)
        edits[n++] = {starts[i], DROP_LINE};
    guest::ScopedBuffer nb(alloc, DESC_MAX);
    if (!nb.p)
        return Status::NoMemory;
    Out out{reinterpret_cast<char*>(nb.p), DESC_MAX};
    if ((st = rewrite_descriptor(t, edits, n, nullptr, 0, size, &out)) != Status::Ok)
        return refuse(host, st, "vmdk: the new descriptor is too large");
    const size_t text_len = out.n;
    while (out.n < t.len && !out.overflow)
        out.put("\n", 1);
    st = dev.write(0, nb.p, out.n);
    if (st == Status::Ok)
        st = dev.flush(host);
    if (st == Status::Ok)
        st = dev.set_length(host, text_len, guest::Prealloc::Off);
    if (st == Status::Ok && cut && sparse && drops) {
        if ((st = resize_in_place(kept, lines[keep].type, host, alloc, kept_sectors * 512)) != Status::Ok)
            return st;
    } else if (st == Status::Ok && cut && !sparse) {
        const uint64_t offset = static_cast<uint64_t>(lines[keep].flat_offset < 0 ? 0 : lines[keep].flat_offset);
        if (kept.size() > (offset + kept_sectors) * 512)
            st = kept.set_length(host, (offset + kept_sectors) * 512, guest::Prealloc::Off);
    }
    for (uint32_t i = keep + 1; i < count && st == Status::Ok; ++i)
        st = host.data(guest::RESIZE_DATA_DROPPED_FILE, &i, sizeof i);
    return st == Status::Ok ? st : refuse(host, st, "vmdk: the resize failed");
}

// A split sparse set grows by new extent files after its last one, which is left as it is. qemu
// reads a grain whole, even past its extent's end (vmdk_co_preadv clips a read to the grain, not to
// the extent), so where the last extent ends inside a grain, what that grain holds past the end
// shows in the disk once a new extent follows. Before the new files: an allocated grain's tail is
// zeroed, and an unallocated one in a delta disk whose parent reaches past the end gets a grain of
// its own, the parent's bytes up to the end and zeros after (vmdk_resize_expose.h; the parent's
// bytes are asked for before anything is written). `first` is the extent's first disk sector.
Status settle_split_tail(SizedDevice& dev, EditHost& host, guest::Allocator& alloc, uint64_t first,
                         const SparseParent& parent) {
    Sparse s{};
    VmdkSparseExtent x{};
    bool embedded = false;
    Status st = vmdk_sparse_open(dev, &x, &s.h, &embedded);
    if (st != Status::Ok || embedded || x.compressed)
        return refuse(host, st != Status::Ok ? st : Status::Unsupported, "vmdk: cannot open the last sparse extent");
    const uint64_t cap = s.h.capacity, gran = s.h.granularity;
    if (gran == 0 || cap % gran == 0)
        return Status::Ok;
    s.l1_entry_sectors = uint64_t{s.h.num_gtes_per_gt} * gran;
    s.gt_bytes = round_up(uint64_t{s.h.num_gtes_per_gt} * 4, 512);
    const bool rgd = s.h.rgd_offset != 0 && (s.h.flags & VMDK4_FLAG_RGD) != 0;
    const uint64_t grain_end = cap / gran * gran + gran;
    const VmdkExpose expose{s.h.gd_offset * 512, rgd ? s.h.rgd_offset * 512 : 0, s.h.num_gtes_per_gt, gran, cap,
                            grain_end, (s.h.flags & VMDK4_FLAG_ZERO_GRAIN) != 0};
    uint8_t* head = nullptr;
    const bool reaches = parent.end_sectors(UINT64_MAX) > first + cap; // parent.base is 0: disk sectors
    if (reaches) {
        uint64_t asked = UINT64_MAX;
        if ((st = vmdk_expose_head(dev, expose, &asked)) != Status::Ok)
            return refuse(host, st, "vmdk: the grain holding the last extent's end has no grain table");
        if (asked != UINT64_MAX &&
            (st = parent_head(host, alloc, parent, first * 512 + asked, gran * 512, &head)) != Status::Ok)
            return st;
    }
    st = clear_range(dev, alloc, s, s.h.gd_offset * 512, l1_size(s, cap), cap, cap, true);
    if (st == Status::Ok && head != nullptr)
        st = vmdk_expose_zeros(dev, host, alloc, expose, head);
    if (st == Status::Ok)
        st = dev.flush(host);
    return st == Status::Ok ? st : refuse(host, st, "vmdk: the resize failed");
}

Status resize_flat(SizedDevice& dev, SizedDevice* const* files, uint32_t file_count, EditHost& host,
                   guest::Allocator& alloc, uint64_t size, bool shrink_ok, guest::Prealloc prealloc,
                   const SparseParent& parent) {
    const uint64_t parent_sectors = parent.end_sectors(UINT64_MAX); // where the parent ends, disk sectors (base 0)
    const size_t cap = dev.size() < DESC_MAX ? static_cast<size_t>(dev.size()) : DESC_MAX;
    guest::ScopedBuffer text_buf(alloc, cap + 1);
    if (!text_buf.p)
        return Status::NoMemory;
    Status st = read_zero_filled(dev, 0, text_buf.p, cap);
    if (st != Status::Ok)
        return st;
    text_buf.p[cap] = 0;
    const Text t = text_of(text_buf.p, cap);
    const char* ct = nullptr;
    size_t ct_len = 0;
    if (!descriptor_value(t, "createType", VMDK_CREATE_TYPE_MAX + 1, &ct, &ct_len))
        return refuse(host, Status::Corrupt, "invalid VMDK image descriptor");
    static constexpr char SPLIT[] = "twoGbMaxExtentFlat";
    bool split = ct_len == sizeof SPLIT - 1;
    for (size_t i = 0; split && i < ct_len; ++i)
        split = ct[i] == SPLIT[i];
    const uint32_t n_max = file_count < MAX_EXTENTS ? file_count : MAX_EXTENTS;
    auto* starts = static_cast<size_t*>(alloc.allocate((n_max + 1) * sizeof(size_t), alignof(size_t)));
    auto* lines = static_cast<ExtentLine*>(alloc.allocate((n_max + 1) * sizeof(ExtentLine), alignof(ExtentLine)));
    auto* edits = static_cast<LineEdit*>(alloc.allocate((n_max + 1) * sizeof(LineEdit), alignof(LineEdit)));
    if (starts == nullptr || lines == nullptr || edits == nullptr)
        return Status::NoMemory;
    Collected c{t.s, 0, n_max, starts, lines};
    if ((st = descriptor_extents(t, collect_line, &c)) != Status::Ok || c.count != file_count || c.count == 0)
        return refuse(host, Status::Invalid, "The extent files given do not match the descriptor");
    // FLAT, VMFS and SPARSE extents in any mix, under any createType qemu opens a descriptor of. qemu
    // sizes a sparse extent by its header's capacity; qemu's create writes the same number in the
    // descriptor, which is used here.
    uint64_t old_sectors = 0;
    for (uint32_t i = 0; i < c.count; ++i) {
        if (lines[i].type == ExtentType::SeSparse)
            return refuse(host, Status::Unsupported,
                          "vmdk: only FLAT, VMFS, SPARSE and VMFSSPARSE extents can be resized");
        old_sectors += static_cast<uint64_t>(lines[i].sectors);
    }
    static constexpr char SPLIT_SPARSE[] = "twoGbMaxExtentSparse";
    bool split_sparse = ct_len == sizeof SPLIT_SPARSE - 1;
    for (size_t i = 0; split_sparse && i < ct_len; ++i)
        split_sparse = ct[i] == SPLIT_SPARSE[i];
    split = split || split_sparse;
    // The last extent decides how the disk grows: a flat one grows in place (to 2 GiB in a split
    // set, then new files of its kind), a sparse one gets new sparse files in a split set and grows
    // its own capacity otherwise (then its header is the switch qemu sees, the descriptor follows).
    const ExtentType last_type = lines[c.count - 1].type;
    const bool sparse = header_sized(last_type);
    if (last_type == ExtentType::VmfsSparse)
        split = false; // a COWD last extent grows its own capacity, even in a split set
    if (sparse && prealloc != guest::Prealloc::Off)
        return refuse(host, Status::Unsupported, "vmdk: preallocation is not supported for sparse extents");
    // A delta disk's parent must not show in the grown area. A split sparse set grows by new extent
    // files alone, which get their own grains over the part of the parent they expose (below, with
    // settle_split_tail first); outside one, a SPARSE or COWD last extent grows its capacity and
    // gets its grains as a file opened alone does (resize_sparse, resize_cowd; the parent's offsets
    // shifted by where the extent starts).
    const bool split_sparse_grow = split && sparse && last_type != ExtentType::VmfsSparse;
    const uint64_t new_sectors = size / 512;
    if (new_sectors == old_sectors)
        return Status::Ok;
    if (new_sectors < old_sectors && !shrink_ok)
        return refuse(host, Status::Invalid, "Use the --shrink option to perform a shrink operation.");
    constexpr uint64_t split_sectors = static_cast<uint64_t>(VMDK_SPLIT_BYTES) / 512;
    const uint32_t last = c.count - 1;
    const uint64_t last_sectors = static_cast<uint64_t>(lines[last].sectors);
    const uint64_t last_offset = static_cast<uint64_t>(lines[last].flat_offset < 0 ? 0 : lines[last].flat_offset);
    SizedDevice& last_file = *files[last];

    if (new_sectors < old_sectors)
        return shrink_extents(dev, files, c.count, t, lines, starts, edits, host, alloc, size);

    // Grow: the last extent first (to 2 GiB for split images), then new extent files. In a split
    // set a sparse last extent stays as it is: qemu reads its size from its header, so growing it
    // would change the disk before the descriptor does; new extents alone keep the descriptor the
    // one switch. Outside a split set there is no name for a new file, so a sparse last extent
    // grows its capacity (resize_sparse: its header is the switch qemu sees; a kill before the
    // descriptor follows leaves a line naming the old size, which qemu does not read).
    uint64_t more = new_sectors - old_sectors;
    uint64_t grow_last = more;
    if (sparse && split)
        grow_last = 0;
    else if (split)
        grow_last = last_sectors >= split_sectors ? 0 : (split_sectors - last_sectors < more ? split_sectors - last_sectors : more);
    more -= grow_last;
    const uint64_t new_files = split ? (more + split_sectors - 1) / split_sectors : 0;
    bool zeroed_grain = false;
    if (last_type == ExtentType::VmfsSparse) {
        VmdkAltExtent x{};
        char why[VMDK_REASON_MAX];
        if ((st = vmdk_cowd_open(last_file, &x, why)) != Status::Ok)
            return refuse(host, st, why[0] != 0 ? why : "vmdk: cannot open the last COWD extent");
        if (x.sectors != last_sectors)
            return refuse(host, Status::Unsupported,
                          "vmdk: the last sparse extent's header and the descriptor disagree on its size");
    } else if (sparse) {
        Vmdk4Header h{};
        VmdkSparseExtent x{};
        bool embedded = false;
        if ((st = vmdk_sparse_open(last_file, &x, &h, &embedded)) != Status::Ok || embedded || x.compressed)
            return refuse(host, st != Status::Ok ? st : Status::Unsupported, "vmdk: cannot open the last sparse extent");
        zeroed_grain = (h.flags & VMDK4_FLAG_ZERO_GRAIN) != 0;
        if (!split && h.capacity != last_sectors)
            return refuse(host, Status::Unsupported,
                          "vmdk: the last sparse extent's header and the descriptor disagree on its size");
    }
    if (new_files > MAX_EXTENTS - c.count)
        return refuse(host, Status::TooLarge, "vmdk: too many extent files");
    if (split_sparse_grow && last_type == ExtentType::Sparse &&
        (st = settle_split_tail(last_file, host, alloc, old_sectors - last_sectors, parent)) != Status::Ok)
        return st;
    if (!split && more != 0)
        return refuse(host, Status::Invalid, "vmdk: internal error");
    // Extra extent lines ("RW n FLAT "name" 0"), the new files made and sized as holes.
    guest::ScopedBuffer extra_buf(alloc, static_cast<size_t>(new_files) * (40 + guest::CREATE_MAX_FILE_NAME) + 1);
    if (!extra_buf.p)
        return Status::NoMemory;
    Out extra{reinterpret_cast<char*>(extra_buf.p), static_cast<size_t>(new_files) * (40 + guest::CREATE_MAX_FILE_NAME)};
    // New files first: a host that cannot add files refuses before anything changed.
    for (uint64_t i = 0; i < new_files && st == Status::Ok; ++i) {
        char name[guest::CREATE_MAX_FILE_NAME + 1];
        if (!next_split_name(lines[last].file, lines[last].file_len, i + 1, sparse ? 's' : 'f', name, sizeof name))
            return refuse(host, Status::Unsupported,
                          "vmdk: the last extent's file name does not follow NAME-fNNN.vmdk or NAME-sNNN.vmdk; "
                          "cannot name new extents");
        const uint64_t n = more - i * split_sectors < split_sectors ? more - i * split_sectors : split_sectors;
        guest::BlockDevice* f = nullptr;
        st = host.add_file(name, &f);
        if (st != Status::Ok)
            return refuse(host, st, "vmdk: could not create a new extent file");
        if (sparse) {
            guest::ScopedBuffer chunk(alloc, VMDK_CREATE_GD_CHUNK);
            if (!chunk.p)
                return Status::NoMemory;
            ExtentTarget target(host, dev);
            const SparseLayout layout = sparse_layout(n * 512, false, zeroed_grain);
            if ((st = write_sparse_extent(target, *f, layout, chunk.p)) != Status::Ok)
                break;
            // A delta disk: the part of its parent this file exposes reads as zeros (its grains
            // allocated, vmdk_resize_expose.h; the file is new, so there is no grain holding an old
            // end). Before the descriptor names the file.
            const uint64_t first = old_sectors + grow_last + i * split_sectors; // the file's first disk sector
            if (parent_sectors > first) {
                SizedDevice fresh(*f, layout.header.grain_offset * 512);
                const VmdkExpose x{layout.header.gd_offset * 512, layout.header.rgd_offset * 512,
                                   layout.header.num_gtes_per_gt, layout.header.granularity, 0,
                                   parent_sectors - first < n ? parent_sectors - first : n, zeroed_grain};
                if ((st = vmdk_expose_zeros(fresh, host, alloc, x, nullptr)) != Status::Ok)
                    break;
            }
        } else if ((st = host.set_length(*f, n * 512, prealloc)) != Status::Ok) {
            break;
        }
        extra.put("RW ");
        extra.put_u64(n);
        extra.put(sparse ? " SPARSE \"" : " FLAT \"");
        extra.put(name);
        extra.put(sparse ? "\"\n" : "\" 0\n");
    }
    const uint64_t file_end = (last_offset + last_sectors + grow_last) * 512;
    if (st == Status::Ok && sparse && grow_last > 0) {
        SparseParent shifted = parent;
        shifted.base = (old_sectors - last_sectors) * 512;
        if ((st = resize_in_place(last_file, last_type, host, alloc, (last_sectors + grow_last) * 512, shifted)) !=
            Status::Ok)
            return st; // resize_sparse / resize_cowd said why
    } else if (st == Status::Ok && grow_last > 0 && last_file.size() < file_end) {
        st = last_file.set_length(host, file_end, prealloc);
    }
    if (st == Status::Ok)
        st = last_file.flush(host);
    if (st != Status::Ok)
        return refuse(host, st, "vmdk: the resize failed");
    edits[0] = {starts[last], last_sectors + grow_last};
    guest::ScopedBuffer nb(alloc, DESC_MAX);
    if (!nb.p)
        return Status::NoMemory;
    Out out{reinterpret_cast<char*>(nb.p), DESC_MAX};
    if ((st = rewrite_descriptor(t, edits, 1, extra.p, extra.n, size, &out)) != Status::Ok)
        return refuse(host, st, "vmdk: the new descriptor is too large");
    st = dev.flush(host);
    if (st == Status::Ok)
        st = dev.write(0, nb.p, out.n); // the switch: a descriptor at least as long as the old one
    if (st == Status::Ok && out.n < dev.size())
        st = dev.set_length(host, out.n, guest::Prealloc::Off);
    return st == Status::Ok ? st : refuse(host, st, "vmdk: the resize failed");
}

// The edit's devices with their real lengths (images and extent files), from the arena.
struct Devices {
    SizedDevice* image;
    SizedDevice** files;
    uint32_t count;
};

Status make_devices(const EditRequest& req, Devices* d) {
    guest::Allocator& a = *req.allocator;
    d->image = guest::arena_new<SizedDevice>(a, *req.image, req.image_length);
    d->count = req.file_count;
    d->files = static_cast<SizedDevice**>(a.allocate((req.file_count + 1) * sizeof(SizedDevice*), alignof(SizedDevice*)));
    if (d->image == nullptr || d->files == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < req.file_count; ++i) {
        if (req.files == nullptr || req.files[i] == nullptr || req.file_lengths == nullptr)
            return Status::Invalid;
        d->files[i] = guest::arena_new<SizedDevice>(a, *req.files[i], req.file_lengths[i]);
        if (d->files[i] == nullptr)
            return Status::NoMemory;
    }
    return Status::Ok;
}

class NoReasons final : public guest::ReasonSink {
public:
    explicit NoReasons(EditHost& h) : host_(h) {}
    void reason(const char* text, size_t len) override { host_.reason(text, len); }

private:
    EditHost& host_;
};

} // namespace

guest::Status edit_resize(const EditRequest& req, EditHost& host) {
    if (req.image == nullptr || req.allocator == nullptr || req.args == nullptr ||
        req.args_len != sizeof(guest::ResizeArgs))
        return refuse(host, Status::Invalid, "invalid resize arguments");
    guest::ResizeArgs args;
    __builtin_memcpy(&args, req.args, sizeof args);
    // The files are extended with holes, reserved or written zeros; format-level metadata
    // preallocation is not offered (qemu's raw wording).
    if (args.prealloc == static_cast<uint32_t>(guest::Prealloc::Metadata))
        return refuse(host, Status::Unsupported, "Unsupported preallocation mode: metadata");
    Devices d{};
    Status st = make_devices(req, &d);
    if (st != Status::Ok)
        return refuse(host, st, "vmdk: out of memory");
    // The image must open as the reader opens it (qemu's checks, the extents' headers).
    {
        NoReasons reasons(host);
        guest::OpenRequest o{};
        o.image = d.image;
        o.files = reinterpret_cast<guest::BlockDevice* const*>(d.files);
        o.file_count = d.count;
        o.allocator = req.allocator;
        o.codecs = req.codecs;
        o.reasons = &reasons;
        o.qemu_version = req.qemu_version;
        ReadLayout layout{};
        st = open_layout(o, &layout);
        if (st != Status::Ok)
            return st;
        free_layout(*req.allocator, &layout);
        // A base commit writes next: refused now if its writer would refuse it (nothing written),
        // not after it grew (a streamOptimized image in VMware's footer layout).
        guest::ImageWriter* writer = nullptr;
        if ((args.flags & guest::RESIZE_THEN_WRITTEN) != 0 && (st = open_writer(o, &writer)) != Status::Ok)
            return st;
    }
    const uint64_t size = (args.new_size + 511) & ~uint64_t{511};
    if (size == 0)
        return refuse(host, Status::Invalid, "vmdk: a disk cannot be resized to 0 bytes");
    const bool shrink_ok = (args.flags & guest::RESIZE_SHRINK) != 0;
    // A delta disk grown over a parent that reaches past the old end: the parent must not show in
    // the grown area (qemu zeroes a qcow2 overlay's, bdrv_co_truncate).
    SparseParent parent{};
    if ((args.flags & guest::RESIZE_HAS_BACKING) != 0 && args.backing_size > args.old_size && size > args.old_size) {
        parent.end = args.backing_size < size ? args.backing_size : size;
        parent.bytes_sent = (args.flags & guest::RESIZE_BACKING_BYTES) != 0;
        parent.extra = req.extra;
        parent.extra_count = req.extra_count;
    }
    uint8_t magic[4];
    if ((st = read_zero_filled(*d.image, 0, magic, sizeof magic)) != Status::Ok)
        return st;
    if (load_be32(magic) == VMDK4_MAGIC) {
        Vmdk4Header h{};
        VmdkSparseExtent x{};
        bool embedded = false;
        if (vmdk_sparse_open(*d.image, &x, &h, &embedded) == Status::Ok && embedded)
            return refuse(host, Status::Unsupported, "vmdk: a descriptor inside a sparse header is not supported");
        if ((args.flags & guest::RESIZE_PREALLOC_GIVEN) != 0 && args.prealloc != 0)
            return refuse(host, Status::Unsupported, "vmdk: preallocation is not supported for sparse extents");
        return resize_sparse(*d.image, host, *req.allocator, req.codecs, size, shrink_ok, parent);
    }
    if (load_be32(magic) == VMDK3_MAGIC) {
        if ((args.flags & guest::RESIZE_PREALLOC_GIVEN) != 0 && args.prealloc != 0)
            return refuse(host, Status::Unsupported, "vmdk: preallocation is not supported for sparse extents");
        return resize_cowd(*d.image, host, *req.allocator, size, shrink_ok, parent);
    }
    return resize_flat(*d.image, d.files, d.count, host, *req.allocator, size, shrink_ok,
                       static_cast<guest::Prealloc>(args.prealloc), parent);
}

} // namespace instar::vmdk
