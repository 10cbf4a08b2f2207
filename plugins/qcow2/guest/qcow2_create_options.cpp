// qcow2 create options, validated as qemu's QAPI visitor and qcow2_co_create do.
#include "qcow2_create_options.h"

#include "qcow2_header.h"
#include "qcow2_limits.h"

#include <instar/guest/format_util.h>

namespace instar::qcow2 {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Prealloc;
using guest::create_fail;
using guest::create_option;
using guest::create_str_equal;

void qcow2_append(char* dst, size_t cap, const char* src) { guest::append_text(dst, cap, src); }

namespace {

constexpr uint64_t QCOW2_DEFAULT_CLUSTER_SIZE = 65536;
constexpr uint64_t QCOW2_DEFAULT_REFCOUNT_BITS = 16;
// qemu rounds the size up to whole 512-byte sectors (BDRV_SECTOR_SIZE).
constexpr uint64_t QCOW2_SECTOR_SIZE = 512;

// qemu's QAPI enum error: "Parameter 'NAME' does not accept value 'VALUE'".
Status enum_error(CreateTarget& target, const char* qapi_name, const char* value) {
    char text[guest::CREATE_MAX_REASON] = {};
    qcow2_append(text, sizeof text, "Parameter '");
    qcow2_append(text, sizeof text, qapi_name);
    qcow2_append(text, sizeof text, "' does not accept value '");
    qcow2_append(text, sizeof text, value);
    qcow2_append(text, sizeof text, "'");
    return create_fail(target, Status::Invalid, text);
}

// The BlockdevDriver enum values qemu-img 7.2 and 10.0 (Debian builds) accept for backing-fmt.
constexpr const char* BLOCKDEV_DRIVERS[] = {
    "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop", "compress", "copy-before-write",
    "copy-on-read", "dmg", "file", "ftp", "ftps", "gluster", "host_cdrom", "host_device", "http", "https",
    "iscsi", "luks", "nbd", "nfs", "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2",
    "qed", "quorum", "raw", "rbd", "replication", "snapshot-access", "ssh", "throttle", "vdi", "vhdx", "vmdk",
    "vpc", "vvfat",
};

bool known_driver(const char* name) {
    for (const char* d : BLOCKDEV_DRIVERS)
        if (create_str_equal(d, name))
            return true;
    return false;
}

bool is_power_of_2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

uint32_t log2_exact(uint64_t v) {
    uint32_t n = 0;
    while ((uint64_t{1} << n) < v)
        ++n;
    return n;
}

// The luks-only encrypt.* keys; QCryptoBlockOptionsQCow (format aes) has key-secret only.
constexpr const char* LUKS_ONLY_KEYS[] = {"encrypt.cipher-alg", "encrypt.cipher-mode",   "encrypt.ivgen-alg",
                                          "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time"};

// The `encrypt` member (QCryptoBlockCreateOptions): qcow2_co_create_opts turns encryption=on and
// encrypt.format=aes into format "qcow", then the visitor checks the format and its members.
Status parse_encrypt(const CreateRequest& req, CreateTarget& target, Qcow2CreateSettings* s) {
    const char* format = create_option(req, "encrypt.format");
    if (format == nullptr && guest::create_option_bool(req, "encryption", false))
        format = "aes";
    bool any = false;
    for (const char* k : LUKS_ONLY_KEYS)
        any = any || create_option(req, k) != nullptr;
    if (format == nullptr) {
        if (any || create_option(req, "encrypt.key-secret") != nullptr)
            return create_fail(target, Status::Invalid, "Parameter 'encrypt.format' is missing");
        return Status::Ok;
    }
    if (create_str_equal(format, "aes") || create_str_equal(format, "qcow")) {
        for (const char* k : LUKS_ONLY_KEYS) {
            if (create_option(req, k) == nullptr)
                continue;
            char text[guest::CREATE_MAX_REASON] = {};
            qcow2_append(text, sizeof text, "Parameter '");
            qcow2_append(text, sizeof text, k);
            qcow2_append(text, sizeof text, "' is unexpected");
            return create_fail(target, Status::Invalid, text);
        }
        s->crypt_method = QCOW_CRYPT_AES;
    } else if (create_str_equal(format, "luks")) {
        s->crypt_method = QCOW_CRYPT_LUKS;
    } else {
        return enum_error(target, "format", format);
    }
    return Status::Ok;
}

// The QAPI visitor's part: enum values, in BlockdevCreateOptionsQcow2's member order (version,
// backing-fmt, encrypt, preallocation, compression-type). qemu-img maps compat 0.10/1.1 to v2/v3 first.
Status parse_enums(const CreateRequest& req, CreateTarget& target, Qcow2CreateSettings* s) {
    const char* compat = create_option(req, "compat");
    if (compat == nullptr || create_str_equal(compat, "1.1") || create_str_equal(compat, "v3"))
        s->version = 3;
    else if (create_str_equal(compat, "0.10") || create_str_equal(compat, "v2"))
        s->version = 2;
    else
        return enum_error(target, "version", compat);
    if (req.backing_fmt != nullptr && !known_driver(req.backing_fmt))
        return enum_error(target, "backing-fmt", req.backing_fmt);
    if (const Status st = parse_encrypt(req, target, s); st != Status::Ok)
        return st;
    if (!guest::create_option_prealloc(req, &s->prealloc))
        return enum_error(target, "preallocation", create_option(req, "preallocation"));
    const char* ct = create_option(req, "compression_type");
    if (ct == nullptr || create_str_equal(ct, "zlib"))
        s->compression_type = QCOW2_COMPRESSION_TYPE_ZLIB;
    else if (create_str_equal(ct, "zstd"))
        s->compression_type = QCOW2_COMPRESSION_TYPE_ZSTD;
    else
        return enum_error(target, "compression-type", ct);
    return Status::Ok;
}

} // namespace

Status qcow2_create_settings(const CreateRequest& req, CreateTarget& target, Qcow2CreateSettings* s) {
    // qcow2_co_create_opts, before the visitor: the legacy key (dropped when off) is an alias of
    // encrypt.format.
    if (guest::create_option_bool(req, "encryption", false) && create_option(req, "encrypt.format") != nullptr)
        return create_fail(target, Status::Invalid,
                           "'encrypt.format' and its alias 'encryption' can't be used at the same time");
    Status st = parse_enums(req, target, s);
    if (st != Status::Ok)
        return st;
    uint64_t cluster_size = 0;
    uint64_t refcount_bits = 0;
    if (!guest::create_option_u64(req, "cluster_size", QCOW2_DEFAULT_CLUSTER_SIZE, &cluster_size))
        return create_fail(target, Status::Invalid, "Parameter 'cluster-size' expects a size");
    if (!guest::create_option_u64(req, "refcount_bits", QCOW2_DEFAULT_REFCOUNT_BITS, &refcount_bits))
        return create_fail(target, Status::Invalid, "Parameter 'refcount-bits' expects an integer");
    s->extended_l2 = guest::create_option_bool(req, "extended_l2", false);
    s->lazy_refcounts = guest::create_option_bool(req, "lazy_refcounts", false);
    s->backing_file = req.backing_file;
    s->backing_fmt = req.backing_fmt;

    s->size = (req.size + QCOW2_SECTOR_SIZE - 1) & ~(QCOW2_SECTOR_SIZE - 1);
    s->size_negative = req.size > QCOW2_MAX_VIRTUAL_SIZE - (QCOW2_SECTOR_SIZE - 1);

    // qcow2_co_create, in its order.
    if (s->extended_l2 && s->version < 3)
        return create_fail(target, Status::Invalid,
                           "Extended L2 entries are only supported with compatibility level 1.1 and above (use "
                           "version=v3 or greater)");
    if (!is_power_of_2(cluster_size) || cluster_size < (uint64_t{1} << QCOW2_MIN_CLUSTER_BITS) ||
        cluster_size > (uint64_t{1} << QCOW2_MAX_CLUSTER_BITS))
        return create_fail(target, Status::Invalid, "Cluster size must be a power of two between 512 and 2048k");
    s->cluster_bits = log2_exact(cluster_size);
    if (s->extended_l2 && s->cluster_bits < QCOW2_MIN_EXTL2_CLUSTER_BITS)
        return create_fail(target, Status::Invalid,
                           "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
    if (s->backing_file != nullptr && s->prealloc != Prealloc::Off && !s->extended_l2)
        return create_fail(target, Status::Invalid,
                           "Backing file and preallocation can only be used at the same time if extended_l2 is on");
    if (s->backing_fmt != nullptr && s->backing_file == nullptr)
        return create_fail(target, Status::Invalid, "Backing format cannot be used without backing file");
    if (s->version < 3 && s->lazy_refcounts)
        return create_fail(target, Status::Invalid,
                           "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 "
                           "or greater)");
    if (refcount_bits > 64 || !is_power_of_2(refcount_bits))
        return create_fail(target, Status::Invalid, "Refcount width must be a power of two and may not exceed 64 bits");
    if (s->version < 3 && refcount_bits != 16)
        return create_fail(target, Status::Invalid,
                           "Different refcount widths than 16 bits require compatibility level 1.1 or above (use "
                           "version=v3 or greater)");
    s->refcount_order = log2_exact(refcount_bits);
    s->data_file = create_option(req, "data_file");
    s->data_device = req.data_file;
    s->data_file_raw = guest::create_option_bool(req, "data_file_raw", false);
    if (s->data_file_raw && s->data_file == nullptr)
        return create_fail(target, Status::Invalid, "data-file-raw requires data-file");
    if (s->data_file_raw && s->backing_file != nullptr)
        return create_fail(target, Status::Invalid, "Backing file and data-file-raw cannot be used at the same time");
    // The data file must read as the raw disk, so its L1/L2 tables map it 1:1 from the start.
    if (s->data_file_raw && s->prealloc == Prealloc::Off)
        s->prealloc = Prealloc::Metadata;
    if (s->data_file != nullptr) {
        if (s->version < 3)
            return create_fail(target, Status::Invalid,
                               "External data files are only supported with compatibility level 1.1 and above "
                               "(use version=v3 or greater)");
        if (s->data_device == nullptr)
            return create_fail(target, Status::Invalid,
                               "external data files (data_file) are made only by instar create so far");
    }
    if (s->compression_type != QCOW2_COMPRESSION_TYPE_ZLIB && s->version < 3)
        return create_fail(target, Status::Invalid,
                           "Non-zlib compression type is only supported with compatibility level 1.1 and above "
                           "(use version=v3 or greater)");
    return Status::Ok;
}

} // namespace instar::qcow2
