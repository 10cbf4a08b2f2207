// The QED emitter: header (with the backing file name after it), then a zeroed L1 table at one
// cluster, exactly as qemu writes them (block/qed.c bdrv_qed_co_create).
#include "qed_create.h"

#include "qed_format.h"

#include <instar/guest/format_util.h>

namespace instar::qed {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Status;

namespace {

// Zeros written at a time for the L1 table (qemu writes it whole from a zeroed buffer).
constexpr size_t ZERO_CHUNK = 64 * 1024;

// "%s [%u, %u] and power of 2"
const char* range_message(char* buf, size_t cap, const char* head, uint32_t lo, uint32_t hi) {
    size_t n = 0;
    auto put = [&](const char* s) {
        while (*s && n + 1 < cap)
            buf[n++] = *s++;
    };
    auto num = [&](uint64_t v) {
        char d[24];
        size_t k = 0;
        do {
            d[k++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        while (k && n + 1 < cap)
            buf[n++] = d[--k];
    };
    put(head);
    put(" [");
    num(lo);
    put(", ");
    num(hi);
    put("] and power of 2");
    buf[n] = 0;
    return buf;
}

} // namespace

Status create_image(const CreateRequest& req, CreateTarget& target, QedCreated* out) {
    uint64_t cs = 0, ts = 0;
    if (!guest::create_option_u64(req, "cluster_size", QED_DEFAULT_CLUSTER_SIZE, &cs) ||
        !guest::create_option_u64(req, "table_size", QED_DEFAULT_TABLE_SIZE, &ts))
        return guest::create_fail(target, Status::Invalid, "Invalid option value");
    char text[guest::CREATE_MAX_REASON];
    if (!qed_cluster_size_valid(cs))
        return guest::create_fail(target, Status::Invalid,
                                  range_message(text, sizeof text, "QED cluster size must be within range",
                                                QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE));
    if (!qed_table_size_valid(ts))
        return guest::create_fail(target, Status::Invalid,
                                  range_message(text, sizeof text, "QED table size must be within range",
                                                QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE));
    // qemu silently rounds the size up to a sector first.
    const uint64_t max = qed_max_image_size(cs, ts);
    const bool overflow = req.size > UINT64_MAX - 511;
    const uint64_t size = overflow ? 0 : (req.size + 511) & ~uint64_t{511};
    if (overflow || !qed_image_size_valid(size, cs, ts)) {
        static constexpr char head[] = "QED image size must be a non-zero multiple of cluster size and less than ";
        size_t n = 0;
        for (; head[n] != 0; ++n)
            text[n] = head[n];
        char d[24];
        size_t k = 0;
        uint64_t v = max;
        do {
            d[k++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        while (k)
            text[n++] = d[--k];
        static constexpr char tail[] = " bytes";
        for (size_t i = 0; tail[i] != 0; ++i)
            text[n++] = tail[i];
        text[n] = 0;
        return guest::create_fail(target, Status::Invalid, text);
    }
    QedHeader h{};
    h.magic = QED_MAGIC;
    h.cluster_size = static_cast<uint32_t>(cs);
    h.table_size = static_cast<uint32_t>(ts);
    h.header_size = 1;
    h.l1_table_offset = cs;
    h.image_size = size;
    const bool backing = req.backing_file != nullptr;
    size_t name_len = 0;
    if (backing) {
        while (req.backing_file[name_len] != 0)
            ++name_len;
        if (name_len > QED_MAX_BACKING_NAME)
            return guest::create_fail(target, Status::Invalid, "Backing file name too long");
        h.features |= QED_F_BACKING_FILE;
        h.backing_filename_offset = QED_HEADER_SIZE;
        h.backing_filename_size = static_cast<uint32_t>(name_len);
        if (req.backing_fmt != nullptr && guest::create_str_equal(req.backing_fmt, "raw"))
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    guest::BlockDevice& dev = target.image();
    uint8_t raw[QED_HEADER_SIZE];
    qed_header_encode(h, raw);
    if (const Status st = dev.write(0, raw, sizeof raw); st != Status::Ok)
        return st;
    if (name_len > 0)
        if (const Status st = dev.write(QED_HEADER_SIZE, req.backing_file, name_len); st != Status::Ok)
            return st;
    guest::ScopedBuffer zeros(*req.allocator, ZERO_CHUNK);
    if (!zeros.p)
        return Status::NoMemory;
    __builtin_memset(zeros.p, 0, ZERO_CHUNK);
    const uint64_t l1_bytes = cs * ts;
    for (uint64_t done = 0; done < l1_bytes;) {
        const uint64_t n = l1_bytes - done < ZERO_CHUNK ? l1_bytes - done : ZERO_CHUNK;
        if (const Status st = dev.write(cs + done, zeros.p, static_cast<size_t>(n)); st != Status::Ok)
            return st;
        done += n;
    }
    target.resolved_unit_size(cs);
    *out = QedCreated{h.cluster_size, h.table_size, size, cs, backing};
    return Status::Ok;
}

Status create(const CreateRequest& req, CreateTarget& target) {
    if (req.allocator == nullptr)
        return Status::Invalid;
    QedCreated c;
    return create_image(req, target, &c);
}

} // namespace instar::qed
