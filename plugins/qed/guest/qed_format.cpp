// The QED format's guest half: header, open rules, probe and `info` (qemu's block/qed.c).
#include "qed_format.h"

#include "qed_bytes.h"

namespace instar::qed {

using guest::Status;

void qed_header_decode(const uint8_t* raw, QedHeader* h) {
    h->magic = load_le32(raw + 0);
    h->cluster_size = load_le32(raw + 4);
    h->table_size = load_le32(raw + 8);
    h->header_size = load_le32(raw + 12);
    h->features = load_le64(raw + 16);
    h->compat_features = load_le64(raw + 24);
    h->autoclear_features = load_le64(raw + 32);
    h->l1_table_offset = load_le64(raw + 40);
    h->image_size = load_le64(raw + 48);
    h->backing_filename_offset = load_le32(raw + 56);
    h->backing_filename_size = load_le32(raw + 60);
}

void qed_header_encode(const QedHeader& h, uint8_t* raw) {
    store_le32(raw + 0, h.magic);
    store_le32(raw + 4, h.cluster_size);
    store_le32(raw + 8, h.table_size);
    store_le32(raw + 12, h.header_size);
    store_le64(raw + 16, h.features);
    store_le64(raw + 24, h.compat_features);
    store_le64(raw + 32, h.autoclear_features);
    store_le64(raw + 40, h.l1_table_offset);
    store_le64(raw + 48, h.image_size);
    store_le32(raw + 56, h.backing_filename_offset);
    store_le32(raw + 60, h.backing_filename_size);
}

bool qed_cluster_size_valid(uint64_t cs) {
    return cs >= QED_MIN_CLUSTER_SIZE && cs <= QED_MAX_CLUSTER_SIZE && (cs & (cs - 1)) == 0;
}

bool qed_table_size_valid(uint64_t ts) {
    return ts >= QED_MIN_TABLE_SIZE && ts <= QED_MAX_TABLE_SIZE && (ts & (ts - 1)) == 0;
}

// qemu computes this in wrapping uint64 arithmetic (64 MiB clusters with 16-cluster tables wrap to
// 0, so such an image cannot hold any data): reproduced, since it decides which images open.
uint64_t qed_max_image_size(uint64_t cs, uint64_t ts) {
    const uint64_t entries = static_cast<uint32_t>(ts * cs) / 8;
    const uint64_t l2_size = entries * cs;
    return l2_size * entries;
}

bool qed_image_size_valid(uint64_t image_size, uint64_t cs, uint64_t ts) {
    return image_size % 512 == 0 && image_size <= qed_max_image_size(cs, ts);
}

Status qed_load(guest::BlockDevice& dev, QedImage* out, const char** why) {
    const char* ignored = nullptr;
    if (why == nullptr)
        why = &ignored;
    *why = nullptr;
    QedImage& s = *out;
    s.has_backing = false;
    s.backing_raw = false;
    s.backing_len = 0;
    s.backing[0] = 0;
    // qemu's block layer reads zeros past the end of the file.
    uint8_t raw[QED_HEADER_SIZE] = {};
    const uint64_t fsize = dev.size();
    if (fsize > 0) {
        const size_t n = fsize < QED_HEADER_SIZE ? static_cast<size_t>(fsize) : QED_HEADER_SIZE;
        if (const Status st = dev.read(0, raw, n); st != Status::Ok) {
            *why = "Failed to read QED header";
            return st;
        }
    }
    qed_header_decode(raw, &s.header);
    QedHeader& h = s.header;
    if (h.magic != QED_MAGIC) {
        *why = "Image not in QED format";
        return Status::Corrupt;
    }
    if (h.features & ~QED_FEATURE_MASK) {
        // "Unsupported QED features: %" PRIx64
        static constexpr char head[] = "Unsupported QED features: ";
        size_t n = 0;
        for (; head[n] != 0; ++n)
            s.backing[n] = head[n];
        const uint64_t v = h.features & ~QED_FEATURE_MASK;
        char digits[16];
        size_t k = 0;
        for (uint64_t x = v; x != 0; x >>= 4)
            digits[k++] = "0123456789abcdef"[x & 15];
        while (k > 0)
            s.backing[n++] = digits[--k];
        s.backing[n] = 0;
        *why = s.backing;
        return Status::Unsupported;
    }
    if (!qed_cluster_size_valid(h.cluster_size)) {
        *why = "QED cluster size is invalid";
        return Status::Corrupt;
    }
    s.file_size = s.start_of_cluster(fsize);
    if (!qed_table_size_valid(h.table_size)) {
        *why = "QED table size is invalid";
        return Status::Corrupt;
    }
    if (!qed_image_size_valid(h.image_size, h.cluster_size, h.table_size)) {
        *why = "QED image size is invalid";
        return Status::Corrupt;
    }
    if (!s.check_table_offset(h.l1_table_offset)) {
        *why = "QED table offset is invalid";
        return Status::Corrupt;
    }
    s.table_nelems = static_cast<uint32_t>(s.table_bytes() / 8);
    s.l2_shift = static_cast<uint32_t>(__builtin_ctz(h.cluster_size));
    s.l2_mask = s.table_nelems - 1;
    s.l1_shift = s.l2_shift + static_cast<uint32_t>(__builtin_ctz(s.table_nelems));
    if (h.header_size > 0xffffffffu / h.cluster_size) {
        *why = "QED header size is too large";
        return Status::Corrupt;
    }
    if (h.features & QED_F_BACKING_FILE) {
        if (uint64_t{h.backing_filename_offset} + h.backing_filename_size >
            uint64_t{h.cluster_size} * h.header_size) {
            *why = "QED backing filename offset is invalid";
            return Status::Corrupt;
        }
        if (h.backing_filename_size > QED_MAX_BACKING_NAME) {
            *why = "Failed to read backing filename";
            return Status::Corrupt;
        }
        const uint64_t at = h.backing_filename_offset;
        const uint32_t n = h.backing_filename_size;
        for (uint32_t i = 0; i <= n; ++i)
            s.backing[i] = 0;
        if (at < fsize) {
            const uint64_t avail = fsize - at < n ? fsize - at : n;
            if (avail > 0) {
                if (const Status st = dev.read(at, s.backing, static_cast<size_t>(avail)); st != Status::Ok) {
                    *why = "Failed to read backing filename";
                    return st;
                }
            }
        }
        // A C string: it ends at the first NUL; an empty name means no backing file.
        uint32_t len = 0;
        while (len < n && s.backing[len] != 0)
            ++len;
        s.backing[len] = 0;
        s.backing_len = len;
        s.has_backing = len > 0;
        s.backing_raw = (h.features & QED_F_BACKING_FORMAT_NO_PROBE) != 0;
    }
    return Status::Ok;
}

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    if (dev.size() < QED_HEADER_SIZE)
        return Status::Ok;
    uint8_t raw[4];
    if (dev.read(0, raw, sizeof raw) != Status::Ok)
        return Status::Ok;
    *match = load_le32(raw) == QED_MAGIC;
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr)
        return Status::Invalid;
    QedImage img;
    const char* why = nullptr;
    if (const Status st = qed_load(*req.image, &img, &why); st != Status::Ok) {
        if (why != nullptr) {
            size_t n = 0;
            while (why[n] != 0)
                ++n;
            sink.reason(why, n);
        }
        return st;
    }
    if (img.has_backing) {
        sink.file_reference(guest::FileRole::Backing, img.backing, img.backing_len);
        if (img.backing_raw)
            sink.backing_format("raw", 3);
    }
    sink.format("qed");
    sink.virtual_size(img.header.image_size);
    sink.cluster_size(img.header.cluster_size);
    // qemu-img info never shows a QED image dirty: opening starts the need-check timer when
    // QED_F_NEED_CHECK is set, and the drain at the end of the open fires it at once, clearing the
    // flag in memory (its header write fails on the read-only file, so the file keeps the flag).
    sink.dirty(false);
    return Status::Ok;
}

} // namespace instar::qed
