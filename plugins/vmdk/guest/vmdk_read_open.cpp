// The reader's open sequence: qemu's vmdk_open (descriptor, extents, sparse headers), built on the
// same parsers `info` uses, so the reader accepts what info accepts and fails where qemu fails.
#include "vmdk_read.h"

#include "vmdk_bytes.h"
#include "vmdk_descriptor.h"
#include "vmdk_sparse_header.h"

namespace instar::vmdk {

using guest::Status;

namespace {

size_t cstrlen(const char* s) {
    size_t n = 0;
    while (s[n])
        ++n;
    return n;
}

bool same(const char* a, size_t n, const char* b) {
    if (n != cstrlen(b))
        return false;
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i])
            return false;
    return true;
}

bool supported_create_type(const char* s, size_t n) {
    static constexpr const char* types[] = {"monolithicFlat",       "vmfs",
                                            "vmfsSparse",           "seSparse",
                                            "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"};
    for (const char* t : types)
        if (same(s, n, t))
            return true;
    return false;
}

// qemu's message for a sparse extent vmdk_sparse_open refused (vmdk_sparse_refusal).
Status refuse_sparse(guest::BlockDevice& dev, Status st, const Vmdk4Header& h, guest::ReasonSink* rs) {
    char why[VMDK_REASON_MAX];
    const Status out = vmdk_sparse_refusal(dev, st, h, why);
    say(rs, why);
    return out;
}

// A COWD or seSparse extent's reading parameters (qemu's vmdk_open_vmfs_sparse / _se_sparse).
Status open_alt(guest::BlockDevice& dev, ReadExtent* e, bool se, guest::ReasonSink* rs) {
    VmdkAltExtent x{};
    char why[VMDK_REASON_MAX];
    const Status st = se ? vmdk_sesparse_open(dev, &x, why) : vmdk_cowd_open(dev, &x, why);
    if (st != Status::Ok) {
        say(rs, why);
        return st;
    }
    e->bytes = x.sectors * 512;
    e->flat = false;
    e->gtes = x.gtes;
    e->grain_bytes = x.grain_sectors * 512;
    e->l1_size = x.l1_size;
    e->gd_offset = x.gd_offset;
    e->sesparse = x.sesparse;
    e->se_gt_offset = x.se_gt_offset;
    e->se_grains_offset = x.se_grains_offset;
    // qemu reads zeros past EOF; instar refuses a directory the file does not hold.
    const uint64_t gd_bytes = uint64_t{e->l1_size} * (se ? 8 : 4);
    if (e->gd_offset > dev.size() || gd_bytes > dev.size() - e->gd_offset) {
        say(rs, "Grain directory lies past the end of the file");
        return Status::Corrupt;
    }
    return Status::Ok;
}

// A sparse extent's reading parameters from its (footer-resolved) header.
Status open_sparse(guest::BlockDevice& dev, ReadExtent* e, guest::ReasonSink* rs) {
    uint8_t m[4] = {};
    if (dev.size() >= 4 && dev.read(0, m, 4) == Status::Ok && load_be32(m) == VMDK3_MAGIC)
        return open_alt(dev, e, false, rs);
    VmdkSparseExtent x{};
    Vmdk4Header h{};
    bool embedded = false;
    const Status st = vmdk_sparse_open(dev, &x, &h, &embedded);
    if (st != Status::Ok)
        return refuse_sparse(dev, st, h, rs);
    if (embedded) {
        say(rs, "A sparse extent holding a descriptor is not supported");
        return Status::Unsupported;
    }
    const uint32_t l1_entry_sectors = static_cast<uint32_t>(h.num_gtes_per_gt * h.granularity);
    e->bytes = x.sectors * 512;
    e->flat = false;
    e->compressed = x.compressed;
    e->marker = (h.flags & VMDK4_FLAG_MARKER) != 0;
    e->zero_grain = (h.flags & VMDK4_FLAG_ZERO_GRAIN) != 0;
    e->gtes = h.num_gtes_per_gt;
    e->grain_bytes = h.granularity * 512;
    // qemu keeps l1_size in 32 bits; an index past a truncated size fails when it is used.
    e->l1_size = static_cast<uint32_t>(h.capacity / l1_entry_sectors + (h.capacity % l1_entry_sectors != 0));
    if (h.gd_offset > (~uint64_t{0} >> 9)) {
        say(rs, "Grain directory offset is invalid");
        return Status::Corrupt;
    }
    e->gd_offset = h.gd_offset * 512;
    // qemu reads zeros past EOF; instar refuses a directory the file does not hold.
    const uint64_t gd_bytes = uint64_t{e->l1_size} * 4;
    if (e->gd_offset > dev.size() || gd_bytes > dev.size() - e->gd_offset) {
        say(rs, "Grain directory lies past the end of the file");
        return Status::Corrupt;
    }
    if (e->compressed && e->grain_bytes > VMDK_READ_MAX_COMPRESSED_GRAIN) {
        say(rs, "Compressed grains larger than 2 MiB are not supported");
        return Status::TooLarge;
    }
    return Status::Ok;
}

struct Collect {
    ReadExtent* extents;
    uint32_t count;
    uint32_t capacity; // the files the host gave (a descriptor names exactly those), at least 1
};

Status collect(void* ctx, const ExtentLine& line) {
    auto* c = static_cast<Collect*>(ctx);
    if (c->count == c->capacity) // more extents than files: refused below as a mismatch
        return c->capacity == VMDK_MAX_EXTENTS ? Status::TooLarge : Status::Invalid;
    ReadExtent& e = c->extents[c->count++];
    e = ReadExtent{};
    e.flat = line.type == ExtentType::Flat || line.type == ExtentType::Vmfs;
    e.sesparse = line.type == ExtentType::SeSparse; // opened as such below
    if (e.flat) {
        if (static_cast<uint64_t>(line.sectors) > VMDK_MAX_EXTENT_SECTORS)
            return Status::TooLarge;
        if (static_cast<uint64_t>(line.flat_offset) > VMDK_READ_MAX_FLAT_OFFSET_SECTORS)
            return Status::TooLarge;
        e.bytes = static_cast<uint64_t>(line.sectors) * 512;
        e.flat_offset = static_cast<uint64_t>(line.flat_offset) * 512;
    }
    return Status::Ok;
}

// The descriptor (a text file, or text a capacity-0 KDMV header points at): its extents.
Status open_descriptor(const guest::OpenRequest& req, uint64_t desc_offset, Collect* c) {
    guest::BlockDevice& dev = *req.image;
    guest::ReasonSink* rs = req.reasons;
    const size_t cap = dev.size() < VMDK_DESC_MAX ? static_cast<size_t>(dev.size()) : VMDK_DESC_MAX;
    Buffer text_buf(*req.allocator, cap + 1);
    if (!text_buf.p)
        return Status::NoMemory;
    Status st = read_zero_filled(dev, desc_offset, text_buf.p, cap);
    if (st != Status::Ok)
        return st;
    text_buf.p[cap] = 0;
    const Text text = text_of(text_buf.p, cap);
    const char* ct = nullptr;
    size_t ct_len = 0;
    if (!descriptor_value(text, "createType", VMDK_CREATE_TYPE_MAX + 1, &ct, &ct_len)) {
        say(rs, "invalid VMDK image descriptor");
        return Status::Corrupt;
    }
    if (!supported_create_type(ct, ct_len)) {
        char why[sizeof "Unsupported image type ''" + VMDK_CREATE_TYPE_MAX];
        size_t n = 0;
        for (const char* q = "Unsupported image type '"; *q; ++q)
            why[n++] = *q;
        for (size_t i = 0; i < ct_len; ++i)
            why[n++] = ct[i];
        why[n++] = '\'';
        if (rs != nullptr)
            rs->reason(why, n);
        return Status::Unsupported;
    }
    st = descriptor_extents(text, &collect, c);
    if (st == Status::TooLarge)
        say(rs, "Too many extents or an extent too large");
    else if (st == Status::Invalid && c->count == c->capacity)
        say(rs, "The extent files given do not match the descriptor");
    else if (st != Status::Ok)
        say(rs, "Invalid extent line");
    if (st != Status::Ok)
        return st;
    if (c->count == 0) {
        say(rs, "The descriptor names no extent");
        return Status::Corrupt;
    }
    if (req.file_count != c->count || req.files == nullptr) {
        say(rs, "The extent files given do not match the descriptor");
        return Status::Invalid;
    }
    for (uint32_t i = 0; i < c->count; ++i) {
        ReadExtent& e = c->extents[i];
        if (req.files[i] == nullptr)
            return Status::Invalid;
        e.dev = req.files[i];
        e.device = 1 + i;
        if (e.sesparse)
            st = open_alt(*e.dev, &e, true, rs);
        else if (!e.flat)
            st = open_sparse(*e.dev, &e, rs);
        if (st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

// qemu's vmdk_parent_open and vmdk_read_cid: the open fails when these cannot be read.
// Keeps the CIDs for the chain's parentCID check (vmdk_read.h).
Status check_window(const guest::OpenRequest& req, uint64_t window_offset, ReadLayout* layout) {
    Buffer w(*req.allocator, VMDK_DESC_WINDOW);
    if (!w.p)
        return Status::NoMemory;
    if (const Status st = read_zero_filled(*req.image, window_offset, w.p, VMDK_DESC_WINDOW); st != Status::Ok)
        return st;
    w.p[VMDK_DESC_WINDOW - 1] = 0;
    const Text window = text_of(w.p, VMDK_DESC_WINDOW);
    const char* hint = nullptr;
    size_t hint_len = 0;
    // qemu fails these with a bare -EINVAL, which bdrv_open_driver words as below.
    if (descriptor_parent_hint(window, &hint, &hint_len) != Status::Ok) {
        say(req.reasons, "Could not open '{image}': Invalid argument");
        return Status::Corrupt;
    }
    if (!descriptor_cid(window, false, &layout->cid) || !descriptor_cid(window, true, &layout->parent_cid)) {
        say(req.reasons, "Could not open '{image}': Invalid argument");
        return Status::Corrupt;
    }
    return Status::Ok;
}

} // namespace

void say(guest::ReasonSink* sink, const char* text, const char* tail, uint64_t number, bool with_number) {
    if (sink == nullptr)
        return;
    char buf[160];
    size_t n = 0;
    for (const char* p = text; *p && n < sizeof buf - 24; ++p)
        buf[n++] = *p;
    if (with_number) {
        char digits[20];
        size_t k = 0;
        do {
            digits[k++] = static_cast<char>('0' + number % 10);
            number /= 10;
        } while (number != 0);
        while (k > 0)
            buf[n++] = digits[--k];
    }
    for (const char* p = tail; p && *p && n < sizeof buf; ++p)
        buf[n++] = *p;
    sink->reason(buf, n);
}

void free_layout(guest::Allocator& alloc, ReadLayout* layout) {
    if (layout->extents != nullptr)
        alloc.deallocate(layout->extents, sizeof(ReadExtent) * layout->capacity);
    layout->extents = nullptr;
    layout->count = 0;
    layout->capacity = 0;
}

Status open_layout(const guest::OpenRequest& req, ReadLayout* layout) {
    *layout = ReadLayout{};
    guest::BlockDevice& dev = *req.image;
    if (dev.size() < 4) {
        say(req.reasons, "File is too small, not a valid image");
        return Status::Corrupt;
    }
    uint8_t m[4];
    Status st = dev.read(0, m, 4);
    if (st != Status::Ok)
        return st;
    const uint32_t magic = load_be32(m);
    // One entry per file the host gave (a descriptor must name exactly those), so memory follows the
    // image, not VMDK_MAX_EXTENTS.
    const uint32_t capacity =
        req.file_count == 0 ? 1 : (req.file_count < VMDK_MAX_EXTENTS ? req.file_count : VMDK_MAX_EXTENTS);
    auto* extents =
        static_cast<ReadExtent*>(req.allocator->allocate(sizeof(ReadExtent) * capacity, alignof(ReadExtent)));
    if (extents == nullptr)
        return Status::NoMemory;
    layout->extents = extents;
    layout->capacity = capacity;
    Collect c{extents, 0, capacity};
    uint64_t window_offset = 0;
    if (magic == VMDK4_MAGIC || magic == VMDK3_MAGIC) {
        window_offset = VMDK_EMBEDDED_DESC_OFFSET;
        VmdkSparseExtent x{};
        Vmdk4Header h{};
        bool embedded = false;
        st = magic == VMDK3_MAGIC ? Status::Ok : vmdk_sparse_open(dev, &x, &h, &embedded);
        if (st != Status::Ok) {
            st = refuse_sparse(dev, st, h, req.reasons);
        } else if (embedded) {
            if (h.desc_offset > (~uint64_t{0} >> 9)) {
                say(req.reasons, "Could not read from file");
                st = Status::Corrupt;
            } else {
                st = open_descriptor(req, h.desc_offset << 9, &c);
            }
        } else {
            extents[0] = ReadExtent{};
            extents[0].dev = &dev;
            extents[0].device = 0;
            c.count = 1;
            st = open_sparse(dev, &extents[0], req.reasons);
        }
    } else {
        st = open_descriptor(req, 0, &c);
    }
    if (st == Status::Ok)
        st = check_window(req, window_offset, layout);
    if (st != Status::Ok) {
        free_layout(*req.allocator, layout);
        return st;
    }
    layout->count = c.count;
    uint64_t start = 0;
    for (uint32_t i = 0; i < c.count; ++i) {
        ReadExtent& e = extents[i];
        e.start = start;
        start += e.bytes; // <= 32768 extents of <= 64 TiB each: no overflow
        if (e.compressed && e.grain_bytes > layout->max_compressed_grain)
            layout->max_compressed_grain = e.grain_bytes;
        const uint64_t gt_bytes = e.flat ? 0 : uint64_t{e.gtes} * (e.sesparse ? 8 : 4);
        if (gt_bytes > layout->max_gt_bytes)
            layout->max_gt_bytes = gt_bytes;
    }
    layout->virtual_size = start;
    return Status::Ok;
}

} // namespace instar::vmdk
