// Dirtying the enabled persistent bitmaps of an image being written (qcow2_bitmap_dirty.h).
#include "qcow2_bitmap_dirty.h"

#include "qcow2_bitmap_walk.h"
#include "qcow2_bytes.h"

namespace instar::qcow2 {

Status BitmapDirty::begin(const Qcow2Header& h, guest::BlockDevice& dev, uint32_t count, guest::Allocator& alloc) {
    dev_ = &dev;
    cs_ = h.cluster_size();
    buf_ = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(cs_), 64));
    bitmaps_ = static_cast<Bitmap*>(alloc.allocate(sizeof(Bitmap) * (count == 0 ? 1 : count), 8));
    if (bitmaps_ != nullptr)
        capacity_ = count == 0 ? 1 : count; // (release() frees what was allocated)
    return buf_ == nullptr || bitmaps_ == nullptr ? Status::NoMemory : Status::Ok;
}

void BitmapDirty::add(const Qcow2BitmapDirEntry& e) {
    // qemu records writes in enabled bitmaps only; an IN_USE one is inconsistent, left alone.
    if ((e.flags & BME_FLAG_AUTO) != 0 && (e.flags & BME_FLAG_IN_USE) == 0 && count_ < capacity_)
        bitmaps_[count_++] = Bitmap{e.bitmap_table_offset, e.bitmap_table_size, e.granularity_bits};
}

void BitmapDirty::release(guest::Allocator& alloc) {
    if (buf_ != nullptr)
        alloc.deallocate(buf_, static_cast<size_t>(cs_));
    if (bitmaps_ != nullptr)
        alloc.deallocate(bitmaps_, sizeof(Bitmap) * capacity_);
    buf_ = nullptr;
    bitmaps_ = nullptr;
    count_ = capacity_ = 0;
}

Status BitmapDirty::mark(uint64_t offset, uint64_t len, Clusters& clusters, ReasonText* why) {
    if (len == 0)
        return Status::Ok;
    for (uint32_t i = 0; i < count_; ++i) {
        const Bitmap& b = bitmaps_[i];
        if (const Status st = mark_one(b, offset >> b.gran_bits, (offset + len - 1) >> b.gran_bits, clusters, why);
            st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

// Bits [first, last] of one bitmap, data cluster by data cluster: the table entry read (and
// checked again: the file may have grown since the load), then the bytes holding the bits read,
// changed and written back only where a bit was clear; an entry without a data cluster gets one.
Status BitmapDirty::mark_one(const Bitmap& b, uint64_t first, uint64_t last, Clusters& clusters, ReasonText* why) {
    const uint64_t bpc = cs_ * 8; // bits per data cluster
    auto in_file = [&](uint64_t at) { return qcow2_placed_in_file(at, cs_, cs_, clusters.file_length()); };
    while (first <= last) {
        const uint64_t ci = first / bpc, in = first % bpc;
        const uint64_t end = last - first < bpc - 1 - in ? in + (last - first) : bpc - 1;
        const uint64_t at_entry = b.table_offset + ci * 8;
        uint8_t raw[8];
        if (ci >= b.table_size) { // a consistent bitmap's table covers the disk (the directory parse)
            why->add("Bitmap table too small for the write at bit ").dec(first);
            return Status::Corrupt;
        }
        if (const Status st = dev_->read(at_entry, raw, 8); st != Status::Ok)
            return st;
        const uint64_t e = load_be64(raw), data = e & BME_TABLE_ENTRY_OFFSET_MASK;
        if (!qcow2_bitmap_table_entry_ok(e, in_file)) {
            why->add("Bitmap table entry invalid (offset ").hex(at_entry).add(")");
            return Status::Corrupt;
        }
        if (data == 0 && (e & BME_TABLE_ENTRY_FLAG_ALL_ONES) == 0) {
            // A new data cluster: zeros with these bits, counted and written, then named.
            __builtin_memset(buf_, 0, static_cast<size_t>(cs_));
            qcow2_bitmap_set_bits(buf_, in, end);
            uint64_t host = 0;
            if (const Status st = clusters.append(buf_, &host); st != Status::Ok)
                return st;
            store_be64(raw, host);
            if (const Status st = dev_->write(at_entry, raw, 8); st != Status::Ok)
                return st;
        } else if (data != 0) {
            const uint64_t b0 = in / 8, nbytes = end / 8 - b0 + 1;
            if (const Status st = dev_->read(data + b0, buf_, static_cast<size_t>(nbytes)); st != Status::Ok)
                return st;
            bool changed = false;
            for (uint64_t bit = in; bit <= end && !changed; ++bit)
                changed = (buf_[bit / 8 - b0] & (1u << (bit % 8))) == 0;
            if (changed) {
                qcow2_bitmap_set_bits(buf_, in - b0 * 8, end - b0 * 8); // bits from byte b0 on
                if (const Status st = dev_->write(data + b0, buf_, static_cast<size_t>(nbytes)); st != Status::Ok)
                    return st;
            }
        } // else all ones: nothing to set
        first += end - in + 1;
    }
    return Status::Ok;
}

} // namespace instar::qcow2
