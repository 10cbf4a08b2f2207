// The qcow (version 1) format's guest half: header, open rules, probe and `info` (qemu's block/qcow.c).
#include "qcow_format.h"

namespace instar::qcow {

using guest::Status;

void qcow_header_decode(const uint8_t* raw, QcowHeader* h) {
    h->magic = load_be32(raw + 0);
    h->version = load_be32(raw + 4);
    h->backing_file_offset = load_be64(raw + 8);
    h->backing_file_size = load_be32(raw + 16);
    h->mtime = load_be32(raw + 20);
    h->size = load_be64(raw + 24);
    h->cluster_bits = raw[32];
    h->l2_bits = raw[33];
    h->padding = static_cast<uint16_t>(raw[34] << 8 | raw[35]);
    h->crypt_method = load_be32(raw + 36);
    h->l1_table_offset = load_be64(raw + 40);
}

void qcow_header_encode(const QcowHeader& h, uint8_t* raw) {
    store_be32(raw + 0, h.magic);
    store_be32(raw + 4, h.version);
    store_be64(raw + 8, h.backing_file_offset);
    store_be32(raw + 16, h.backing_file_size);
    store_be32(raw + 20, h.mtime);
    store_be64(raw + 24, h.size);
    raw[32] = h.cluster_bits;
    raw[33] = h.l2_bits;
    raw[34] = static_cast<uint8_t>(h.padding >> 8);
    raw[35] = static_cast<uint8_t>(h.padding);
    store_be32(raw + 36, h.crypt_method);
    store_be64(raw + 40, h.l1_table_offset);
}

namespace {

size_t put_text(char* buf, size_t n, const char* s) {
    while (*s)
        buf[n++] = *s++;
    return n;
}

size_t put_uint(char* buf, size_t n, uint64_t v) {
    char d[24];
    size_t k = 0;
    do {
        d[k++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        buf[n++] = d[--k];
    return n;
}

} // namespace

Status qcow_load(guest::BlockDevice& dev, QcowImage* out, const char** why) {
    const char* ignored = nullptr;
    if (why == nullptr)
        why = &ignored;
    *why = nullptr;
    QcowImage& s = *out;
    s.has_backing = false;
    s.backing_len = 0;
    s.backing[0] = 0;
    uint8_t raw[QCOW_HEADER_SIZE];
    if (const Status st = read_padded(dev, 0, raw, sizeof raw); st != Status::Ok)
        return st;
    qcow_header_decode(raw, &s.header);
    const QcowHeader& h = s.header;
    if (h.magic != QCOW_MAGIC) {
        *why = "Image not in qcow format";
        return Status::Corrupt;
    }
    if (h.version != QCOW_VERSION) {
        // "qcow (v%d) does not support qcow version %" PRIu32
        size_t n = put_text(s.text, 0, "qcow (v1) does not support qcow version ");
        n = put_uint(s.text, n, h.version);
        if (h.version == 2 || h.version == 3) // qemu's error_append_hint
            n = put_text(s.text, n, "\nTry the 'qcow2' driver instead.");
        s.text[n] = 0;
        *why = s.text;
        return Status::Unsupported;
    }
    if (h.size <= 1) {
        *why = "Image size is too small (must be at least 2 bytes)";
        return Status::Corrupt;
    }
    if (h.cluster_bits < QCOW_MIN_CLUSTER_BITS || h.cluster_bits > QCOW_MAX_CLUSTER_BITS) {
        *why = "Cluster size must be between 512 and 64k";
        return Status::Corrupt;
    }
    if (h.l2_bits < QCOW_MIN_L2_BITS || h.l2_bits > QCOW_MAX_L2_BITS) {
        *why = "L2 table size must be between 512 and 64k";
        return Status::Corrupt;
    }
    if (h.crypt_method != QCOW_CRYPT_NONE && h.crypt_method != QCOW_CRYPT_AES) {
        *why = "invalid encryption method in qcow header";
        return Status::Corrupt;
    }
    s.cluster_bits = h.cluster_bits;
    s.cluster_size = uint64_t{1} << h.cluster_bits;
    s.l2_bits = h.l2_bits;
    s.l2_size = uint64_t{1} << h.l2_bits;
    s.virtual_size = h.size / 512 * 512;
    s.cluster_offset_mask = (uint64_t{1} << (63 - h.cluster_bits)) - 1;
    const uint32_t shift = s.cluster_bits + s.l2_bits;
    if (h.size > UINT64_MAX - (uint64_t{1} << shift)) {
        *why = "Image too large";
        return Status::Corrupt;
    }
    s.l1_size = (h.size + (uint64_t{1} << shift) - 1) >> shift;
    if (s.l1_size > QCOW_MAX_L1_ENTRIES) {
        *why = "Image too large";
        return Status::Corrupt;
    }
    // The L1 table is read at open (qemu reads it whole; past the end of the file as zeros). A
    // range the block layer refuses (past 2^63) fails qemu's open with EIO/EINVAL.
    uint64_t l1_end;
    if (__builtin_add_overflow(h.l1_table_offset, s.l1_size * 8, &l1_end) || l1_end > QCOW_MAX_FILE_OFFSET) {
        *why = "Could not open '{image}': Input/output error"; // bdrv_open's words for the failed read
        return Status::IoError;
    }
    if (h.backing_file_offset != 0) {
        const uint32_t len = h.backing_file_size;
        if (len > QCOW_MAX_BACKING_NAME) {
            *why = "Backing file name too long";
            return Status::Corrupt;
        }
        uint64_t end;
        if (__builtin_add_overflow(h.backing_file_offset, uint64_t{len}, &end) || end > QCOW_MAX_FILE_OFFSET) {
            *why = "Could not open '{image}': Input/output error";
            return Status::IoError;
        }
        if (const Status st = read_padded(dev, h.backing_file_offset, s.backing, len); st != Status::Ok)
            return st;
        // A C string: it ends at the first NUL; an empty name means no backing file.
        uint32_t n = 0;
        while (n < len && s.backing[n] != 0)
            ++n;
        s.backing[n] = 0;
        s.backing_len = n;
        s.has_backing = n > 0;
    }
    return Status::Ok;
}

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    if (dev.size() < QCOW_HEADER_SIZE)
        return Status::Ok;
    uint8_t raw[8];
    if (dev.read(0, raw, sizeof raw) != Status::Ok)
        return Status::Ok;
    *match = load_be32(raw) == QCOW_MAGIC && load_be32(raw + 4) == QCOW_VERSION;
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr || req.allocator == nullptr)
        return Status::Invalid;
    QcowImage* img = static_cast<QcowImage*>(req.allocator->allocate(sizeof(QcowImage), alignof(QcowImage)));
    if (img == nullptr)
        return Status::NoMemory;
    const char* why = nullptr;
    const Status st = qcow_load(*req.image, img, &why);
    if (st != Status::Ok) {
        if (why != nullptr) {
            size_t n = 0;
            while (why[n] != 0)
                ++n;
            sink.reason(why, n);
        }
    } else {
        if (img->has_backing)
            sink.file_reference(guest::FileRole::Backing, img->backing, img->backing_len);
        sink.format("qcow");
        sink.virtual_size(img->virtual_size);
        sink.cluster_size(img->cluster_size);
        sink.encrypted(img->header.crypt_method != QCOW_CRYPT_NONE);
        sink.dirty(false);
    }
    req.allocator->deallocate(img, sizeof(QcowImage));
    return st;
}

} // namespace instar::qcow
