// The persistent bitmaps' ranges (qcow2_bitmap_ranges.h).
#include "qcow2_bitmap_ranges.h"

#include "qcow2_bitmap_walk.h"
#include "qcow2_bytes.h"

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

Status BitmapRanges::load(const Qcow2Header& h, guest::BlockDevice& dev, uint64_t file_len, guest::Allocator& alloc,
                          ReasonText* why, BitmapDirty* dirty) {
    if (h.version < 3 || (h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) == 0)
        return Status::Ok;
    const uint64_t cs = h.cluster_size();
    auto cluster_in_file = [&](uint64_t at) { return qcow2_placed_in_file(at, cs, cs, file_len); };
    Qcow2Extensions ext{};
    {
        Buffer hdr(alloc, cs);
        if (hdr.p == nullptr)
            return Status::NoMemory;
        if (const Status st = qcow2_header_cluster_read(dev, file_len, h, static_cast<uint8_t*>(hdr.p), &ext);
            st != Status::Ok)
            return st;
    }
    if (ext.nb_bitmaps == 0)
        return Status::Ok;
    const uint64_t dir_at = ext.bitmap_directory_offset, dsize = ext.bitmap_directory_size;
    if (!qcow2_bitmap_dir_placed(ext, file_len))
        return corrupt(why, "Bitmap directory invalid or past the end of the image file", dir_at);
    Buffer dir(alloc, dsize == 0 ? 8 : dsize);
    Buffer table(alloc, BITMAP_TABLE_CHUNK * 8);
    if (dir.p == nullptr || table.p == nullptr)
        return Status::NoMemory;
    const auto* d = static_cast<const uint8_t*>(dir.p);
    if (const Status st = dev.read(dir_at, dir.p, static_cast<size_t>(dsize)); st != Status::Ok)
        return st;
    // Pass 1: the entries (qemu's checks) and how many table entries they hold in all.
    uint64_t entries = 0, stop = 0;
    if (qcow2_bitmap_dir_walk(h, d, dsize, ext.nb_bitmaps, [&](const Qcow2BitmapDirEntry& e, const uint8_t*, uint64_t) {
            entries += e.bitmap_table_size; // each at most BME_MAX_TABLE_SIZE (the parse): no overflow
            return Status::Ok;
        }, &stop) != Status::Ok)
        return corrupt(why, "Bitmap directory entry invalid or the directory's size does not match its entries",
                       dir_at + stop);
    const uint64_t data = entries < BITMAP_RANGES_MAX ? entries : BITMAP_RANGES_MAX;
    if (const Status st = ranges_.reserve(alloc, 1 + uint64_t{ext.nb_bitmaps} + data); st != Status::Ok)
        return st;
    ranges_.add(dir_at, dir_at + dsize);
    if (dirty != nullptr)
        if (const Status st = dirty->begin(h, dev, ext.nb_bitmaps, alloc); st != Status::Ok)
            return st;
    // Pass 2: each table and the data clusters it names.
    auto* t = static_cast<uint8_t*>(table.p);
    const Status st = qcow2_bitmap_dir_walk(h, d, dsize, ext.nb_bitmaps, [&](const Qcow2BitmapDirEntry& e,
                                                                             const uint8_t*, uint64_t) {
        const uint64_t bytes = uint64_t{e.bitmap_table_size} * 8;
        if (e.bitmap_table_offset > file_len || bytes > file_len - e.bitmap_table_offset)
            return corrupt(why, "Bitmap table invalid or past the end of the image file", e.bitmap_table_offset);
        ranges_.add(e.bitmap_table_offset, e.bitmap_table_offset + bytes);
        if (dirty != nullptr)
            dirty->add(e);
        for (uint64_t done = 0; done < e.bitmap_table_size;) {
            const uint64_t n = e.bitmap_table_size - done < BITMAP_TABLE_CHUNK ? e.bitmap_table_size - done
                                                                                 : BITMAP_TABLE_CHUNK;
            if (const Status s2 = dev.read(e.bitmap_table_offset + done * 8, t, static_cast<size_t>(n * 8));
                s2 != Status::Ok)
                return s2;
            for (uint64_t k = 0; k < n; ++k) {
                const uint64_t entry = load_be64(t + k * 8), at = entry & BME_TABLE_ENTRY_OFFSET_MASK;
                if (!qcow2_bitmap_table_entry_ok(entry, cluster_in_file))
                    return corrupt(why, "Bitmap table entry invalid", e.bitmap_table_offset + (done + k) * 8);
                if (at != 0 && !ranges_.add(at, at + cs)) {
                    why->add("instar cannot change an image whose bitmaps use more than ").dec(BITMAP_RANGES_MAX)
                        .add(" data clusters");
                    return Status::TooLarge;
                }
            }
            done += n;
        }
        return Status::Ok;
    });
    if (st != Status::Ok)
        return st;
    ranges_.finish();
    return Status::Ok;
}

} // namespace instar::qcow2
