// Parsing of the qcow2 bitmap directory.
#include "qcow2_bitmap.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"

namespace instar::qcow2 {

Status qcow2_bitmap_entry_parse(const Qcow2Header& h, uint64_t virtual_size, const uint8_t* data, size_t len,
                                Qcow2BitmapDirEntry* out) {
    if (len < sizeof(Qcow2BitmapDirEntryDisk))
        return Status::Corrupt;
    Qcow2BitmapDirEntryDisk d;
    __builtin_memcpy(&d, data, sizeof d);
    Qcow2BitmapDirEntry e;
    e.bitmap_table_offset = load_be64(d.bitmap_table_offset);
    e.bitmap_table_size = load_be32(d.bitmap_table_size);
    e.flags = load_be32(d.flags);
    e.type = d.type[0];
    e.granularity_bits = d.granularity_bits[0];
    e.name_size = load_be16(d.name_size);
    e.extra_data_size = load_be32(d.extra_data_size);
    if (e.extra_data_size != 0)
        return Status::Unsupported; // qemu: "Bitmap extra data is not supported"
    if (e.bitmap_table_size > BME_MAX_TABLE_SIZE || e.name_size > BME_MAX_NAME_SIZE)
        return Status::TooLarge;
    if (e.bitmap_table_size == 0 || e.bitmap_table_offset == 0 ||
        (e.bitmap_table_offset & (h.cluster_size() - 1)) != 0 || e.granularity_bits > BME_MAX_GRANULARITY_BITS ||
        e.granularity_bits < BME_MIN_GRANULARITY_BITS || (e.flags & BME_RESERVED_FLAGS) != 0 ||
        e.type != BT_DIRTY_TRACKING_BITMAP)
        return Status::Corrupt;
    // Cannot overflow: table size < 2^27 and cluster size <= 2^21.
    const uint64_t phys_bytes = uint64_t{e.bitmap_table_size} << h.cluster_bits;
    if (phys_bytes > BME_MAX_PHYS_SIZE)
        return Status::TooLarge;
    // A consistent bitmap's table must cover the disk (bits <= 2^32, shifted by <= 31: fits).
    if (!(e.flags & BME_FLAG_IN_USE) && virtual_size > ((phys_bytes * 8) << e.granularity_bits))
        return Status::Corrupt;
    *out = e;
    return Status::Ok;
}

namespace {

Status walk(const Qcow2Header& h, const Qcow2Extensions& ext, uint64_t virtual_size, MetadataReader& reader,
            guest::InfoSink* sink) {
    if (ext.nb_bitmaps == 0)
        return Status::Ok;
    if (ext.bitmap_directory_size == 0)
        return Status::Corrupt;
    const uint64_t start = ext.bitmap_directory_offset;
    const uint64_t size = ext.bitmap_directory_size; // <= QCOW2_MAX_BITMAP_DIRECTORY_SIZE
    uint64_t end = 0;
    if (add_overflow(start, size, &end))
        return Status::Corrupt;
    uint64_t offset = start;
    uint32_t entries = 0;
    while (offset < end) {
        if (end - offset < sizeof(Qcow2BitmapDirEntryDisk))
            return Status::Corrupt;
        if (++entries > ext.nb_bitmaps)
            return Status::Corrupt; // qemu: "More bitmaps found than specified in header extension"
        uint8_t raw[sizeof(Qcow2BitmapDirEntryDisk)];
        Status st = reader.read(offset, raw, sizeof raw);
        if (st != Status::Ok)
            return st;
        Qcow2BitmapDirEntry e;
        const uint32_t extra = load_be32(raw + 20);
        const uint64_t declared = (sizeof raw + uint64_t{extra} + load_be16(raw + 18) + 7) & ~uint64_t{7};
        if (declared > end - offset)
            return Status::Corrupt; // qemu: broken directory (entry overruns it)
        st = qcow2_bitmap_entry_parse(h, virtual_size, raw, sizeof raw, &e);
        if (st != Status::Ok)
            return st;
        uint8_t name[BME_MAX_NAME_SIZE];
        st = reader.read(offset + sizeof raw, name, e.name_size);
        if (st != Status::Ok)
            return st;
        if (sink) {
            // Qcow2BitmapInfo field order: name, granularity, flags (in-use before auto, as qemu).
            sink->begin_object(nullptr);
            // SAFETY: byte buffer viewed as chars for the sink; same size and alignment.
            sink->put_string("name", reinterpret_cast<const char*>(name), bounded_strlen(name, e.name_size));
            sink->put_uint("granularity", e.granularity());
            sink->begin_list("flags");
            if (e.flags & BME_FLAG_IN_USE)
                sink->put_string(nullptr, "in-use", 6);
            if (e.flags & BME_FLAG_AUTO)
                sink->put_string(nullptr, "auto", 4);
            sink->end_list();
            sink->end_object();
        }
        offset += e.entry_size();
    }
    if (entries != ext.nb_bitmaps || offset != end)
        return Status::Corrupt; // qemu: "Less bitmaps found than specified" / broken directory
    return Status::Ok;
}

} // namespace

Status qcow2_bitmaps_report(const Qcow2Header& h, const Qcow2Extensions& ext, uint64_t virtual_size,
                            MetadataReader& reader, guest::InfoSink& sink) {
    return walk(h, ext, virtual_size, reader, &sink);
}

Status qcow2_bitmaps_check(const Qcow2Header& h, const Qcow2Extensions& ext, uint64_t virtual_size,
                           MetadataReader& reader) {
    return walk(h, ext, virtual_size, reader, nullptr);
}

} // namespace instar::qcow2
