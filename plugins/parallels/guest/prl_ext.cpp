// The Parallels Format Extension check (prl_ext.h).
#include "prl_ext.h"

#include <instar/guest/format_util.h>

#include <nettle/md5.h>

namespace instar::parallels {

using guest::Status;

namespace {

// qemu's messages, built in img.why_buf.
class Why {
public:
    explicit Why(PrlImage& img) : buf_(img.why_buf) { buf_[0] = 0; }
    Why& t(const char* s) {
        guest::append_text(buf_, sizeof(PrlImage::why_buf), s);
        return *this;
    }
    Why& d(uint64_t v) {
        guest::append_decimal(buf_, sizeof(PrlImage::why_buf), v);
        return *this;
    }
    Why& i(int64_t v) { // PRId64
        if (v < 0)
            return t("-").d(uint64_t{0} - static_cast<uint64_t>(v));
        return d(static_cast<uint64_t>(v));
    }
    Why& x(uint64_t v) { // PRIx64
        guest::append_hex(buf_, sizeof(PrlImage::why_buf), v);
        return *this;
    }
    Status fail(const char** why, Status st = Status::Corrupt) {
        *why = buf_;
        return st;
    }

private:
    char* buf_;
};

// qemu_uuid_unparse of the bitmap's id: its name.
void uuid_text(const uint8_t* id, char* out) {
    size_t n = 0;
    for (size_t k = 0; k < 16; ++k) {
        if (k == 4 || k == 6 || k == 8 || k == 10)
            out[n++] = '-';
        out[n++] = "0123456789abcdef"[id[k] >> 4];
        out[n++] = "0123456789abcdef"[id[k] & 15];
    }
    out[n] = 0;
}

struct Ext {
    guest::BlockDevice& dev;
    PrlImage& img;
    uint64_t base; // the cluster's byte offset
    uint8_t ids[PRL_EXT_MAX_BITMAPS][16];
    uint32_t bitmaps = 0;

    // [pos, pos + len) of the extension cluster (zeros past the file's end). qemu's feature walk can run past its buffer (see
    // prl_check_extension): those bytes read as zeros here, never as the file's.
    Status read(uint64_t pos, uint8_t* buf, size_t len) {
        const uint64_t cs = img.cluster_size;
        size_t in = 0;
        if (pos < cs)
            in = cs - pos < len ? static_cast<size_t>(cs - pos) : len;
        if (in > 0)
            if (const Status st = guest::read_padded(dev, base + pos, buf, in); st != Status::Ok)
                return st;
        __builtin_memset(buf + in, 0, len - in);
        return Status::Ok;
    }
};

// parallels_load_bitmap over the feature data at cluster offset `at` (fh.data_size bytes; past the
// cluster they read as zeros, Ext::read), in qemu's order of checks.
Status load_bitmap(Ext& e, uint64_t at, uint32_t data_size, const char** why) {
    Why w(e.img);
    if (data_size < PRL_EXT_BITMAP)
        return w.t("Too small Bitmap Feature area in Parallels Format Extension: ").d(data_size)
            .t(" bytes, expected at least ").d(PRL_EXT_BITMAP).t(" bytes").fail(why);
    uint8_t bf[PRL_EXT_BITMAP];
    if (const Status st = e.read(at, bf, sizeof bf); st != Status::Ok)
        return st;
    const uint64_t size = load_le64(bf);
    const uint8_t* id = bf + 8;
    const uint32_t granularity_sectors = load_le32(bf + 24);
    const uint32_t l1_size = load_le32(bf + 28);
    if (size != e.img.total_sectors)
        return w.t("Bitmap size (in sectors) ").i(static_cast<int64_t>(size)).t(" differs from disk size in sectors ")
            .i(static_cast<int64_t>(e.img.total_sectors)).fail(why);
    if (uint64_t{l1_size} * 8 > data_size - PRL_EXT_BITMAP)
        return w.t("Bitmaps feature corrupted: l1 table exceeds extension data_size").fail(why);
    // qemu 7.2 and 10.0 shift in 32 bits and assert (abort) on a granularity that is not a power of
    // two of at least 512: refused with later qemu's words (divergence parallels-ext-limits).
    const uint32_t granularity = granularity_sectors << 9;
    if (granularity < PRL_SECTOR || (granularity & (granularity - 1)) != 0)
        return w.t("Invalid bitmap granularity ").d(granularity)
            .t(", expected a power of two of at least 512 bytes").fail(why);
    for (uint32_t k = 0; k < e.bitmaps; ++k) {
        if (__builtin_memcmp(e.ids[k], id, 16) == 0) {
            char name[37];
            uuid_text(id, name);
            return w.t("Bitmap already exists: ").t(name).fail(why);
        }
    }
    if (e.bitmaps == PRL_EXT_MAX_BITMAPS)
        return w.t("The Parallels Format Extension declares more than ").d(PRL_EXT_MAX_BITMAPS)
            .t(" bitmaps (instar's PRL_EXT_MAX_BITMAPS)").fail(why, Status::TooLarge);
    __builtin_memcpy(e.ids[e.bitmaps++], id, 16);
    // bdrv_dirty_bitmap_serialization_size of the whole disk, in clusters.
    const uint64_t bytes = e.img.total_sectors * PRL_SECTOR;
    const uint64_t serialized = bytes == 0 ? 0 : ((bytes - 1) / granularity / 64 + 1) * 8;
    const uint64_t tab_size = (serialized + e.img.cluster_size - 1) / e.img.cluster_size;
    if (tab_size != l1_size)
        return w.t("Bitmap table size ").d(l1_size).t(" does not correspond to bitmap size and cluster size. Expected ")
            .d(tab_size).fail(why);
    // parallels_load_bitmap_data: 0 is a cluster of zeros, 1 one of ones, anything else the sector
    // of a data cluster qemu reads (past the end of the file: zeros). The bits are not kept, so only
    // qemu's failure to read one matters: its offset, entry << 9 in an int64.
    uint8_t table[PRL_EXT_CHUNK];
    for (uint32_t first = 0; first < l1_size; first += PRL_EXT_CHUNK / 8) {
        const uint32_t n = l1_size - first < PRL_EXT_CHUNK / 8 ? l1_size - first : PRL_EXT_CHUNK / 8;
        if (const Status st = e.read(at + PRL_EXT_BITMAP + uint64_t{first} * 8, table, n * 8); st != Status::Ok)
            return st;
        for (uint32_t k = 0; k < n; ++k) {
            const uint64_t entry = load_le64(table + 8 * k);
            if (entry > 1 && !guest::qemu_request_ok(entry << 9, e.img.cluster_size))
                return w.t("Failed to read bitmap data cluster: Input/output error").fail(why, Status::IoError);
        }
    }
    return Status::Ok;
}

} // namespace

Status prl_check_extension(guest::BlockDevice& dev, PrlImage& img, const char** why) {
    const uint64_t cs = img.cluster_size;
    Ext e{dev, img, img.ext_off << 9, {}, 0};
    Why w(img);
    if (!guest::qemu_request_ok(e.base, cs))
        return w.t("Failed to read Format Extension cluster: Input/output error").fail(why, Status::IoError);
    uint8_t chunk[PRL_EXT_CHUNK];
    if (const Status st = guest::read_padded(dev, e.base, chunk, PRL_EXT_HEADER); st != Status::Ok)
        return st;
    const uint64_t magic = load_le64(chunk);
    uint8_t sum[16];
    __builtin_memcpy(sum, chunk + 8, sizeof sum);
    if (magic != PRL_EXT_MAGIC)
        return w.t("Wrong parallels Format Extension magic: 0x").x(magic).t(", expected: 0x").x(PRL_EXT_MAGIC)
            .fail(why);
    md5_ctx md5;
    md5_init(&md5);
    for (uint64_t at = PRL_EXT_HEADER; at < cs; at += PRL_EXT_CHUNK) {
        const size_t n = cs - at < PRL_EXT_CHUNK ? static_cast<size_t>(cs - at) : PRL_EXT_CHUNK;
        if (const Status st = guest::read_padded(dev, e.base + at, chunk, n); st != Status::Ok)
            return st;
        md5_update(&md5, n, chunk);
    }
    uint8_t digest[MD5_DIGEST_SIZE];
    md5_digest(&md5, sizeof digest, digest);
    if (__builtin_memcmp(digest, sum, sizeof sum) != 0)
        return w.t("Wrong checksum in Format Extension header. Format extension is corrupted.").fail(why);
    // qemu's feature walk. `remaining` loses only the feature headers, not their data (qemu 7.2's
    // and 10.0's accounting), so a feature list can run past the cluster and still pass the checks;
    // qemu then reads past its buffer, usually zeros (an end of features). Here those bytes read as
    // zeros (divergence parallels-ext-limits). `remaining` falls by 24 a turn: the walk ends.
    uint64_t pos = PRL_EXT_HEADER;
    int64_t remaining = static_cast<int64_t>(cs) - static_cast<int64_t>(PRL_EXT_HEADER);
    for (;;) {
        if (remaining < static_cast<int64_t>(PRL_EXT_FEATURE))
            return w.t("Can not read feature header, as remaining bytes (").i(remaining)
                .t(") in Format Extension is less than Feature header size (").d(PRL_EXT_FEATURE).t(")").fail(why);
        uint8_t fh[PRL_EXT_FEATURE];
        if (const Status st = e.read(pos, fh, sizeof fh); st != Status::Ok)
            return st;
        pos += PRL_EXT_FEATURE;
        remaining -= static_cast<int64_t>(PRL_EXT_FEATURE);
        const uint64_t fmagic = load_le64(fh);
        const uint64_t flags = load_le64(fh + 8);
        const uint32_t data_size = load_le32(fh + 16);
        if (flags != 0)
            return w.t("Flags for extension feature are unsupported").fail(why);
        if (int64_t{data_size} > remaining)
            return w.t("Feature data_size exceedes Format Extension cluster").fail(why);
        if (fmagic == PRL_EXT_END_OF_FEATURES)
            return Status::Ok;
        if (fmagic != PRL_EXT_DIRTY_BITMAP)
            return w.t("Unknown feature: 0x").x(fmagic).fail(why);
        if (const Status st = load_bitmap(e, pos, data_size, why); st != Status::Ok)
            return st;
        pos = (pos + data_size + 7) / 8 * 8;
    }
}

} // namespace instar::parallels
