// L1/L2 lookup for the qcow2 reader (qcow2_read_map.h), after qemu's qcow2_get_host_offset.
#include "qcow2_read_map.h"

#include "qcow2_bytes.h"
#include "qcow2_reader.h"

namespace instar::qcow2 {

bool qcow2_region_in_file(uint64_t file_size, uint64_t offset, uint64_t len, uint64_t cluster_size) {
    uint64_t end = 0;
    if (add_overflow(offset, len, &end))
        return false;
    return end <= file_size || end - file_size < cluster_size;
}

Qcow2Map::~Qcow2Map() {
    if (l1_window_ != nullptr)
        alloc_.deallocate(l1_window_, QCOW2_L1_WINDOW_ENTRIES * sizeof(uint64_t));
    if (slices_ != nullptr)
        alloc_.deallocate(slices_, slice_bytes_ * QCOW2_L2_CACHE_SLICES);
}

Status Qcow2Map::init() {
    const uint64_t table = uint64_t{g_.l2_entry_bytes} << g_.l2_bits; // one L2 table: a cluster
    slice_bytes_ = table < QCOW2_L2_SLICE_BYTES ? static_cast<size_t>(table) : QCOW2_L2_SLICE_BYTES;
    table_slices_ = table / slice_bytes_;
    l1_window_ = static_cast<uint64_t*>(alloc_.allocate(QCOW2_L1_WINDOW_ENTRIES * sizeof(uint64_t), 16));
    slices_ = static_cast<uint8_t*>(alloc_.allocate(slice_bytes_ * QCOW2_L2_CACHE_SLICES, 16));
    if (l1_window_ == nullptr || slices_ == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < QCOW2_L2_CACHE_SLICES; ++i)
        slots_[i].data = slices_ + i * slice_bytes_;
    return Status::Ok;
}

Status Qcow2Map::corrupt(ReasonText& r, bool report) {
    if (report)
        r.send(reasons_);
    return Status::Corrupt;
}

Status Qcow2Map::l1_entry(uint64_t index, uint64_t* out) {
    if (index >= l1_window_start_ && index - l1_window_start_ < l1_window_count_) {
        *out = l1_window_[index - l1_window_start_];
        return Status::Ok;
    }
    const uint64_t left = g_.l1_size - index; // index < l1_size (caller)
    const uint32_t count = left < QCOW2_L1_WINDOW_ENTRIES ? static_cast<uint32_t>(left) : QCOW2_L1_WINDOW_ENTRIES;
    l1_window_count_ = 0;
    // SAFETY: the window holds QCOW2_L1_WINDOW_ENTRIES uint64_t; bytes are converted in place below.
    auto* bytes = reinterpret_cast<uint8_t*>(l1_window_);
    // The table was checked against the file at open; its tail past the end reads as zeros.
    const Status st = read_zero_padded(image_, g_.l1_offset + index * 8, bytes, count * size_t{8});
    if (st != Status::Ok)
        return st;
    for (uint32_t i = 0; i < count; ++i)
        l1_window_[i] = load_be64(bytes + i * 8);
    l1_window_start_ = index;
    l1_window_count_ = count;
    *out = l1_window_[0];
    return Status::Ok;
}

Status Qcow2Map::l2_slice(uint64_t table, uint64_t index, const uint8_t** out) {
    for (Slot& s : slots_) {
        if (s.used != 0 && s.table == table && s.index == index) {
            s.used = ++clock_;
            *out = s.data;
            return Status::Ok;
        }
    }
    // A miss: the least recently used group of slots (by its most recent slot) takes this slice and
    // the ones after it in the table, read at once (their slots are adjacent in slices_).
    uint32_t group = 0;
    uint64_t oldest = UINT64_MAX;
    for (uint32_t g = 0; g < QCOW2_L2_CACHE_SLICES; g += QCOW2_L2_READ_SLICES) {
        uint64_t recent = 0;
        for (uint32_t k = 0; k < QCOW2_L2_READ_SLICES; ++k)
            recent = slots_[g + k].used > recent ? slots_[g + k].used : recent;
        if (recent < oldest) {
            oldest = recent;
            group = g;
        }
    }
    const uint64_t left = index < table_slices_ ? table_slices_ - index : 1;
    const uint32_t count = left < QCOW2_L2_READ_SLICES ? static_cast<uint32_t>(left) : QCOW2_L2_READ_SLICES;
    for (uint32_t k = 0; k < QCOW2_L2_READ_SLICES; ++k)
        slots_[group + k].used = 0;
    const Status st = read_zero_padded(image_, table + index * slice_bytes_, slots_[group].data, count * slice_bytes_);
    if (st != Status::Ok)
        return st;
    for (uint32_t k = 0; k < count; ++k) {
        Slot& s = slots_[group + k];
        s.table = table;
        s.index = index + k;
        s.used = ++clock_;
    }
    // The slice asked for is the most recent of its group.
    slots_[group].used = ++clock_;
    *out = slots_[group].data;
    return Status::Ok;
}

Status Qcow2Map::classify(const uint8_t* p, uint32_t sc, uint64_t guest, uint64_t l2_offset, uint64_t l2_index,
                          ClusterKind* kind, uint64_t* host_cluster, bool report) {
    const uint64_t entry = load_be64(p);
    const uint64_t bitmap = g_.extl2 ? load_be64(p + 8) : 0;
    ReasonText r;
    // qemu's qcow2_get_cluster_type, then qcow2_get_subcluster_type.
    ClusterKind k;
    if (entry & QCOW_OFLAG_COMPRESSED) {
        k = ClusterKind::Compressed;
    } else if ((entry & QCOW_OFLAG_ZERO) && !g_.extl2) {
        k = (entry & L2E_OFFSET_MASK) ? ClusterKind::ZeroAlloc : ClusterKind::Zero;
    } else if (!(entry & L2E_OFFSET_MASK)) {
        // Offset 0 is a valid data file offset: there, the copied flag says the cluster is allocated.
        k = g_.data_file && (entry & QCOW_OFLAG_COPIED) ? ClusterKind::Normal : ClusterKind::Unallocated;
    } else {
        k = ClusterKind::Normal;
    }
    if (g_.extl2 && k != ClusterKind::Compressed) {
        const uint64_t alloc = bitmap & 0xffffffffu;
        const uint64_t zero = bitmap >> 32;
        const bool invalid = k == ClusterKind::Normal ? (alloc & zero) != 0 : alloc != 0;
        if (invalid) {
            r.add("Invalid cluster entry found  (L2 offset: ").hex(l2_offset).add(", L2 index: ").hex(l2_index).add(")");
            return corrupt(r, report);
        }
        if (k == ClusterKind::Normal)
            k = (zero >> sc) & 1 ? ClusterKind::ZeroAlloc
                : (alloc >> sc) & 1 ? ClusterKind::Normal : ClusterKind::UnallocatedAlloc;
        else
            k = (zero >> sc) & 1 ? ClusterKind::Zero : ClusterKind::Unallocated;
    }
    if (g_.version < 3 && (k == ClusterKind::Zero || k == ClusterKind::ZeroAlloc)) {
        r.add("Zero cluster entry found in pre-v3 image (L2 offset: ").hex(l2_offset).add(", L2 index: ").hex(l2_index).add(")");
        return corrupt(r, report);
    }
    *host_cluster = 0;
    if (k == ClusterKind::Compressed) {
        if (g_.data_file) {
            r.add("Compressed cluster entry found in image with external data file (L2 offset: ")
                .hex(l2_offset).add(", L2 index: ").hex(l2_index).add(")");
            return corrupt(r, report);
        }
        *host_cluster = entry & L2E_COMPRESSED_OFFSET_SIZE_MASK;
    } else if (k == ClusterKind::Normal || k == ClusterKind::ZeroAlloc || k == ClusterKind::UnallocatedAlloc) {
        const uint64_t host = entry & L2E_OFFSET_MASK;
        if (host & (g_.cluster_size() - 1)) {
            r.add("Cluster allocation offset ").hex(host).add(" unaligned (L2 offset: ").hex(l2_offset)
                .add(", L2 index: ").hex(l2_index).add(")");
            return corrupt(r, report);
        }
        if (g_.data_file && host != guest) {
            r.add("External data file host cluster offset ").hex(host).add(" does not match guest cluster offset: ")
                .hex(guest).add(", L2 index: ").hex(l2_index).add(")");
            return corrupt(r, report);
        }
        if (k == ClusterKind::Normal && !qcow2_region_in_file(data_.size(), host, g_.cluster_size(), g_.cluster_size())) {
            r.add("Data cluster offset ").hex(host).add(" is past the end of the ")
                .add(g_.data_file ? "data file" : "image file").add(" (L2 offset: ").hex(l2_offset)
                .add(", L2 index: ").hex(l2_index).add(")");
            return corrupt(r, report);
        }
        *host_cluster = host;
    }
    *kind = k;
    return Status::Ok;
}

Status Qcow2Map::lookup(uint64_t offset, uint64_t max_len, Mapping* out) {
    const uint32_t cb = g_.cluster_bits;
    const uint64_t cs = g_.cluster_size();
    const uint32_t span_bits = cb + g_.l2_bits; // guest bytes one L1 entry maps (<= 2^39)
    const uint64_t l1_index = offset >> span_bits;
    *out = Mapping{};
    if (l1_index >= g_.l1_size) {
        out->length = max_len; // beyond the L1 table (a snapshot's smaller one): nothing allocated
        return Status::Ok;
    }
    uint64_t l1e = 0;
    if (const Status st = l1_entry(l1_index, &l1e); st != Status::Ok)
        return st;
    const uint64_t l2_offset = l1e & L1E_OFFSET_MASK;
    if (l2_offset == 0) {
        // Unallocated through the following empty L1 entries of the window already read.
        uint64_t end_index = l1_index + 1;
        uint64_t next = 0;
        while (end_index < g_.l1_size && end_index - l1_window_start_ < l1_window_count_ &&
               ((end_index << span_bits) - offset) < max_len && l1_entry(end_index, &next) == Status::Ok &&
               (next & L1E_OFFSET_MASK) == 0)
            ++end_index;
        const uint64_t run = (end_index << span_bits) - offset;
        out->length = run < max_len ? run : max_len;
        return Status::Ok;
    }
    ReasonText r;
    if (l2_offset & (cs - 1)) {
        r.add("L2 table offset ").hex(l2_offset).add(" unaligned (L1 index: ").hex(l1_index).add(")");
        return corrupt(r, true);
    }
    if (!qcow2_region_in_file(image_.size(), l2_offset, cs, cs)) {
        r.add("L2 table offset ").hex(l2_offset).add(" is past the end of the image file (L1 index: ").hex(l1_index).add(")");
        return corrupt(r, true);
    }
    const uint64_t per_slice = slice_bytes_ / g_.l2_entry_bytes;
    const uint64_t l2_index = (offset >> cb) & ((uint64_t{1} << g_.l2_bits) - 1);
    const uint64_t slice = l2_index / per_slice;
    const uint8_t* data = nullptr;
    if (const Status st = l2_slice(l2_offset, slice, &data); st != Status::Ok)
        return st;

    const uint32_t sc_bits = g_.subcluster_bits;
    const uint64_t sc_size = uint64_t{1} << sc_bits;
    // The run may not leave this slice.
    const uint64_t slice_end = (((offset >> cb) - l2_index % per_slice) + per_slice) << cb;
    const uint64_t limit = slice_end - offset < max_len ? slice_end - offset : max_len;

    uint64_t idx = l2_index % per_slice;
    uint32_t sc = static_cast<uint32_t>((offset & (cs - 1)) >> sc_bits);
    uint64_t host_cluster = 0;
    ClusterKind kind;
    if (const Status st = classify(data + idx * g_.l2_entry_bytes, sc, offset & ~(cs - 1), l2_offset, l2_index, &kind,
                                   &host_cluster, true);
        st != Status::Ok)
        return st;
    out->kind = kind;
    const bool mapped = kind == ClusterKind::Normal || kind == ClusterKind::ZeroAlloc || kind == ClusterKind::UnallocatedAlloc;
    out->host = kind == ClusterKind::Compressed ? host_cluster : mapped ? host_cluster + (offset & (cs - 1)) : 0;
    // The first subcluster's end, then whole subclusters while they continue the run.
    uint64_t pos = (offset | (sc_size - 1)) + 1;
    if (kind != ClusterKind::Compressed) { // compressed clusters come one at a time, as in qemu
        while (pos - offset < limit) {
            if ((pos & (cs - 1)) == 0) {
                ++idx;
                sc = 0;
            } else {
                ++sc;
            }
            const uint64_t guest = pos & ~(cs - 1);
            ClusterKind k;
            uint64_t h = 0;
            if (classify(data + idx * g_.l2_entry_bytes, sc, guest, l2_offset, l2_index + (idx - l2_index % per_slice),
                         &k, &h, false) != Status::Ok || k != kind)
                break; // a bad entry ends the run; it is reported when a lookup starts there
            if (mapped && h + (pos & (cs - 1)) != out->host + (pos - offset))
                break;
            pos += sc_size;
        }
    } else {
        pos = (offset | (cs - 1)) + 1;
    }
    out->length = pos - offset < limit ? pos - offset : limit;
    return Status::Ok;
}

} // namespace instar::qcow2
