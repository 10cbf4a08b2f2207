// The VMDK format's guest half: qemu's vmdk_open sequence, reporting what `qemu-img info` prints.
#include "vmdk_format.h"

#include "vmdk_bytes.h"
#include "vmdk_descriptor.h"
#include "vmdk_sparse_header.h"

namespace instar::vmdk {

using guest::Status;

namespace {

constexpr size_t PROBE_BYTES = 2048; // qemu's BLOCK_PROBE_BUF_SIZE

// One extent as qemu's VmdkExtent sees it.
struct Extent {
    const char* file; // as written in the descriptor; nullptr for the image itself
    size_t file_len;
    const char* type_name; // nullptr when opened without a descriptor (qemu prints "")
    ExtentType type;
    uint64_t sectors;
    uint64_t cluster_sectors;
    bool flat;
    bool compressed;
};

struct State {
    Extent* extents;
    uint32_t count;
    const char* create_type;
    size_t create_type_len;
};

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

Status collect(void* ctx, const ExtentLine& line) {
    auto* s = static_cast<State*>(ctx);
    if (s->count == VMDK_MAX_EXTENTS)
        return Status::TooLarge;
    Extent& e = s->extents[s->count++];
    e = Extent{};
    e.file = line.file;
    e.file_len = line.file_len;
    e.type_name = line.type_name;
    e.type = line.type;
    e.sectors = static_cast<uint64_t>(line.sectors);
    e.flat = line.type == ExtentType::Flat || line.type == ExtentType::Vmfs;
    return Status::Ok;
}

// The createType values qemu opens as descriptor files.
bool supported_create_type(const char* s, size_t n) {
    static constexpr const char* types[] = {"monolithicFlat",       "vmfs",
                                            "vmfsSparse",           "seSparse",
                                            "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"};
    for (const char* t : types)
        if (same(s, n, t))
            return true;
    return false;
}

// Says why (qemu's words, or the instar limit and the value) and returns `st`.
Status refuse(guest::InfoSink& sink, Status st, const char* text, uint64_t number = 0, bool with_number = false,
              const char* tail = nullptr) {
    char why[VMDK_REASON_MAX] = {};
    vmdk_reason_append(why, text, number, with_number);
    if (tail != nullptr)
        vmdk_reason_append(why, tail);
    sink.reason(why, cstrlen(why));
    return st;
}

Status refuse_sparse(guest::InfoSink& sink, guest::BlockDevice& dev, Status st, const Vmdk4Header& h) {
    char why[VMDK_REASON_MAX];
    const Status out = vmdk_sparse_refusal(dev, st, h, why);
    sink.reason(why, cstrlen(why));
    return out;
}

// qemu's BDRV_MAX_LENGTH in sectors: beyond it qemu cannot size the image.
constexpr uint64_t QEMU_MAX_SECTORS = 9223372035781033984ull / 512;

// Fills in each extent from its file on the second pass (qemu opens every extent).
Status open_extents(const guest::InfoRequest& req, guest::InfoSink& sink, State& s) {
    for (uint32_t i = 0; i < s.count; ++i) {
        Extent& e = s.extents[i];
        if (e.flat) {
            if (e.sectors > QEMU_MAX_SECTORS)
                return refuse(sink, Status::TooLarge, "Could not refresh total sector count: File too large");
            if (e.sectors > VMDK_MAX_EXTENT_SECTORS) {
                char why[VMDK_REASON_MAX] = {};
                vmdk_reason_append(why, "Extent of ", e.sectors, true);
                vmdk_reason_append(why, " sectors exceeds instar's limit VMDK_MAX_EXTENT_SECTORS (",
                                   VMDK_MAX_EXTENT_SECTORS, true);
                return refuse(sink, Status::TooLarge, why, 0, false, ")");
            }
            e.cluster_sectors = e.sectors;
            continue;
        }
        if (req.files[i] == nullptr)
            return Status::Invalid;
        uint8_t m[4] = {};
        if (e.type == ExtentType::SeSparse ||
            (read_zero_filled(*req.files[i], 0, m, 4) == Status::Ok && load_be32(m) == VMDK3_MAGIC)) {
            // seSparse (qemu's vmdk_open_se_sparse) or COWD (vmdk_open_sparse on a VMDK3 magic).
            VmdkAltExtent x{};
            char why[VMDK_REASON_MAX];
            const Status st = e.type == ExtentType::SeSparse ? vmdk_sesparse_open(*req.files[i], &x, why)
                                                             : vmdk_cowd_open(*req.files[i], &x, why);
            if (st != Status::Ok) {
                sink.reason(why, cstrlen(why));
                return st;
            }
            e.sectors = x.sectors;
            e.cluster_sectors = x.grain_sectors;
            continue;
        }
        VmdkSparseExtent x;
        Vmdk4Header h;
        bool embedded = false;
        const Status st = vmdk_sparse_open(*req.files[i], &x, &h, &embedded);
        if (st != Status::Ok)
            return refuse_sparse(sink, *req.files[i], st, h);
        if (embedded) // a descriptor inside an extent: qemu recurses, instar does not
            return refuse(sink, Status::Unsupported, "A sparse extent holding a descriptor is not supported");
        e.sectors = x.sectors;
        e.cluster_sectors = x.cluster_sectors;
        e.compressed = x.compressed;
        if (e.compressed) {
            s.create_type = "streamOptimized";
            s.create_type_len = cstrlen(s.create_type);
        }
    }
    return Status::Ok;
}

void report(guest::InfoSink& sink, const State& s, uint32_t cid, uint32_t parent_cid, const char* hint,
            size_t hint_len) {
    for (uint32_t i = 0; i < s.count; ++i)
        if (s.extents[i].file)
            sink.file_reference(guest::FileRole::Extent, s.extents[i].file, s.extents[i].file_len);
    if (hint_len != 0) {
        sink.file_reference(guest::FileRole::Backing, hint, hint_len);
        sink.backing_format("vmdk", 4);
    }
    uint64_t sectors = 0;
    for (uint32_t i = 0; i < s.count; ++i)
        sectors += s.extents[i].sectors;
    sink.format("vmdk");
    sink.virtual_size(sectors * 512);
    // qemu's vmdk_get_info fails (no cluster size, no dirty flag) unless all extents match the first.
    const Extent& first = s.extents[0];
    bool uniform = true;
    for (uint32_t i = 1; i < s.count; ++i) {
        const Extent& e = s.extents[i];
        uniform = uniform && e.flat == first.flat && e.compressed == first.compressed &&
                  (first.flat || e.cluster_sectors == first.cluster_sectors);
    }
    if (uniform) {
        if (!first.flat)
            sink.cluster_size(first.cluster_sectors * 512);
        sink.dirty(false);
    }
    sink.specific_type("vmdk");
    sink.put_string("create-type", s.create_type, s.create_type_len);
    sink.put_int("cid", cid);
    sink.put_int("parent-cid", parent_cid);
    sink.begin_list("extents");
    for (uint32_t i = 0; i < s.count; ++i) {
        const Extent& e = s.extents[i];
        sink.begin_object(nullptr);
        // The host replaces "filename" with qemu's path: see docs/formats/vmdk.md.
        sink.put_string("filename", e.file ? e.file : "", e.file ? e.file_len : 0);
        sink.put_string("format", e.type_name ? e.type_name : "", e.type_name ? cstrlen(e.type_name) : 0);
        sink.put_int("virtual-size", static_cast<int64_t>(e.sectors * 512));
        if (!e.flat)
            sink.put_int("cluster-size", static_cast<int64_t>(e.cluster_sectors * 512));
        if (e.compressed)
            sink.put_bool("compressed", true);
        sink.end_object();
    }
    sink.end_list();
}

} // namespace

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    uint8_t buf[PROBE_BYTES];
    const size_t n = dev.size() < PROBE_BYTES ? static_cast<size_t>(dev.size()) : PROBE_BYTES;
    if (n < 4 || dev.read(0, buf, n) != Status::Ok)
        return Status::Ok;
    const uint32_t magic = load_be32(buf);
    if (magic == VMDK3_MAGIC || magic == VMDK4_MAGIC) {
        *match = true;
        return Status::Ok;
    }
    const char* p = reinterpret_cast<const char*>(buf);
    const char* end = p + n;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                ++p;
            ++p;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ')
                ++p;
            if (p < end && *p == '\r')
                ++p;
            if (p == end || *p != '\n')
                return Status::Ok;
            ++p;
            continue;
        }
        static constexpr const char* versions[] = {"version=1\n",   "version=2\n",   "version=3\n",
                                                   "version=1\r\n", "version=2\r\n", "version=3\r\n"};
        for (const char* v : versions) {
            const size_t k = cstrlen(v);
            if (static_cast<size_t>(end - p) >= k && same(p, k, v)) {
                *match = true;
                return Status::Ok;
            }
        }
        return Status::Ok;
    }
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    guest::BlockDevice& dev = *req.image;
    guest::Allocator& alloc = *req.allocator;
    if (dev.size() == 0)
        return refuse(sink, Status::Corrupt, "File is too small, not a valid image");
    uint8_t magic_bytes[4]; // a shorter file reads as zeros after its end, as in qemu
    Status st = read_zero_filled(dev, 0, magic_bytes, 4);
    if (st != Status::Ok)
        return st;
    const uint32_t magic = load_be32(magic_bytes);

    Buffer extents(alloc, sizeof(Extent) * VMDK_MAX_EXTENTS);
    if (!extents.p)
        return Status::NoMemory;
    State s{reinterpret_cast<Extent*>(extents.p), 0, nullptr, 0};
    uint64_t window_offset = 0;
    uint64_t desc_offset = 0; // where descriptor text starts; used when `descriptor` is true
    bool descriptor = true;
    if (magic == VMDK4_MAGIC || magic == VMDK3_MAGIC) {
        window_offset = VMDK_EMBEDDED_DESC_OFFSET;
        VmdkSparseExtent x;
        Vmdk4Header h;
        bool embedded = false;
        if (magic == VMDK3_MAGIC) {
            // A COWD file opened on its own: qemu leaves the create type and the extent's format empty.
            VmdkAltExtent a{};
            char why[VMDK_REASON_MAX];
            if ((st = vmdk_cowd_open(dev, &a, why)) != Status::Ok) {
                sink.reason(why, cstrlen(why));
                return st;
            }
            descriptor = false;
            s.extents[0] = Extent{nullptr, 0, nullptr, ExtentType::VmfsSparse, a.sectors, a.grain_sectors, false,
                                  false};
            s.count = 1;
            s.create_type = "";
            s.create_type_len = 0;
        } else if ((st = vmdk_sparse_open(dev, &x, &h, &embedded)) != Status::Ok) {
            return refuse_sparse(sink, dev, st, h);
        } else if (embedded) {
            if (h.desc_offset > (~uint64_t{0} >> 9))
                return Status::Corrupt;
            desc_offset = h.desc_offset << 9;
        } else {
            descriptor = false;
            s.extents[0] = Extent{nullptr, 0, nullptr, ExtentType::Sparse, x.sectors, x.cluster_sectors, false,
                                  x.compressed};
            s.count = 1;
            s.create_type = x.compressed ? "streamOptimized" : "monolithicSparse";
            s.create_type_len = cstrlen(s.create_type);
        }
    }

    // The descriptor text must outlive the extents, which point into it.
    const size_t text_cap = dev.size() < VMDK_DESC_MAX ? static_cast<size_t>(dev.size()) : VMDK_DESC_MAX;
    Buffer text_buf(alloc, descriptor ? text_cap + 1 : 1);
    if (!text_buf.p)
        return Status::NoMemory;
    if (descriptor) {
        if ((st = read_zero_filled(dev, desc_offset, text_buf.p, text_cap)) != Status::Ok)
            return st;
        text_buf.p[text_cap] = 0;
        const Text text = text_of(text_buf.p, text_cap);
        if (!descriptor_value(text, "createType", VMDK_CREATE_TYPE_MAX + 1, &s.create_type, &s.create_type_len))
            return refuse(sink, Status::Corrupt, "invalid VMDK image descriptor");
        if (!supported_create_type(s.create_type, s.create_type_len)) {
            // qemu's words (e.g. a 0-byte monolithicSparse, whose header points at its descriptor).
            static constexpr char PREFIX[] = "Unsupported image type '";
            char why[sizeof PREFIX + VMDK_CREATE_TYPE_MAX + 2];
            size_t n = 0;
            for (; PREFIX[n] != 0; ++n)
                why[n] = PREFIX[n];
            for (size_t i = 0; i < s.create_type_len && i < VMDK_CREATE_TYPE_MAX; ++i)
                why[n++] = s.create_type[i];
            why[n++] = '\'';
            sink.reason(why, n);
            return Status::Unsupported;
        }
        Text bad{nullptr, 0};
        if ((st = descriptor_extents(text, &collect, &s, &bad)) != Status::Ok) {
            if (st == Status::TooLarge)
                return refuse(sink, st, "The descriptor names more extents than instar's limit VMDK_MAX_EXTENTS (",
                              VMDK_MAX_EXTENTS, true, ")");
            if (st == Status::Corrupt && bad.s != nullptr) {
                // qemu quotes the whole line (the host shows the first 400 characters of a reason).
                static constexpr char PREFIX[] = "Invalid extent line: ";
                const size_t cap = guest::INFO_MAX_STRING;
                Buffer why(alloc, cap);
                if (!why.p)
                    return Status::NoMemory;
                size_t n = 0;
                for (; PREFIX[n] != 0; ++n)
                    why.p[n] = static_cast<uint8_t>(PREFIX[n]);
                for (size_t i = 0; i < bad.len && n < cap; ++i)
                    why.p[n++] = static_cast<uint8_t>(bad.s[i]);
                sink.reason(reinterpret_cast<const char*>(why.p), n);
            }
            return st;
        }
        if (s.count == 0) // qemu asserts (it aborts) when asked for info on it
            return refuse(sink, Status::Corrupt, "The descriptor names no extent");
        if (req.file_count == 0) {
            sink.format("vmdk");
            for (uint32_t i = 0; i < s.count; ++i)
                sink.file_reference(guest::FileRole::Extent, s.extents[i].file, s.extents[i].file_len);
            return Status::NeedFiles;
        }
        if (req.file_count != s.count || req.files == nullptr)
            return Status::Invalid;
        if ((st = open_extents(req, sink, s)) != Status::Ok)
            return st;
    }

    Buffer window_buf(alloc, VMDK_DESC_WINDOW);
    if (!window_buf.p)
        return Status::NoMemory;
    if ((st = read_zero_filled(dev, window_offset, window_buf.p, VMDK_DESC_WINDOW)) != Status::Ok)
        return st;
    window_buf.p[VMDK_DESC_WINDOW - 1] = 0;
    const Text window = text_of(window_buf.p, VMDK_DESC_WINDOW);
    const char* hint = nullptr;
    size_t hint_len = 0;
    // qemu fails these with a bare -EINVAL, which bdrv_open_driver words as below.
    static constexpr char EINVAL_OPEN[] = "Could not open '{image}': Invalid argument";
    if ((st = descriptor_parent_hint(window, &hint, &hint_len)) != Status::Ok) {
        if (st == Status::Corrupt)
            sink.reason(EINVAL_OPEN, sizeof EINVAL_OPEN - 1);
        return st;
    }
    uint32_t cid = 0, parent_cid = 0;
    if (!descriptor_cid(window, false, &cid) || !descriptor_cid(window, true, &parent_cid)) {
        sink.reason(EINVAL_OPEN, sizeof EINVAL_OPEN - 1); // qemu fails the open when a CID is missing
        return Status::Corrupt;
    }
    report(sink, s, cid, parent_cid, hint, hint_len);
    return Status::Ok;
}

} // namespace instar::vmdk
