// The persistent bitmaps' ranges (qcow2_bitmap_ranges.h).
#include "qcow2_bitmap_ranges.h"

#include "qcow2_bitmap.h"
#include "qcow2_extensions.h"
#include "qcow2_limits.h"

namespace instar::qcow2 {

namespace {

// Bitmap table entries read at once (64 KiB): tables may be up to BME_MAX_TABLE_SIZE entries.
constexpr uint64_t BITMAP_TABLE_CHUNK = 8192;

// Guest memory released on every path out of load().
struct Buffer {
    guest::Allocator& alloc;
    void* p = nullptr;
    size_t bytes = 0;
    Buffer(guest::Allocator& a, uint64_t n) : alloc(a), p(a.allocate(static_cast<size_t>(n), 64)), bytes(static_cast<size_t>(n)) {}
    ~Buffer() {
        if (p != nullptr)
            alloc.deallocate(p, bytes);
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

Status corrupt(ReasonText* why, const char* what, uint64_t offset) {
    why->add(what).add(" (offset ").hex(offset).add(")");
    return Status::Corrupt;
}

} // namespace

Status BitmapRanges::load(Qcow2Inplace& ip, guest::Allocator& alloc, ReasonText* why) {
    const Qcow2Header& h = ip.header();
    if (h.version < 3 || (h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) == 0)
        return Status::Ok;
    const uint64_t cs = ip.cluster_size();
    Qcow2Extensions ext{};
    {
        Buffer hdr(alloc, cs);
        if (hdr.p == nullptr)
            return Status::NoMemory;
        __builtin_memset(hdr.p, 0, hdr.bytes);
        const uint64_t have = ip.file_length() < cs ? ip.file_length() : cs;
        if (const Status st = ip.read(0, hdr.p, static_cast<size_t>(have)); st != Status::Ok)
            return st;
        if (const Status st = qcow2_extensions_parse(h, static_cast<const uint8_t*>(hdr.p), h.header_length,
                                                     h.extensions_end(), &ext);
            st != Status::Ok)
            return st;
    }
    if (ext.nb_bitmaps == 0)
        return Status::Ok;
    const uint64_t dir_at = ext.bitmap_directory_offset, dsize = ext.bitmap_directory_size;
    if (dsize > QCOW2_MAX_BITMAP_DIRECTORY_SIZE || !ip.range_in_file(dir_at, dsize))
        return corrupt(why, "Bitmap directory invalid or past the end of the image file", dir_at);
    Buffer dir(alloc, dsize == 0 ? 8 : dsize);
    Buffer table(alloc, BITMAP_TABLE_CHUNK * 8);
    if (dir.p == nullptr || table.p == nullptr)
        return Status::NoMemory;
    const auto* d = static_cast<const uint8_t*>(dir.p);
    if (const Status st = ip.read(dir_at, dir.p, static_cast<size_t>(dsize)); st != Status::Ok)
        return st;
    // Pass 1: the entries (qemu's checks) and how many table entries they hold in all.
    uint64_t off = 0, entries = 0;
    for (uint32_t i = 0; i < ext.nb_bitmaps; ++i) {
        Qcow2BitmapDirEntry e;
        if (dsize - off < sizeof(Qcow2BitmapDirEntryDisk) ||
            qcow2_bitmap_entry_parse(h, h.size, d + off, static_cast<size_t>(dsize - off), &e) != Status::Ok ||
            e.entry_size() > dsize - off)
            return corrupt(why, "Bitmap directory entry invalid", dir_at + off);
        entries += e.bitmap_table_size; // each at most BME_MAX_TABLE_SIZE (the parse): no overflow
        off += e.entry_size();
    }
    if (off != dsize)
        return corrupt(why, "Bitmap directory size does not match its entries", dir_at);
    const uint64_t data = entries < BITMAP_RANGES_MAX ? entries : BITMAP_RANGES_MAX;
    if (const Status st = ranges_.reserve(alloc, 1 + uint64_t{ext.nb_bitmaps} + data); st != Status::Ok)
        return st;
    ranges_.add(dir_at, dir_at + dsize);
    // Pass 2: each table and the data clusters it names.
    auto* t = static_cast<uint64_t*>(table.p);
    off = 0;
    for (uint32_t i = 0; i < ext.nb_bitmaps; ++i) {
        Qcow2BitmapDirEntry e;
        (void)qcow2_bitmap_entry_parse(h, h.size, d + off, static_cast<size_t>(dsize - off), &e); // pass 1 checked it
        off += e.entry_size();
        const uint64_t bytes = uint64_t{e.bitmap_table_size} * 8;
        if (!ip.range_in_file(e.bitmap_table_offset, bytes))
            return corrupt(why, "Bitmap table invalid or past the end of the image file", e.bitmap_table_offset);
        ranges_.add(e.bitmap_table_offset, e.bitmap_table_offset + bytes);
        for (uint64_t done = 0; done < e.bitmap_table_size;) {
            const uint64_t n = e.bitmap_table_size - done < BITMAP_TABLE_CHUNK ? e.bitmap_table_size - done
                                                                                 : BITMAP_TABLE_CHUNK;
            if (const Status st = ip.read_table(e.bitmap_table_offset + done * 8, t, n); st != Status::Ok)
                return st;
            for (uint64_t k = 0; k < n; ++k) {
                const uint64_t entry = t[k], at = entry & BME_TABLE_ENTRY_OFFSET_MASK;
                if ((entry & BME_TABLE_ENTRY_RESERVED_MASK) != 0 ||
                    (at != 0 && ((entry & BME_TABLE_ENTRY_FLAG_ALL_ONES) != 0 || !ip.cluster_in_file(at))))
                    return corrupt(why, "Bitmap table entry invalid", e.bitmap_table_offset + (done + k) * 8);
                if (at != 0 && !ranges_.add(at, at + cs)) {
                    why->add("instar cannot empty an image whose bitmaps use more than ").dec(BITMAP_RANGES_MAX)
                        .add(" data clusters");
                    return Status::TooLarge;
                }
            }
            done += n;
        }
    }
    ranges_.finish();
    return Status::Ok;
}

} // namespace instar::qcow2
