// Creating LUKS1 images (qemu: crypto/block-luks.c qcrypto_block_luks_create, block/crypto.c) and
// writing their payload: create, convert -O luks (create_writer) and convert -n (open_writer).
#include "luks_create.h"

#include "luks_bytes.h"
#include "luks_crypto.h"
#include "luks_format.h"
#include "luks_header.h"

#include <instar/guest/arena_new.h>

namespace instar::luks {

using guest::BlockDevice;
using guest::CreateRequest;
using guest::CreateTarget;
using guest::ImageWriter;
using guest::Status;

namespace {

constexpr uint32_t HEADER_SECTORS = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR_SIZE;
constexpr uint32_t SALT_BYTES = 32;
constexpr uint32_t MIN_ITERATIONS = 1000;      // QCRYPTO_BLOCK_LUKS_MIN_{SLOT,MASTER}_KEY_ITERS
constexpr uint64_t DEFAULT_ITER_TIME_MS = 2000; // QCRYPTO_BLOCK_LUKS_DEFAULT_ITER_TIME_MS
// The writer encrypts at most this much per step (a bounce buffer from the arena).
constexpr size_t WRITE_CHUNK = 1u << 20;

bool eq(const char* a, const char* b) {
    while (*a && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}

// qemu's QAPI enum values for the options (QCryptoCipherAlgo, QCryptoCipherMode, QCryptoIVGenAlgo,
// QCryptoHashAlgo); 10.0 adds sm4 and sm3.
constexpr const char* CIPHER_ALGS[] = {"aes-128",     "aes-192",     "aes-256",     "des",         "3des",
                                       "cast5-128",   "serpent-128", "serpent-192", "serpent-256", "twofish-128",
                                       "twofish-192", "twofish-256", "sm4"};
constexpr const char* CIPHER_MODES[] = {"ecb", "cbc", "xts", "ctr"};
constexpr const char* IVGEN_ALGS[] = {"plain", "plain64", "essiv"};
constexpr const char* HASH_ALGS[] = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160", "sm3"};

template <size_t N>
bool one_of(const char* v, const char* const (&names)[N], uint32_t qemu_version) {
    for (size_t i = 0; i < N; ++i)
        if (eq(v, names[i]) && (qemu_version >= LUKS_SM_QEMU_VERSION || !(eq(v, "sm4") || eq(v, "sm3"))))
            return true;
    return false;
}

// create's refusal of an iter-time that scales past 32 bits.
bool scaled_iterations(const char* hash, size_t out_len, uint64_t iter_time, uint64_t divisor, uint32_t* out,
                       CreateTarget& t) {
    if (luks_iterations(hash, out_len, iter_time, divisor, out))
        return true;
    guest::create_fail(t, Status::Invalid, "PBKDF iterations too large: lower iter-time");
    return false;
}

// create_fail with a message joined from parts (qemu's error_setg formats).
template <size_t N>
Status fail_joined(CreateTarget& t, const char* const (&parts)[N]) {
    char text[guest::CREATE_MAX_REASON];
    size_t at = 0;
    for (const char* s : parts)
        for (size_t i = 0; s[i] != 0 && at + 1 < sizeof text; ++i) text[at++] = s[i];
    text[at] = 0;
    return guest::create_fail(t, Status::Unsupported, text);
}

void put_be32(uint8_t* p, uint32_t v) { store_be(p, v, 4); }

// qemu_uuid_generate + qemu_uuid_unparse: a random (version 4) UUID in lower-case text.
void make_uuid(KeyStream& rng, uint8_t out[40]) {
    uint8_t u[16];
    rng.fill(u, sizeof u);
    u[6] = static_cast<uint8_t>((u[6] & 0x0f) | 0x40);
    u[8] = static_cast<uint8_t>((u[8] & 0x3f) | 0x80);
    constexpr char HEX[] = "0123456789abcdef";
    size_t at = 0;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[at++] = '-';
        out[at++] = static_cast<uint8_t>(HEX[u[i] >> 4]);
        out[at++] = static_cast<uint8_t>(HEX[u[i] & 15]);
    }
}

void copy_str(uint8_t* dst, const char* a, const char* b = nullptr, const char* c = nullptr, const char* d = nullptr,
              const char* e = nullptr) {
    size_t at = 0;
    const char* const parts[] = {a, b, c, d, e};
    for (const char* s : parts)
        if (s != nullptr)
            for (size_t i = 0; s[i] != 0; ++i) dst[at++] = static_cast<uint8_t>(s[i]);
}


class LuksWriter final : public ImageWriter {
public:
    LuksWriter(BlockDevice& dev, guest::Allocator& alloc, uint64_t size, uint8_t* bounce)
        : dev_(dev), alloc_(alloc), size_(size), bounce_(bounce) {}
    LuksPayload payload;

    uint64_t cluster_size() const override { return 0; }
    // block/crypto.c has no bdrv_has_zero_init: a new LUKS image does not read as zeros.
    bool zero_init() const override { return false; }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        return put(offset, static_cast<const uint8_t*>(buf), len);
    }
    // qemu's crypto driver has no write_zeroes: the generic path writes encrypted zero sectors.
    Status write_zeroes(uint64_t offset, uint64_t len, bool) override {
        if (offset > size_ || len > size_ - offset) return Status::Invalid;
        return put(offset, nullptr, static_cast<size_t>(len));
    }
    Status write_compressed(uint64_t, const void*, size_t) override { return Status::Unsupported; }
    Status finish() override { return Status::Ok; }
    void close() override {
        __builtin_memset(bounce_, 0, WRITE_CHUNK);
        alloc_.deallocate(bounce_, WRITE_CHUNK);
        __builtin_memset(static_cast<void*>(&payload), 0, sizeof payload);
        guest::Allocator& a = alloc_;
        guest::arena_delete(a, this);
    }

private:
    // Encrypts [offset, offset + len) of the disk (src nullptr: zeros) unit by unit into the file.
    // LUKS1's unit is a 512-byte sector, and every write starts on one: a short last sector is
    // encrypted as a whole one and only its bytes inside the disk are written. A LUKS2 segment's
    // unit may be larger (4096): a unit the write covers only in part is read and decrypted first,
    // so the bytes around the write keep their contents (a unit past the file's end reads as zeros).
    Status put(uint64_t offset, const uint8_t* src, uint64_t len) {
        if (offset % LUKS_SECTOR_SIZE != 0 || offset > size_ || len > size_ - offset) return Status::Invalid;
        const uint32_t unit = payload.unit;
        while (len > 0) {
            const uint64_t first = offset / unit * unit;
            const size_t skip = static_cast<size_t>(offset - first);
            const size_t n = len < WRITE_CHUNK - skip ? static_cast<size_t>(len) : WRITE_CHUNK - skip;
            const size_t whole = (skip + n + unit - 1) / unit * unit;
            __builtin_memset(bounce_, 0, whole);
            if (payload.merge && (skip != 0 || (skip + n) % unit != 0))
                if (const Status st = merge_edges(first, skip, n, whole); st != Status::Ok) return st;
            if (src != nullptr) {
                __builtin_memcpy(bounce_ + skip, src, n);
                src += n;
            } else if (payload.merge) {
                __builtin_memset(bounce_ + skip, 0, n);
            }
            payload.cipher.encrypt(payload.iv_base + first / LUKS_SECTOR_SIZE, bounce_, whole);
            // LUKS1: from the write's start to its end; LUKS2: whole units (the disk is whole units).
            const size_t out = payload.merge || payload.whole_units ? whole : n;
            if (const Status st = dev_.write(payload.offset + first, bounce_, out); st != Status::Ok) return st;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }

    // The plaintext of the first and last units of [first, first + whole) into the bounce buffer,
    // where the write [first + skip, first + skip + n) covers them only in part.
    Status merge_edges(uint64_t first, size_t skip, size_t n, size_t whole) {
        const uint32_t unit = payload.unit;
        auto load = [&](size_t at) -> Status { // one unit at bounce_ + at
            const uint64_t pos = payload.offset + first + at;
            if (pos >= dev_.size() || dev_.size() - pos < unit) return Status::Ok; // past the end: zeros
            if (const Status st = dev_.read(pos, bounce_ + at, unit); st != Status::Ok) return st;
            payload.decryptor.decrypt(payload.iv_base + (first + at) / LUKS_SECTOR_SIZE, bounce_ + at, unit);
            return Status::Ok;
        };
        if (skip != 0)
            if (const Status st = load(0); st != Status::Ok) return st;
        if ((skip + n) % unit != 0 && (whole > unit || skip == 0))
            if (const Status st = load(whole - unit); st != Status::Ok) return st;
        return Status::Ok;
    }

    BlockDevice& dev_;
    guest::Allocator& alloc_;
    uint64_t size_;
    uint8_t* bounce_;
};

// An option's key with its prefix ("encrypt.cipher-alg"): both are short literals.
struct Key {
    char text[48] = {};
    Key(const char* prefix, const char* name) {
        size_t at = 0;
        const char* const parts[] = {prefix, name};
        for (const char* s : parts)
            for (size_t i = 0; s[i] != 0 && at + 1 < sizeof text; ++i) text[at++] = s[i];
    }
};

const char* option(const CreateRequest& req, const char* prefix, const char* name) {
    return guest::create_option(req, Key(prefix, name).text);
}

Status fail_text(CreateTarget& t, Status st, const char* a, const char* b, const char* c = "") {
    char text[guest::CREATE_MAX_REASON];
    size_t at = 0;
    const char* const parts[] = {a, b, c};
    for (const char* s : parts)
        for (size_t i = 0; s[i] != 0 && at + 1 < sizeof text; ++i) text[at++] = s[i];
    text[at] = 0;
    return guest::create_fail(t, st, text);
}

} // namespace

// PBKDF2 blocks one second of compute gives (qemu measures this: qcrypto_pbkdf2_count_iters);
// instar's fixed rule, from qemu 7.2's figures on the build machine (sha256: ~37k key slot
// iterations of a 64-byte key for iter-time=10). Divergence luks-iter-time.
uint64_t blocks_per_second(const char* hash) {
    if (eq(hash, "sha1") || eq(hash, "md5")) return 8'000'000;
    if (eq(hash, "ripemd160")) return 4'000'000;
    if (eq(hash, "sha224") || eq(hash, "sha256")) return 7'500'000;
    return 2'500'000; // sha384, sha512, sm3
}

bool luks_iterations(const char* hash, size_t out_len, uint64_t iter_time, uint64_t divisor, uint32_t* out) {
    const size_t dl = luks_digest_len(hash);
    const uint64_t per_second = blocks_per_second(hash) / ((out_len + dl - 1) / dl);
    // iter_time < 2^32 (callers check): no overflow.
    const uint64_t iters = per_second * iter_time / 1000 / divisor;
    if (iters > UINT32_MAX)
        return false;
    *out = iters < MIN_ITERATIONS ? MIN_ITERATIONS : static_cast<uint32_t>(iters);
    return true;
}

Status luks_seal_key(const LuksHeader& h, const uint8_t* master_key, const uint8_t* pass, size_t pass_len,
                     const uint8_t* salt, uint32_t iterations, KeyStream& rng, guest::Allocator& alloc,
                     uint8_t* out) {
    const size_t split_len = size_t{h.key_bytes} * LUKS_STRIPES;
    auto* random = static_cast<uint8_t*>(alloc.allocate(split_len, 16));
    if (random == nullptr) return Status::NoMemory;
    rng.fill(random, split_len);
    uint8_t slot_key[LUKS_MAX_KEY_BYTES];
    luks_pbkdf2(h.hash_alg, pass, pass_len, salt, SALT_BYTES, iterations, slot_key, h.key_bytes);
    Status st = af_split(h.hash_alg, h.key_bytes, LUKS_STRIPES, master_key, random, out) ? Status::Ok
                                                                                        : Status::Unsupported;
    auto* slot_cipher = st == Status::Ok ? guest::arena_new<SectorCipher>(alloc) : nullptr;
    if (st == Status::Ok && slot_cipher == nullptr) st = Status::NoMemory;
    if (st == Status::Ok) st = slot_cipher->init(h, slot_key, h.key_bytes, true);
    if (st == Status::Ok) slot_cipher->encrypt(0, out, split_len);
    delete_wiped(alloc, slot_cipher);
    __builtin_memset(random, 0, split_len);
    alloc.deallocate(random, split_len);
    __builtin_memset(slot_key, 0, sizeof slot_key);
    return st;
}

// qcrypto_block_luks_create up to its first write: the options checked, the keys, salts and
// iterations chosen, the LUKS1 header filled in.
Status luks_plan_header(const CreateRequest& req, CreateTarget& t, const char* prefix, LuksPlan* p) {
    const uint32_t v = req.qemu_version;
    const char* cipher_alg = option(req, prefix, "cipher-alg");
    const char* cipher_mode = option(req, prefix, "cipher-mode");
    const char* ivgen_alg = option(req, prefix, "ivgen-alg");
    const char* ivgen_hash_alg = option(req, prefix, "ivgen-hash-alg");
    const char* hash_alg = option(req, prefix, "hash-alg");
    // The QAPI visitor checks every value before the driver runs.
    struct Check {
        const char* key;
        const char* value;
        bool ok;
    };
    const Check checks[] = {
        {"cipher-alg", cipher_alg, cipher_alg == nullptr || one_of(cipher_alg, CIPHER_ALGS, v)},
        {"cipher-mode", cipher_mode, cipher_mode == nullptr || one_of(cipher_mode, CIPHER_MODES, v)},
        {"ivgen-alg", ivgen_alg, ivgen_alg == nullptr || one_of(ivgen_alg, IVGEN_ALGS, v)},
        {"ivgen-hash-alg", ivgen_hash_alg, ivgen_hash_alg == nullptr || one_of(ivgen_hash_alg, HASH_ALGS, v)},
        {"hash-alg", hash_alg, hash_alg == nullptr || one_of(hash_alg, HASH_ALGS, v)},
    };
    for (const Check& c : checks) {
        if (c.ok) continue;
        char text[guest::CREATE_MAX_REASON];
        size_t at = 0;
        const char* const parts[] = {"Parameter '", c.key, "' does not accept value '", c.value, "'"};
        for (const char* s : parts)
            for (size_t i = 0; s[i] != 0 && at + 1 < sizeof text; ++i) text[at++] = s[i];
        text[at] = 0;
        return guest::create_fail(t, Status::Invalid, text);
    }
    uint64_t iter_time = DEFAULT_ITER_TIME_MS;
    if (!guest::create_option_u64(req, Key(prefix, "iter-time").text, DEFAULT_ITER_TIME_MS, &iter_time))
        return fail_text(t, Status::Invalid, "Parameter '", Key(prefix, "iter-time").text, "' expects a number");
    // qemu-img 10.0 lists detached-header but its create path cannot take it: the QAPI visitor of
    // QCryptoBlockCreateOptions has no such member, so any value (on or off) is refused after the
    // values above and before the secret is looked up, and no file is made (only blockdev-create
    // can make a detached header). 7.2's option table lacks the key (refused by the host).
    if (guest::create_option(req, Key(prefix, "detached-header").text) != nullptr)
        return fail_text(t, Status::Invalid, "Parameter '", Key(prefix, "detached-header").text, "' is unexpected");
    // qcrypto_block_luks_create's defaults.
    if (cipher_alg == nullptr) cipher_alg = "aes-256";
    if (cipher_mode == nullptr) cipher_mode = "xts";
    if (ivgen_alg == nullptr) ivgen_alg = "plain64";
    if (hash_alg == nullptr) hash_alg = "sha256";
    const bool has_ivgen_hash = ivgen_hash_alg != nullptr || eq(ivgen_alg, "essiv");
    if (ivgen_hash_alg == nullptr && eq(ivgen_alg, "essiv")) ivgen_hash_alg = "sha256";
    if (req.secret == nullptr)
        return fail_text(t, Status::Invalid, "Parameter '", Key(prefix, "key-secret").text, "' is required for cipher");
    if (iter_time > UINT32_MAX)
        return guest::create_fail(t, Status::Invalid, "PBKDF iterations too large: lower iter-time");

    // Cipher name and key size (qcrypto_block_luks_cipher_alg_lookup, qcrypto_cipher_get_key_len).
    const char* cipher_name = nullptr;
    uint32_t key_bytes = 0;
    // des, 3des; sm4 (qemu 10.0 has it only with a crypto library that has SM4: Debian's has not).
    if (!luks_cipher_for_alg(cipher_alg, &cipher_name, &key_bytes))
        return fail_joined(t, {"Algorithm '", cipher_alg, "' not supported"});
    // qcrypto_block_luks_essiv_cipher: the IV cipher is the cipher itself when the digest is its key
    // size, else the same family (aes, serpent, twofish) at the digest's size.
    if (eq(ivgen_alg, "essiv")) {
        const size_t dl = luks_digest_len(ivgen_hash_alg);
        const bool found = luks_essiv_cipher_exists(cipher_name, key_bytes, static_cast<uint32_t>(dl));
        if (!found && eq(cipher_name, "cast5"))
            return fail_joined(t, {"Cipher ", cipher_alg, " not supported with essiv"});
        if (!found) {
            const char digits[] = {static_cast<char>('0' + dl / 10 % 10), static_cast<char>('0' + dl % 10), 0};
            const char* family = eq(cipher_name, "aes") ? "AES" : eq(cipher_name, "serpent") ? "Serpent" : "Twofish";
            return fail_joined(t, {"No ", family, " cipher with key size ", digits, " available"});
        }
    }
    // qemu's nettle backend: xts needs 16-byte blocks (cast5's are 8).
    if (eq(cipher_mode, "xts") && eq(cipher_name, "cast5"))
        return guest::create_fail(t, Status::Unsupported, "Unsupported cipher mode xts");
    if (eq(cipher_mode, "xts")) key_bytes *= 2;
    // qemu-img aborts on a key whose 4000 stripes are not whole sectors (any 192-bit key outside xts:
    // 187.5 sectors of key material; crypto/block.c asserts): such an image would be useless to qemu.
    // Divergence luks-aes-192 (serpent-192, twofish-192 too).
    if (uint64_t{key_bytes} * LUKS_STRIPES % LUKS_SECTOR_SIZE != 0)
        return fail_joined(
            t, {"instar does not create ", cipher_alg, " LUKS images outside xts: qemu-img aborts on their key material"});

    LuksHeaderDisk& d = p->disk;
    const uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
    __builtin_memcpy(d.magic, magic, sizeof magic);
    d.version[1] = 1;
    copy_str(d.cipher_name, cipher_name);
    // "xts-plain64", or with an IV hash "cbc-essiv:sha256" (at most 3 + 1 + 7 + 1 + 9 bytes of 32).
    if (has_ivgen_hash) copy_str(d.cipher_mode, cipher_mode, "-", ivgen_alg, ":", ivgen_hash_alg);
    else copy_str(d.cipher_mode, cipher_mode, "-", ivgen_alg);
    copy_str(d.hash_spec, hash_alg);

    KeyStream& rng = p->rng;
    uint8_t* master_key = p->master_key;
    make_uuid(rng, d.uuid);
    rng.fill(d.master_key_salt, SALT_BYTES);
    rng.fill(master_key, key_bytes);
    uint32_t& mk_iters = p->mk_iters;
    uint32_t& slot_iters = p->slot_iters;
    // Master key digest: 1/8 of iter-time (qemu: "matches cryptsetup"); the slot: all of it.
    if (!scaled_iterations(hash_alg, LUKS_DIGEST_BYTES, iter_time, 8, &mk_iters, t) ||
        !scaled_iterations(hash_alg, key_bytes, iter_time, 1, &slot_iters, t))
        return Status::Invalid;
    luks_pbkdf2(hash_alg, master_key, key_bytes, d.master_key_salt, SALT_BYTES, mk_iters, d.master_key_digest,
                LUKS_DIGEST_BYTES);
    put_be32(d.master_key_len, key_bytes);
    put_be32(d.master_key_iterations, mk_iters);
    const uint64_t split_len = uint64_t{key_bytes} * LUKS_STRIPES;
    const uint32_t split_sectors =
        static_cast<uint32_t>(((split_len + LUKS_SECTOR_SIZE - 1) / LUKS_SECTOR_SIZE + HEADER_SECTORS - 1) /
                              HEADER_SECTORS * HEADER_SECTORS);
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS; ++i) {
        LuksKeySlotDisk& s = d.key_slots[i];
        put_be32(s.active, LUKS_KEY_SLOT_DISABLED);
        put_be32(s.key_offset_sector, HEADER_SECTORS + i * split_sectors);
        put_be32(s.stripes, LUKS_STRIPES);
    }
    const uint32_t payload_sectors = HEADER_SECTORS + LUKS_NUM_KEY_SLOTS * split_sectors;
    put_be32(d.payload_offset_sector, payload_sectors);

    // Key slot 0 (qcrypto_block_luks_store_key).
    LuksKeySlotDisk& s0 = d.key_slots[0];
    rng.fill(s0.salt, SALT_BYTES);
    put_be32(s0.iterations, slot_iters);
    put_be32(s0.active, LUKS_KEY_SLOT_ENABLED);
    if (const Status st = luks_header_parse(reinterpret_cast<const uint8_t*>(&d), sizeof d, &p->h); st != Status::Ok)
        return guest::create_fail(t, Status::Unsupported, "this LUKS cipher, mode or hash combination is invalid");
    return Status::Ok;
}

Status luks_seal_failed(CreateTarget& t, Status st) {
    if (st == Status::Unsupported)
        return guest::create_fail(t, st, "this LUKS cipher, mode or hash is not supported by instar yet");
    return st;
}

// qcrypto_block_luks_create: the header, key slot 0 holding the master key for the passphrase.
Status luks_create_header(const CreateRequest& req, CreateTarget& t, const char* prefix, LuksHeaderTarget& out,
                          SectorCipher* payload, uint64_t* header_len) {
    if (req.allocator == nullptr) return Status::Invalid;
    auto* p = guest::arena_new<LuksPlan>(*req.allocator, req.random);
    if (p == nullptr) return Status::NoMemory;
    Status st = luks_plan_header(req, t, prefix, p);
    *header_len = p->h.payload_offset;
    if (st == Status::Ok) st = out.init(*header_len);
    if (st != Status::Ok) { // refused, with the reason already given to `t`
        delete_wiped(*req.allocator, p);
        return st;
    }
    const LuksHeader& h = p->h;
    const uint64_t split_len = uint64_t{h.key_bytes} * LUKS_STRIPES;
    // The split key: 4000 stripes (the first 3999 random), encrypted with the slot key.
    auto* split = static_cast<uint8_t*>(req.allocator->allocate(split_len, 16));
    if (split == nullptr) st = Status::NoMemory;
    if (st == Status::Ok)
        st = luks_seal_key(h, p->master_key, req.secret, req.secret_len, p->disk.key_slots[0].salt, p->slot_iters,
                           p->rng, *req.allocator, split);
    if (st == Status::Ok)
        st = out.write(uint64_t{HEADER_SECTORS} * LUKS_SECTOR_SIZE, split, static_cast<size_t>(split_len));
    if (st == Status::Ok) st = out.write(0, &p->disk, sizeof p->disk);
    if (st == Status::Ok) st = payload->init(h, p->master_key, h.key_bytes, true);
    if (split != nullptr) {
        __builtin_memset(split, 0, split_len);
        req.allocator->deallocate(split, split_len);
    }
    delete_wiped(*req.allocator, p);
    return luks_seal_failed(t, st);
}

Status luks_new_writer(BlockDevice& dev, guest::Allocator& alloc, uint64_t size, const LuksPayload& payload,
                       ImageWriter** out) {
    auto* bounce = static_cast<uint8_t*>(alloc.allocate(WRITE_CHUNK, 16));
    if (bounce == nullptr) return Status::NoMemory;
    auto* w = guest::arena_new<LuksWriter>(alloc, dev, alloc, size, bounce);
    if (w == nullptr) {
        alloc.deallocate(bounce, WRITE_CHUNK);
        return Status::NoMemory;
    }
    w->payload = payload;
    *out = w;
    return Status::Ok;
}

Status luks_payload_writer(BlockDevice& dev, guest::Allocator& alloc, uint64_t payload_offset, uint64_t size,
                           uint32_t unit, uint64_t iv_base, const SectorCipher& encryptor,
                           const SectorCipher& decryptor, ImageWriter** out) {
    if (unit < LUKS_SECTOR_SIZE || unit > WRITE_CHUNK || (unit & (unit - 1)) != 0) return Status::Invalid;
    auto* payload = guest::arena_new<LuksPayload>(alloc);
    if (payload == nullptr) return Status::NoMemory;
    payload->cipher = encryptor;
    payload->decryptor = decryptor;
    payload->offset = payload_offset;
    payload->unit = unit;
    payload->iv_base = iv_base;
    payload->merge = true;
    const Status st = luks_new_writer(dev, alloc, size, *payload, out);
    delete_wiped(alloc, payload);
    return st;
}

Status open_writer(const guest::OpenRequest& req, ImageWriter** out) {
    if (req.image == nullptr || req.allocator == nullptr || out == nullptr) return Status::Invalid;
    if (req.secret == nullptr) {
        guest::say_reason(req.reasons, "Parameter 'key-secret' is required for cipher");
        return Status::Unsupported;
    }
    auto* payload = guest::arena_new<LuksPayload>(*req.allocator);
    if (payload == nullptr) return Status::NoMemory;
    LuksHeader h;
    uint8_t master_key[LUKS_MAX_KEY_BYTES];
    Status st = luks_unlock(*req.image, 0, *req.allocator, req.secret, req.secret_len, &h, &payload->cipher,
                            req.reasons, master_key, req.qemu_version);
    if (st == Status::Ok) st = payload->cipher.init(h, master_key, h.key_bytes, true);
    __builtin_memset(master_key, 0, sizeof master_key);
    payload->offset = h.payload_offset;
    const uint64_t file = req.image->size();
    if (st == Status::Ok)
        st = luks_new_writer(*req.image, *req.allocator, file > h.payload_offset ? file - h.payload_offset : 0, *payload,
                        out);
    delete_wiped(*req.allocator, payload);
    return st;
}

} // namespace instar::luks
