// The DMG format's guest half: qemu's dmg_open (block/dmg.c), probe and info.
#include "dmg_format.h"

namespace instar::dmg {

using guest::Allocator;
using guest::BlockDevice;
using guest::Status;

namespace {

uint32_t be32(const uint8_t* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
uint64_t be64(const uint8_t* p) { return uint64_t{be32(p)} << 32 | be32(p + 4); }

// dmg_open's failures without a message of their own: bdrv_open_driver's "Could not open '%s'" with
// the errno, under qemu-img's own "Could not open '%s': ".
constexpr const char* EINVAL_REASON = "Could not open '{image}': Invalid argument";
constexpr const char* EIO_REASON = "Could not open '{image}': Input/output error";

struct Text {
    DmgWhy* why;
    size_t n = 0;
    void put(const char* s) {
        for (; *s != 0 && n + 1 < sizeof why->text; ++s)
            why->text[n++] = *s;
        why->text[n] = 0;
    }
    void put(uint64_t v) {
        char d[20];
        size_t k = 0;
        do {
            d[k++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        char s[21];
        for (size_t i = 0; i < k; ++i)
            s[i] = d[k - 1 - i];
        s[k] = 0;
        put(s);
    }
};

Status fail(DmgWhy* why, Status st, const char* text) {
    Text t{why};
    t.put(text);
    return st;
}

// The state dmg_read_mish_block carries across blocks (DmgHeaderState and the growing table).
struct Walk {
    DmgImage* img;
    DmgWhy* why;
    uint64_t data_fork_offset;
    DmgChunk* table; // nullptr: count and check only
    uint32_t n = 0;
    bool has_zlib = false;
};

struct MemorySource {
    const uint8_t* bytes;
    Status get(uint64_t off, uint8_t* buf, size_t len) const {
        __builtin_memcpy(buf, bytes + off, len);
        return Status::Ok;
    }
};

struct DeviceSource {
    BlockDevice& dev;
    uint64_t base;
    Status get(uint64_t off, uint8_t* buf, size_t len) const { return dmg_pread(dev, base + off, buf, len); }
};

bool kept_type(uint32_t t) { return t == UDZE || t == UDRW || t == UDIG || t == UDZO; }

Status entry(Walk& w, const uint8_t* e, uint64_t out_offset, uint64_t in_offset) {
    const uint32_t type = be32(e);
    // qemu keeps only the types it can read: bzip2 and lzfse chunks (no module in Debian's
    // qemu-img), comments, the terminator and unknown types are dropped, and reading their sectors
    // is an I/O error.
    if (!kept_type(type))
        return Status::Ok;
    if (w.n >= DMG_MAX_CHUNKS) {
        Text t{w.why};
        t.put("dmg image has more than ");
        t.put(uint64_t{DMG_MAX_CHUNKS});
        t.put(" chunks (instar's limit)");
        return Status::TooLarge;
    }
    DmgChunk c;
    c.type = type;
    c.sector = be64(e + 8) + out_offset;
    c.count = be64(e + 0x10);
    if (type != UDZE && type != UDIG && c.count > DMG_SECTORCOUNTS_MAX) {
        Text t{w.why};
        t.put("sector count ");
        t.put(c.count);
        t.put(" for chunk ");
        t.put(uint64_t{w.n});
        t.put(" is larger than max (");
        t.put(DMG_SECTORCOUNTS_MAX);
        t.put(")");
        return Status::Corrupt;
    }
    c.offset = be64(e + 0x18) + in_offset;
    const uint64_t length = be64(e + 0x20);
    if (length > DMG_LENGTHS_MAX) {
        Text t{w.why};
        t.put("length ");
        t.put(length);
        t.put(" for chunk ");
        t.put(uint64_t{w.n});
        t.put(" is larger than max (");
        t.put(DMG_LENGTHS_MAX);
        t.put(")");
        return Status::Corrupt;
    }
    c.length = static_cast<uint32_t>(length);
    // update_max_chunk_size
    DmgImage& img = *w.img;
    if (type == UDZO) {
        w.has_zlib = true;
        if (c.length > img.max_compressed_size)
            img.max_compressed_size = c.length;
        if (c.count > img.max_sectors_per_chunk)
            img.max_sectors_per_chunk = static_cast<uint32_t>(c.count);
    } else if (type == UDRW) {
        const uint32_t sectors = (c.length + 511) / 512;
        if (sectors > img.max_sectors_per_chunk)
            img.max_sectors_per_chunk = sectors;
    }
    if (w.table != nullptr)
        w.table[w.n] = c;
    ++w.n;
    return Status::Ok;
}

// dmg_read_mish_block over `count` bytes of `src`.
template <class Src>
Status mish_block(Walk& w, const Src& src, uint32_t count) {
    if (count < MISH_MIN_SIZE)
        return Status::Ok;
    uint8_t hdr[MISH_HEADER_SIZE];
    if (src.get(0, hdr, sizeof hdr) != Status::Ok)
        return fail(w.why, Status::IoError, EIO_REASON);
    if (be32(hdr) != MISH_MAGIC)
        return Status::Ok;
    const uint64_t out_offset = be64(hdr + 8);
    const uint64_t in_offset = w.data_fork_offset + be64(hdr + 0x18);
    const uint32_t chunk_count = (count - MISH_HEADER_SIZE) / MISH_ENTRY_SIZE;
    constexpr uint32_t BATCH = 64; // entries per read: 2560 bytes of stack
    uint8_t batch[BATCH * MISH_ENTRY_SIZE];
    for (uint32_t k = 0; k < chunk_count;) {
        const uint32_t m = chunk_count - k < BATCH ? chunk_count - k : BATCH;
        if (src.get(MISH_HEADER_SIZE + uint64_t{k} * MISH_ENTRY_SIZE, batch, size_t{m} * MISH_ENTRY_SIZE) !=
            Status::Ok)
            return fail(w.why, Status::IoError, EIO_REASON);
        for (uint32_t j = 0; j < m; ++j)
            if (const Status st = entry(w, batch + j * MISH_ENTRY_SIZE, out_offset, in_offset); st != Status::Ok)
                return st;
        k += m;
    }
    return Status::Ok;
}

Status read_be32(BlockDevice& dev, uint64_t at, uint32_t* v) {
    uint8_t b[4];
    if (const Status st = dmg_pread(dev, at, b, 4); st != Status::Ok)
        return st;
    *v = be32(b);
    return Status::Ok;
}

Status read_be64(BlockDevice& dev, uint64_t at, uint64_t* v) {
    uint8_t b[8];
    if (const Status st = dmg_pread(dev, at, b, 8); st != Status::Ok)
        return st;
    *v = be64(b);
    return Status::Ok;
}

// dmg_read_resource_fork: the binary resource fork, one walk.
Status resource_fork(BlockDevice& dev, Walk& w, uint64_t info_begin, uint64_t info_length) {
    uint32_t data_offset = 0, count = 0;
    if (read_be32(dev, info_begin, &data_offset) != Status::Ok)
        return fail(w.why, Status::IoError, EIO_REASON);
    if (data_offset > info_length)
        return fail(w.why, Status::Corrupt, EINVAL_REASON);
    if (read_be32(dev, info_begin + 8, &count) != Status::Ok)
        return fail(w.why, Status::IoError, EIO_REASON);
    // qemu adds the two in 32 bits.
    if (count == 0 || static_cast<uint32_t>(data_offset + count) > info_length)
        return fail(w.why, Status::Corrupt, EINVAL_REASON);
    uint64_t offset = info_begin + data_offset;
    const uint64_t info_end = offset + count;
    uint32_t resources = 0;
    while (offset < info_end) {
        if (++resources > DMG_MAX_RESOURCES) {
            Text t{w.why};
            t.put("dmg resource fork holds more than ");
            t.put(uint64_t{DMG_MAX_RESOURCES});
            t.put(" resources (instar's limit)");
            return Status::TooLarge;
        }
        if (read_be32(dev, offset, &count) != Status::Ok)
            return fail(w.why, Status::IoError, EIO_REASON);
        if (count == 0 || count > info_end - offset)
            return fail(w.why, Status::Corrupt, EINVAL_REASON);
        offset += 4;
        if (const Status st = mish_block(w, DeviceSource{dev, offset}, count); st != Status::Ok)
            return st;
        offset += count;
    }
    return Status::Ok;
}

// strstr over [from, end) of a buffer with no NUL in it.
const char* find(const char* from, const char* end, const char* needle, size_t n) {
    for (const char* p = from; static_cast<size_t>(end - p) >= n; ++p)
        if (__builtin_memcmp(p, needle, n) == 0)
            return p;
    return nullptr;
}

// dmg_read_plist_xml's loop over <data>...</data>, one walk over the XML already read.
Status plist_walk(Walk& w, const char* xml, size_t len, uint8_t* decoded) {
    const char* end = xml + len;
    const char* at = xml;
    while (const char* begin = find(at, end, "<data>", 6)) {
        begin += 6;
        const char* stop = find(begin, end, "</data>", 7);
        if (stop == nullptr)
            return fail(w.why, Status::Corrupt, EINVAL_REASON);
        const size_t out_len = dmg_base64_decode(begin, static_cast<size_t>(stop - begin), decoded);
        if (const Status st = mish_block(w, MemorySource{decoded}, static_cast<uint32_t>(out_len)); st != Status::Ok)
            return st;
        at = stop + 1;
    }
    return Status::Ok;
}

// The whole table walk, from the resource fork or else the XML, once to count and check and (with
// `table`) once more to fill it.
Status walk_table(BlockDevice& dev, Allocator& alloc, bool table, DmgImage& img, DmgWhy* why, uint64_t dfo,
                  uint64_t rsrc_off, uint64_t rsrc_len, uint64_t xml_off, uint64_t xml_len) {
    char* xml = nullptr;
    uint8_t* decoded = nullptr;
    size_t xml_cap = 0, decoded_cap = 0, text_len = 0;
    if (rsrc_len == 0) {
        if (xml_len == 0)
            return fail(why, Status::Corrupt, EINVAL_REASON);
        if (xml_len > DMG_PLIST_MAX)
            return fail(why, Status::Corrupt, EINVAL_REASON);
        xml_cap = static_cast<size_t>(xml_len);
        xml = static_cast<char*>(alloc.allocate(xml_cap, 8));
        if (xml == nullptr)
            return fail(why, Status::NoMemory, "Could not open '{image}': Cannot allocate memory");
        if (dmg_pread(dev, xml_off, xml, xml_cap) != Status::Ok) {
            alloc.deallocate(xml, xml_cap);
            return fail(why, Status::Corrupt, EINVAL_REASON);
        }
        // qemu reads the XML as a C string: it ends at the first NUL.
        while (text_len < xml_cap && xml[text_len] != 0)
            ++text_len;
        decoded_cap = text_len / 4 * 3 + 1;
        decoded = static_cast<uint8_t*>(alloc.allocate(decoded_cap, 8));
        if (decoded == nullptr) {
            alloc.deallocate(xml, xml_cap);
            return fail(why, Status::NoMemory, "Could not open '{image}': Cannot allocate memory");
        }
    }
    Status st = Status::Ok;
    for (int pass = 0; pass < (table ? 2 : 1) && st == Status::Ok; ++pass) {
        Walk w{&img, why, dfo, nullptr};
        if (pass == 1) {
            if (img.n_chunks == 0)
                break;
            img.chunks = static_cast<DmgChunk*>(alloc.allocate(sizeof(DmgChunk) * img.n_chunks, 8));
            if (img.chunks == nullptr) {
                st = fail(why, Status::NoMemory, "Could not open '{image}': Cannot allocate memory");
                break;
            }
            w.table = img.chunks;
            img.max_compressed_size = img.max_sectors_per_chunk = 1;
        }
        st = xml == nullptr ? resource_fork(dev, w, rsrc_off, rsrc_len) : plist_walk(w, xml, text_len, decoded);
        if (st == Status::Ok && pass == 1 && w.n != img.n_chunks)
            st = fail(why, Status::IoError, EIO_REASON); // the file changed under us
        if (pass == 0) {
            img.n_chunks = w.n;
            img.has_zlib = w.has_zlib;
        }
    }
    if (decoded != nullptr)
        alloc.deallocate(decoded, decoded_cap);
    if (xml != nullptr)
        alloc.deallocate(xml, xml_cap);
    return st;
}

} // namespace

Status dmg_pread(BlockDevice& dev, uint64_t offset, void* buf, size_t len) {
    if (!guest::qemu_request_ok(offset, len))
        return Status::IoError;
    return guest::read_padded(dev, offset, buf, len);
}

size_t dmg_base64_decode(const char* in, size_t len, uint8_t* out) {
    uint32_t v = 0;
    int i = 0;
    uint8_t last0 = 0, last1 = 0;
    size_t n = 0;
    for (size_t k = 0; k < len; ++k) {
        const uint8_t c = static_cast<uint8_t>(in[k]);
        uint32_t rank;
        if (c >= 'A' && c <= 'Z')
            rank = c - 'A';
        else if (c >= 'a' && c <= 'z')
            rank = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            rank = c - '0' + 52;
        else if (c == '+')
            rank = 62;
        else if (c == '/')
            rank = 63;
        else if (c == '=')
            rank = 0;
        else
            continue;
        last1 = last0;
        last0 = c;
        v = v << 6 | rank;
        if (++i == 4) {
            out[n++] = static_cast<uint8_t>(v >> 16);
            if (last1 != '=')
                out[n++] = static_cast<uint8_t>(v >> 8);
            if (last0 != '=')
                out[n++] = static_cast<uint8_t>(v);
            i = 0;
        }
    }
    return n;
}

// dmg_find_koly_offset: the file's length as the block layer sees it (rounded up to 512), then
// "koly" in the 515 bytes that end 508 bytes before it.
static Status find_koly(BlockDevice& dev, uint64_t* at, DmgWhy* why) {
    const uint64_t size = dev.size();
    if (size > BDRV_MAX_LENGTH)
        return fail(why, Status::IoError, "Failed to get file size while reading UDIF trailer: File too large");
    const uint64_t length = (size + 511) / 512 * 512;
    if (length < 512)
        return fail(why, Status::Corrupt, "dmg file must be at least 512 bytes long");
    const uint64_t offset = length > 511 + 512 ? length - 511 - 512 : 0;
    const size_t n = length < 515 ? static_cast<size_t>(length) : 515;
    uint8_t buf[515];
    if (dmg_pread(dev, offset, buf, n) != Status::Ok)
        return fail(why, Status::IoError, "Failed while reading UDIF trailer: Input/output error");
    for (size_t i = 0; i + 3 < n; ++i)
        if (buf[i] == 'k' && buf[i + 1] == 'o' && buf[i + 2] == 'l' && buf[i + 3] == 'y') {
            *at = offset + i;
            return Status::Ok;
        }
    return fail(why, Status::Corrupt, "Could not locate UDIF trailer in dmg file");
}

Status dmg_load(BlockDevice& dev, Allocator& alloc, bool table, DmgImage* out, DmgWhy* why) {
    why->text[0] = 0;
    *out = DmgImage{};
    uint64_t koly = 0;
    if (const Status st = find_koly(dev, &koly, why); st != Status::Ok)
        return st;
    uint64_t dfo = 0, rsrc_off = 0, rsrc_len = 0, xml_off = 0, xml_len = 0, sectors = 0;
    if (read_be64(dev, koly + 0x18, &dfo) != Status::Ok)
        return fail(why, Status::IoError, EIO_REASON);
    if (dfo > koly)
        return fail(why, Status::Corrupt, EINVAL_REASON);
    if (read_be64(dev, koly + 0x28, &rsrc_off) != Status::Ok || read_be64(dev, koly + 0x30, &rsrc_len) != Status::Ok)
        return fail(why, Status::IoError, EIO_REASON);
    if (rsrc_off >= koly || rsrc_len > koly - rsrc_off)
        return fail(why, Status::Corrupt, EINVAL_REASON);
    if (read_be64(dev, koly + 0xd8, &xml_off) != Status::Ok || read_be64(dev, koly + 0xe0, &xml_len) != Status::Ok)
        return fail(why, Status::IoError, EIO_REASON);
    if (xml_off >= koly || xml_len > koly - xml_off)
        return fail(why, Status::Corrupt, EINVAL_REASON);
    if (read_be64(dev, koly + 0x1ec, &sectors) != Status::Ok)
        return fail(why, Status::IoError, EIO_REASON);
    if (sectors >> 63) // bs->total_sectors < 0
        return fail(why, Status::Corrupt, EINVAL_REASON);
    out->total_sectors = sectors;
    if (const Status st = walk_table(dev, alloc, table, *out, why, dfo, rsrc_off, rsrc_len, xml_off, xml_len);
        st != Status::Ok) {
        dmg_free(alloc, *out);
        return st;
    }
    // bdrv_open_driver's refresh_total_sectors: the byte size, in wrapping unsigned arithmetic.
    if (sectors * 512 > BDRV_MAX_LENGTH) {
        dmg_free(alloc, *out);
        return fail(why, Status::TooLarge, "Could not refresh total sector count: File too large");
    }
    return Status::Ok;
}

void dmg_free(Allocator& alloc, DmgImage& img) {
    if (img.chunks != nullptr)
        alloc.deallocate(img.chunks, sizeof(DmgChunk) * img.n_chunks);
    img.chunks = nullptr;
}

Status probe(BlockDevice& dev, bool* match) {
    // qemu probes by the ".dmg" file name suffix, which the guest never sees: the trailer it then
    // looks for stands in (the host's rule is "koly" 512 bytes before the end).
    *match = false;
    uint64_t at = 0;
    DmgWhy why;
    *match = find_koly(dev, &at, &why) == Status::Ok;
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    DmgImage img;
    DmgWhy why;
    const Status st = dmg_load(*req.image, *req.allocator, false, &img, &why);
    if (st == Status::Ok && img.total_sectors > 0x7fffffffffffffffull / 512) {
        // bdrv_getlength's -EFBIG: the image opens, but qemu-img info cannot size it.
        Text t{&why};
        t.put("Can't get image size '{image}': File too large");
        sink.reason(why.text, t.n);
        return Status::TooLarge;
    }
    if (st != Status::Ok) {
        size_t n = 0;
        while (why.text[n] != 0)
            ++n;
        sink.reason(why.text, n);
        return st;
    }
    sink.format("dmg");
    sink.virtual_size(img.total_sectors * 512);
    return Status::Ok;
}

} // namespace instar::dmg
