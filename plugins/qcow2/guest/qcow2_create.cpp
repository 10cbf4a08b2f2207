// The qcow2 emitter: replays qemu's qcow2_co_create (header, one-cluster refcount table, first
// refcount block), the truncate to the virtual size (L1 table and preallocation) and the backing
// file assignment, then writes the final refcount blocks and header.
#include "qcow2_create.h"

#include "qcow2_create_alloc.h"
#include "qcow2_create_header.h"
#include "qcow2_create_options.h"
#include "qcow2_create_tables.h"
#include "qcow2_header.h"
#include "qcow2_limits.h"

#include "luks_create.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

namespace instar::qcow2 {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Prealloc;
using guest::create_fail;

namespace {

// qemu's BDRV_MAX_LENGTH: the largest image length its block layer accepts.
constexpr uint64_t BDRV_MAX_LENGTH = 9223372035781033984ull;

void append_u64(char* dst, size_t cap, uint64_t v) { guest::append_decimal(dst, cap, v); }

size_t str_len(const char* s) {
    size_t n = 0;
    while (s[n] != 0)
        ++n;
    return n;
}

// qemu-img turns any -EFBIG from the driver into its own message (block.c, bdrv_img_create); the
// hint is there because qcow2's cluster_size option has a default.
Status fail_errno(CreateTarget& target, int64_t err) {
    switch (err) {
    case QCOW2_EFBIG:
        return create_fail(target, Status::TooLarge,
                           "The image size is too large for file format 'qcow2' (try using a larger cluster size)");
    case QCOW2_ENOMEM:
        return create_fail(target, Status::NoMemory, "Could not resize image: Cannot allocate memory");
    default:
        return create_fail(target, Status::IoError, "Could not resize image: Input/output error");
    }
}

// qcow2_change_backing_file's failures: "Could not assign backing file '%s' with format '%s': %s".
Status backing_error(CreateTarget& target, const Qcow2CreateSettings& s, const char* why, Status st) {
    char text[guest::CREATE_MAX_REASON] = {};
    qcow2_append(text, sizeof text, "Could not assign backing file '");
    qcow2_append(text, sizeof text, s.backing_file);
    qcow2_append(text, sizeof text, "' with format '");
    qcow2_append(text, sizeof text, s.backing_fmt != nullptr ? s.backing_fmt : "(null)");
    qcow2_append(text, sizeof text, "': ");
    qcow2_append(text, sizeof text, why);
    return create_fail(target, st, text);
}

Qcow2HeaderState header_state(const Qcow2CreateSettings& s, const Qcow2Alloc& a, const Qcow2Tables& t) {
    Qcow2HeaderState h;
    h.version = s.version;
    h.cluster_bits = s.cluster_bits;
    h.size = s.size;
    h.l1_size = t.l1_size();
    h.l1_table_offset = t.l1_offset();
    h.refcount_table_offset = a.refcount_table_offset();
    h.refcount_table_clusters = static_cast<uint32_t>(a.refcount_table_clusters());
    h.incompatible_features = (s.data_file != nullptr ? QCOW2_INCOMPAT_DATA_FILE : 0) |
                              (s.compression_type != QCOW2_COMPRESSION_TYPE_ZLIB ? QCOW2_INCOMPAT_COMPRESSION : 0) |
                              (s.extended_l2 ? QCOW2_INCOMPAT_EXTL2 : 0);
    h.autoclear_features = s.data_file_raw ? QCOW2_AUTOCLEAR_DATA_FILE_RAW : 0;
    h.data_file = s.data_file;
    h.compatible_features = s.lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0;
    h.refcount_order = s.refcount_order;
    h.compression_type = s.compression_type;
    h.backing_file = s.backing_file;
    h.backing_fmt = s.backing_fmt;
    h.crypt_method = s.crypt_method;
    return h;
}

// qcow2_crypto_hdr_init_func / _write_func: the LUKS header in clusters of its own (allocated after
// the layout, zero-filled), written through the image.
class CryptoHeader final : public luks::LuksHeaderTarget {
public:
    CryptoHeader(Qcow2NewImage& img, CreateTarget& target) : img_(img), target_(target) {}
    Status init(uint64_t header_len) override {
        const int64_t r = img_.a.alloc_clusters(header_len);
        if (r < 0)
            return fail(r, "Cannot allocate cluster for LUKS header size ", header_len);
        img_.crypto_header_offset = static_cast<uint64_t>(r);
        img_.crypto_header_length = header_len;
        const uint64_t cs = img_.a.cluster_size();
        const int64_t z = img_.t.write_zeros(img_.crypto_header_offset, (header_len + cs - 1) / cs * cs);
        return z < 0 ? fail(z, "Could not zero fill encryption header", UINT64_MAX) : Status::Ok;
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (offset > img_.crypto_header_length || len > img_.crypto_header_length - offset)
            return create_fail(target_, Status::Invalid, "Request for data outside of extension header");
        return img_.a.write(img_.crypto_header_offset + offset, buf, len) < 0 ? Status::IoError : Status::Ok;
    }

private:
    // error_setg_errno's "<what>[<n>]: <strerror>".
    Status fail(int64_t err, const char* what, uint64_t n) {
        char text[guest::CREATE_MAX_REASON] = {};
        qcow2_append(text, sizeof text, what);
        if (n != UINT64_MAX)
            append_u64(text, sizeof text, n);
        qcow2_append(text, sizeof text, err == QCOW2_ENOMEM ? ": Cannot allocate memory"
                                        : err == QCOW2_EFBIG ? ": File too large"
                                                             : ": Input/output error");
        return create_fail(target_, err == QCOW2_ENOMEM ? Status::NoMemory : Status::IoError, text);
    }
    Qcow2NewImage& img_;
    CreateTarget& target_;
};

// qcow2_set_up_encryption: LUKS gets its header (luks plugin code) in clusters of its own; the
// legacy AES method has no header (crypto/block-qcow.c: the secret's first 16 bytes, zero-padded,
// are the AES-128-CBC key with plain64 IVs of guest sectors).
Status set_up_encryption(const CreateRequest& req, CreateTarget& target, Qcow2NewImage& img) {
    guest::Allocator& alloc = *req.allocator;
    img.cipher = guest::arena_new<luks::SectorCipher>(alloc);
    if (img.cipher == nullptr)
        return fail_errno(target, QCOW2_ENOMEM);
    if (img.s.crypt_method == QCOW_CRYPT_LUKS) {
        img.crypt_physical_offset = true;
        CryptoHeader out(img, target);
        uint64_t header_len = 0;
        return luks::luks_create_header(req, target, "encrypt.", out, img.cipher, &header_len);
    }
    if (req.secret == nullptr)
        return create_fail(target, Status::Invalid, "Parameter 'encrypt.key-secret' is required for cipher");
    uint8_t key[16] = {};
    for (size_t i = 0; i < sizeof key && i < req.secret_len && req.secret[i] != 0; ++i)
        key[i] = req.secret[i];
    luks::LuksHeader lh;
    lh.cipher_name = "aes";
    lh.cipher_mode = "cbc";
    lh.ivgen_alg = "plain64";
    const Status st = img.cipher->init(lh, key, sizeof key, true);
    __builtin_memset(key, 0, sizeof key);
    return st;
}

// The truncate from 0 to the virtual size: L1 table, then the preallocation.
int64_t lay_out(const Qcow2CreateSettings& s, Qcow2Tables& t, CreateTarget& target) {
    int64_t r = t.grow_l1(t.size_to_l1(s.size));
    if (r < 0)
        return r;
    // With a data file, preallocation maps the data 1:1 into it and forwards the length (and the
    // falloc/full filling) to it; the image file gets only metadata.
    if (s.data_device != nullptr)
        return s.prealloc == Prealloc::Off ? t.grow_data_file(s.size, Prealloc::Off, target)
                                           : t.prealloc_metadata(s.size, s.prealloc, &target);
    switch (s.prealloc) {
    case Prealloc::Off:
        return 0;
    case Prealloc::Metadata:
        return t.prealloc_metadata(s.size);
    case Prealloc::Falloc:
    case Prealloc::Full:
        return t.prealloc_data(s.size, s.prealloc, target);
    }
    return 0;
}

} // namespace

Status create_begin(const CreateRequest& req, CreateTarget& target, Qcow2NewImage** out) {
    Qcow2CreateSettings s;
    Status st = qcow2_create_settings(req, target, &s);
    if (st != Status::Ok)
        return st;
    // bdrv_co_truncate's own checks on the new length.
    if (s.size_negative)
        return create_fail(target, Status::Invalid, "Could not resize image: Image size cannot be negative");
    if (s.size > BDRV_MAX_LENGTH) {
        char text[guest::CREATE_MAX_REASON] = {};
        qcow2_append(text, sizeof text, "Could not resize image: offset(");
        append_u64(text, sizeof text, s.size);
        qcow2_append(text, sizeof text, ") exceeds maximum(");
        append_u64(text, sizeof text, BDRV_MAX_LENGTH);
        qcow2_append(text, sizeof text, ")");
        return create_fail(target, Status::TooLarge, text);
    }
    if (req.allocator == nullptr)
        return create_fail(target, Status::Invalid, "Could not create image: no allocator");

    guest::Allocator& alloc = *req.allocator;
    Qcow2NewImage* img = guest::arena_new<Qcow2NewImage>(alloc, s, target.image(), alloc);
    if (img == nullptr)
        return fail_errno(target, QCOW2_ENOMEM);
    int64_t r = img->a.start();
    if (r >= 0)
        r = img->t.init();
    if (r >= 0)
        r = lay_out(img->s, img->t, target);
    if (r < 0) {
        create_release(img, alloc);
        return fail_errno(target, r);
    }
    if (img->s.crypt_method != QCOW_CRYPT_NONE) {
        if (const Status enc = set_up_encryption(req, target, *img); enc != Status::Ok) {
            create_release(img, alloc);
            return enc;
        }
        // The LUKS header's allocation can leave holes (refcount blocks placed inside the range
        // first tried); the writer's qemu reopens the image and fills them first.
        img->a.reopen();
    }
    *out = img;
    return Status::Ok;
}

Status create_end(Qcow2NewImage& img, CreateTarget& target, guest::Allocator& alloc) {
    const Qcow2CreateSettings& s = img.s;
    Qcow2Alloc& a = img.a;
    Qcow2Tables& t = img.t;
    const uint64_t cs = a.cluster_size();
    guest::ScopedBuffer header(alloc, static_cast<size_t>(cs));
    if (header.p == nullptr)
        return fail_errno(target, QCOW2_ENOMEM);
    if (s.backing_file != nullptr && str_len(s.backing_file) > QCOW2_MAX_BACKING_FILE_NAME)
        return backing_error(target, s, "Invalid argument", Status::Invalid);
    Qcow2HeaderState hs = header_state(s, a, t);
    if (s.crypt_method == QCOW_CRYPT_LUKS) {
        hs.has_crypto_header = true;
        hs.crypto_header_offset = img.crypto_header_offset;
        hs.crypto_header_length = img.crypto_header_length;
    }
    if (!qcow2_build_header_cluster(hs, header.p, static_cast<size_t>(cs)))
        return backing_error(target, s, "No space left on device", Status::TooLarge);

    int64_t r = t.flush();
    if (r >= 0)
        r = a.write_refblocks();
    if (r >= 0)
        r = a.write(0, header.p, static_cast<size_t>(cs));
    if (r < 0)
        return fail_errno(target, r);
    if (a.written_length() < a.file_length() &&
        target.set_length(target.image(), a.file_length(), Prealloc::Off) != Status::Ok)
        return fail_errno(target, QCOW2_EIO);
    target.resolved_unit_size(cs);
    return Status::Ok;
}

void create_release(Qcow2NewImage* img, guest::Allocator& alloc) {
    luks::delete_wiped(alloc, img->cipher);
    guest::arena_delete(alloc, img);
}

Status create(const CreateRequest& req, CreateTarget& target) {
    Qcow2NewImage* img = nullptr;
    const Status st = create_begin(req, target, &img);
    if (st != Status::Ok)
        return st;
    const Status end = create_end(*img, target, *req.allocator);
    create_release(img, *req.allocator);
    return end;
}

} // namespace instar::qcow2
