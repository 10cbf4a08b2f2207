// The qcow emitter: header, backing file name, then the zeroed L1 table written sector by sector,
// exactly as qemu writes them (block/qcow.c qcow_co_create).
#include "qcow_create.h"

#include "qcow_format.h"

#include <instar/guest/format_util.h>

namespace instar::qcow {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Status;

namespace {

// Zeros written at a time for the L1 table (qemu writes it 512 bytes at a time).
constexpr size_t ZERO_CHUNK = 64 * 1024;

} // namespace

Status create_image(const CreateRequest& req, CreateTarget& target, QcowCreated* out) {
    if (guest::create_option(req, "encryption") != nullptr || guest::create_option(req, "encrypt.format") != nullptr)
        return guest::create_fail(target, Status::Unsupported,
                                  "instar does not create qcow images with AES encryption");
    // qemu silently rounds the size up to a sector; zero is refused.
    if (req.size > UINT64_MAX - 511)
        return guest::create_fail(target, Status::Invalid, "Image too large");
    const uint64_t size = (req.size + 511) & ~uint64_t{511};
    if (size == 0)
        return guest::create_fail(target, Status::Invalid, "Image size is too small, cannot be zero length");
    QcowHeader h{};
    h.magic = QCOW_MAGIC;
    h.version = QCOW_VERSION;
    h.size = size;
    uint64_t header_size = QCOW_HEADER_SIZE;
    size_t name_len = 0;
    bool store_name = false;
    if (req.backing_file != nullptr) {
        // "fat:" (vvfat) is not stored, but still gets the backing geometry.
        if (!guest::create_str_equal(req.backing_file, "fat:")) {
            while (req.backing_file[name_len] != 0)
                ++name_len;
            // qemu stores any length but cannot reopen a name over 1023 bytes.
            if (name_len > QCOW_MAX_BACKING_NAME)
                return guest::create_fail(target, Status::Invalid, "Backing file name too long");
            store_name = true;
            h.backing_file_offset = header_size;
            h.backing_file_size = static_cast<uint32_t>(name_len);
            header_size += name_len;
        }
        h.cluster_bits = 9; // 512-byte clusters: no unmodified sectors copied
        h.l2_bits = 12;     // 32 KiB L2 tables
    } else {
        h.cluster_bits = 12; // 4 KiB clusters
        h.l2_bits = 9;       // 4 KiB L2 tables
    }
    header_size = (header_size + 7) & ~uint64_t{7};
    const uint32_t shift = h.cluster_bits + h.l2_bits;
    const uint64_t l1_size = (size >> shift) + ((size & ((uint64_t{1} << shift) - 1)) != 0);
    h.l1_table_offset = header_size;
    h.crypt_method = QCOW_CRYPT_NONE;

    guest::BlockDevice& dev = target.image();
    uint8_t raw[QCOW_HEADER_SIZE];
    qcow_header_encode(h, raw);
    if (const Status st = dev.write(0, raw, sizeof raw); st != Status::Ok)
        return st;
    if (store_name && name_len > 0)
        if (const Status st = dev.write(QCOW_HEADER_SIZE, req.backing_file, name_len); st != Status::Ok)
            return st;
    guest::ScopedBuffer zeros(*req.allocator, ZERO_CHUNK);
    if (!zeros.p)
        return Status::NoMemory;
    __builtin_memset(zeros.p, 0, ZERO_CHUNK);
    const uint64_t l1_bytes = (l1_size * 8 + 511) / 512 * 512;
    for (uint64_t done = 0; done < l1_bytes;) {
        const uint64_t n = l1_bytes - done < ZERO_CHUNK ? l1_bytes - done : ZERO_CHUNK;
        if (const Status st = dev.write(header_size + done, zeros.p, static_cast<size_t>(n)); st != Status::Ok)
            return st;
        done += n;
    }
    target.resolved_unit_size(uint64_t{1} << h.cluster_bits);
    *out = QcowCreated{h.cluster_bits, h.l2_bits, size, header_size, l1_size, header_size + l1_bytes};
    return Status::Ok;
}

Status create(const CreateRequest& req, CreateTarget& target) {
    if (req.allocator == nullptr)
        return Status::Invalid;
    QcowCreated c;
    return create_image(req, target, &c);
}

} // namespace instar::qcow
