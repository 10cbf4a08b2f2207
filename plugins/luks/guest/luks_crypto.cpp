// LUKS1 cryptography through nettle (luks_crypto.h).
#include "luks_crypto.h"

#include <nettle/aes.h>
#include <nettle/cast128.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/md5.h>
#include <nettle/nettle-meta.h>
#include <nettle/pbkdf2.h>
#include <nettle/ripemd160.h>
#include <nettle/serpent.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/sm3.h>
#include <nettle/twofish.h>
#include <nettle/xts.h>

namespace instar::luks {

using guest::Status;

namespace {

bool eq(const char* a, const char* b) {
    while (*a && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}

// ---- Hashes: qemu's QCryptoHashAlgo names over nettle's generic hash descriptors (sm3: qemu 9.0+,
// whose option parsing admits it; nettle 3.8 has it).

struct HashDesc {
    const char* name;
    const nettle_hash* hash;
};
const HashDesc HASHES[] = {{"md5", &nettle_md5},       {"sha1", &nettle_sha1},     {"sha224", &nettle_sha224},
                           {"sha256", &nettle_sha256}, {"sha384", &nettle_sha384}, {"sha512", &nettle_sha512},
                           {"ripemd160", &nettle_ripemd160}, {"sm3", &nettle_sm3}};

// Room for any of those hashes' state (sha512's is the largest).
constexpr size_t HASH_CTX_BYTES = 256;
static_assert(sizeof(sha512_ctx) <= HASH_CTX_BYTES && sizeof(md5_ctx) <= HASH_CTX_BYTES &&
                  sizeof(ripemd160_ctx) <= HASH_CTX_BYTES && sizeof(sha256_ctx) <= HASH_CTX_BYTES &&
                  sizeof(sha1_ctx) <= HASH_CTX_BYTES && sizeof(sm3_ctx) <= HASH_CTX_BYTES,
              "nettle hash context sizes");
static_assert(SHA512_DIGEST_SIZE == LUKS_MAX_DIGEST_BYTES, "longest digest");

const nettle_hash* find_hash(const char* name) {
    for (const HashDesc& h : HASHES)
        if (eq(name, h.name))
            return h.hash;
    return nullptr;
}

// hash(prefix[plen] || data[len]) into out (the hash's digest size).
void hash2(const nettle_hash* h, const uint8_t* prefix, size_t plen, const uint8_t* data, size_t len, uint8_t* out) {
    alignas(16) uint8_t ctx[HASH_CTX_BYTES];
    h->init(ctx);
    h->update(ctx, plen, prefix);
    h->update(ctx, len, data);
    h->digest(ctx, h->digest_size, out);
    __builtin_memset(ctx, 0, sizeof ctx);
}

// HMAC over any table hash, in the shape nettle's generic PBKDF2 wants (one context pointer).
struct Hmac {
    const nettle_hash* hash;
    alignas(16) uint8_t outer[HASH_CTX_BYTES];
    alignas(16) uint8_t inner[HASH_CTX_BYTES];
    alignas(16) uint8_t state[HASH_CTX_BYTES];
};
void hmac_upd(void* ctx, size_t len, const uint8_t* data) {
    auto* m = static_cast<Hmac*>(ctx);
    hmac_update(m->state, m->hash, len, data);
}
void hmac_dig(void* ctx, size_t len, uint8_t* out) {
    auto* m = static_cast<Hmac*>(ctx);
    hmac_digest(m->outer, m->inner, m->state, m->hash, len, out);
}

} // namespace

// ---- Block ciphers: qemu's LUKS cipher names and key sizes over nettle's key schedules.

using SetKeyFn = void (*)(void* ctx, const uint8_t* key);

struct BlockCipherDesc {
    const char* name;   // the LUKS header's cipher-name
    uint32_t key_bytes; // one key (xts uses two)
    size_t block;       // block size
    SetKeyFn set_encrypt;
    SetKeyFn set_decrypt;
    nettle_cipher_func* encrypt;
    nettle_cipher_func* decrypt;
};

namespace {

// Adapters from nettle's typed functions to the generic table shape.
template <typename Ctx, void (*F)(Ctx*, const uint8_t*)>
void set_key(void* ctx, const uint8_t* key) {
    F(static_cast<Ctx*>(ctx), key);
}
template <typename Ctx, void (*F)(const Ctx*, size_t, uint8_t*, const uint8_t*)>
void run(const void* ctx, size_t len, uint8_t* dst, const uint8_t* src) {
    F(static_cast<const Ctx*>(ctx), len, dst, src);
}

template <typename Ctx, void (*SetE)(Ctx*, const uint8_t*), void (*SetD)(Ctx*, const uint8_t*),
          void (*Enc)(const Ctx*, size_t, uint8_t*, const uint8_t*),
          void (*Dec)(const Ctx*, size_t, uint8_t*, const uint8_t*)>
constexpr BlockCipherDesc row(const char* name, uint32_t key_bytes, size_t block) {
    static_assert(sizeof(Ctx) <= LUKS_CIPHER_CTX_BYTES, "nettle context size");
    return {name, key_bytes, block, set_key<Ctx, SetE>, set_key<Ctx, SetD>, run<Ctx, Enc>, run<Ctx, Dec>};
}

// qemu's qcrypto_block_luks_cipher_name_map (sm4 is not here: Debian 12's nettle 3.8 has none).
const BlockCipherDesc CIPHERS[] = {
    row<aes128_ctx, aes128_set_encrypt_key, aes128_set_decrypt_key, aes128_encrypt, aes128_decrypt>("aes", 16, 16),
    row<aes192_ctx, aes192_set_encrypt_key, aes192_set_decrypt_key, aes192_encrypt, aes192_decrypt>("aes", 24, 16),
    row<aes256_ctx, aes256_set_encrypt_key, aes256_set_decrypt_key, aes256_encrypt, aes256_decrypt>("aes", 32, 16),
    row<cast128_ctx, cast128_set_key, cast128_set_key, cast128_encrypt, cast128_decrypt>("cast5", 16, 8),
    row<serpent_ctx, serpent128_set_key, serpent128_set_key, serpent_encrypt, serpent_decrypt>("serpent", 16, 16),
    row<serpent_ctx, serpent192_set_key, serpent192_set_key, serpent_encrypt, serpent_decrypt>("serpent", 24, 16),
    row<serpent_ctx, serpent256_set_key, serpent256_set_key, serpent_encrypt, serpent_decrypt>("serpent", 32, 16),
    row<twofish_ctx, twofish128_set_key, twofish128_set_key, twofish_encrypt, twofish_decrypt>("twofish", 16, 16),
    row<twofish_ctx, twofish192_set_key, twofish192_set_key, twofish_encrypt, twofish_decrypt>("twofish", 24, 16),
    row<twofish_ctx, twofish256_set_key, twofish256_set_key, twofish_encrypt, twofish_decrypt>("twofish", 32, 16),
};

const BlockCipherDesc* find_cipher(const char* name, size_t key_bytes) {
    for (const BlockCipherDesc& c : CIPHERS)
        if (c.key_bytes == key_bytes && eq(name, c.name))
            return &c;
    return nullptr;
}

constexpr uint32_t MODE_XTS = 1, MODE_CBC = 2, MODE_ECB = 3, MODE_CTR = 4;
constexpr uint32_t IV_NONE = 0, IV_PLAIN = 1, IV_PLAIN64 = 2, IV_ESSIV = 3;

// qemu's XTS needs 16-byte blocks (crypto/cipher-nettle.c.inc: "Unsupported cipher mode").
constexpr size_t XTS_BLOCK = 16;

} // namespace

bool luks_pbkdf2(const char* hash, const uint8_t* password, size_t password_len, const uint8_t* salt, size_t salt_len,
            uint32_t iterations, uint8_t* out, size_t out_len) {
    const nettle_hash* h = find_hash(hash);
    if (iterations == 0 || h == nullptr) return false;
    Hmac m;
    m.hash = h;
    hmac_set_key(m.outer, m.inner, m.state, h, password_len, password);
    pbkdf2(&m, hmac_upd, hmac_dig, h->digest_size, iterations, salt_len, salt, out_len, out);
    __builtin_memset(static_cast<void*>(&m), 0, sizeof m);
    return true;
}

namespace {

// qcrypto_afsplit_hash: each digest-sized piece i of `block` becomes hash(be32(i) || piece).
void af_diffuse(const nettle_hash* h, uint8_t* block, size_t block_len) {
    const size_t dl = h->digest_size;
    uint8_t digest[LUKS_MAX_DIGEST_BYTES];
    const size_t count = (block_len + dl - 1) / dl;
    for (size_t i = 0; i < count; ++i) {
        const size_t this_len = i + 1 == count && block_len % dl ? block_len % dl : dl;
        const uint8_t be[4] = {static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16),
                               static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
        hash2(h, be, 4, block + i * dl, this_len, digest);
        __builtin_memcpy(block + i * dl, digest, this_len);
    }
}

} // namespace

size_t luks_digest_len(const char* hash) {
    const nettle_hash* h = find_hash(hash);
    return h == nullptr ? 0 : h->digest_size;
}

bool luks_hash(const char* hash, const uint8_t* data, size_t len, uint8_t* out) {
    const nettle_hash* h = find_hash(hash);
    if (h == nullptr) return false;
    hash2(h, data, 0, data, len, out);
    return true;
}

bool af_merge(const char* hash, size_t block_len, uint32_t stripes, const uint8_t* in, uint8_t* out) {
    const nettle_hash* h = find_hash(hash);
    if (h == nullptr || stripes == 0 || block_len > LUKS_MAX_KEY_BYTES) return false;
    uint8_t block[LUKS_MAX_KEY_BYTES] = {};
    for (uint32_t s = 0; s + 1 < stripes; ++s) {
        for (size_t k = 0; k < block_len; ++k) block[k] ^= in[s * block_len + k];
        af_diffuse(h, block, block_len);
    }
    for (size_t k = 0; k < block_len; ++k) out[k] = block[k] ^ in[size_t{stripes - 1} * block_len + k];
    return true;
}

bool af_split(const char* hash, size_t block_len, uint32_t stripes, const uint8_t* in, const uint8_t* random,
              uint8_t* out) {
    const nettle_hash* h = find_hash(hash);
    if (h == nullptr || stripes == 0 || block_len > LUKS_MAX_KEY_BYTES) return false;
    uint8_t block[LUKS_MAX_KEY_BYTES] = {};
    for (uint32_t s = 0; s + 1 < stripes; ++s) {
        __builtin_memcpy(out + size_t{s} * block_len, random + size_t{s} * block_len, block_len);
        for (size_t k = 0; k < block_len; ++k) block[k] ^= out[size_t{s} * block_len + k];
        af_diffuse(h, block, block_len);
    }
    for (size_t k = 0; k < block_len; ++k) out[size_t{stripes - 1} * block_len + k] = in[k] ^ block[k];
    __builtin_memset(block, 0, sizeof block);
    return true;
}

KeyStream::KeyStream(const uint8_t seed[32]) {
    static_assert(sizeof(aes256_ctx) <= sizeof ctx_, "nettle context size");
    aes256_set_encrypt_key(reinterpret_cast<aes256_ctx*>(ctx_), seed);
}

void KeyStream::fill(uint8_t* out, size_t len) {
    __builtin_memset(out, 0, len);
    ctr_crypt(ctx_, run<aes256_ctx, aes256_encrypt>, AES_BLOCK_SIZE, counter_, len, out, out);
}

Status SectorCipher::init(const LuksHeader& h, const uint8_t* key, size_t key_len, bool for_encryption) {
    if (h.cipher_name == nullptr || h.cipher_mode == nullptr) return Status::Unsupported;
    if (eq(h.cipher_mode, "xts")) mode_ = MODE_XTS;
    else if (eq(h.cipher_mode, "cbc")) mode_ = MODE_CBC;
    else if (eq(h.cipher_mode, "ecb")) mode_ = MODE_ECB;
    else if (eq(h.cipher_mode, "ctr")) mode_ = MODE_CTR;
    else return Status::Unsupported;
    ivgen_ = IV_NONE;
    if (h.ivgen_alg == nullptr) ivgen_ = IV_NONE;
    else if (eq(h.ivgen_alg, "plain")) ivgen_ = IV_PLAIN;
    else if (eq(h.ivgen_alg, "plain64")) ivgen_ = IV_PLAIN64;
    else if (eq(h.ivgen_alg, "essiv")) ivgen_ = IV_ESSIV;
    // XTS: the data key, then the tweak key, each the cipher's key size.
    const size_t one_key = mode_ == MODE_XTS ? key_len / 2 : key_len;
    if (mode_ == MODE_XTS && key_len % 2 != 0) return Status::Unsupported;
    cipher_ = find_cipher(h.cipher_name, one_key);
    if (cipher_ == nullptr) return Status::Unsupported;
    if (mode_ == MODE_XTS && cipher_->block != XTS_BLOCK) return Status::Unsupported;
    // ECB and CTR use the encrypting schedule both ways; so do ciphers without a separate one.
    const bool enc_schedule = for_encryption || mode_ == MODE_CTR;
    (enc_schedule ? cipher_->set_encrypt : cipher_->set_decrypt)(ctx_, key);
    if (mode_ == MODE_XTS) cipher_->set_encrypt(tweak_ctx_, key + one_key);
    essiv_ = nullptr;
    if (ivgen_ == IV_ESSIV) {
        // qcrypto_block_luks_essiv_cipher + qcrypto_ivgen_essiv_init: the IV cipher is the data cipher
        // when the digest is its key size, else the same family at the digest's key size; it is keyed
        // with hash(whole master key).
        const char* ivhash = h.ivgen_hash_alg ? h.ivgen_hash_alg : "sha256";
        const nettle_hash* hh = find_hash(ivhash);
        if (hh == nullptr) return Status::Unsupported;
        essiv_ = hh->digest_size == cipher_->key_bytes ? cipher_ : nullptr;
        if (essiv_ == nullptr && !eq(cipher_->name, "cast5")) essiv_ = find_cipher(cipher_->name, hh->digest_size);
        if (essiv_ == nullptr) return Status::Unsupported;
        uint8_t digest[LUKS_MAX_DIGEST_BYTES];
        hash2(hh, key, 0, key, key_len, digest);
        essiv_->set_encrypt(essiv_ctx_, digest);
        __builtin_memset(digest, 0, sizeof digest);
    }
    return Status::Ok;
}

// The IV of one sector: qemu's niv is the cipher's block size (none for ecb).
void SectorCipher::iv_for(uint64_t sector, uint8_t iv[LUKS_MAX_BLOCK_BYTES]) const {
    __builtin_memset(iv, 0, LUKS_MAX_BLOCK_BYTES);
    if (ivgen_ == IV_NONE || mode_ == MODE_ECB) return;
    const size_t niv = cipher_->block;
    const uint64_t s = ivgen_ == IV_PLAIN ? (sector & 0xffffffffu) : sector;
    const size_t width = ivgen_ == IV_PLAIN ? 4 : 8;
    if (ivgen_ != IV_ESSIV) {
        for (size_t i = 0; i < width && i < niv; ++i) iv[i] = static_cast<uint8_t>(s >> (8 * i));
        return;
    }
    // qcrypto_ivgen_essiv_calculate: le64(sector) zero-padded to the IV cipher's block, encrypted,
    // cut or zero-padded to niv.
    uint8_t data[LUKS_MAX_BLOCK_BYTES] = {};
    for (size_t i = 0; i < 8 && i < essiv_->block; ++i) data[i] = static_cast<uint8_t>(s >> (8 * i));
    essiv_->encrypt(essiv_ctx_, essiv_->block, data, data);
    __builtin_memcpy(iv, data, essiv_->block < niv ? essiv_->block : niv);
}

void SectorCipher::crypt(uint64_t first_sector, uint8_t* data, size_t len, bool enc) const {
    const size_t bs = cipher_->block;
    for (size_t at = 0; at < len; at += unit_) {
        const size_t n = len - at < unit_ ? len - at : unit_;
        const size_t whole = n / bs * bs;
        uint8_t iv[LUKS_MAX_BLOCK_BYTES];
        iv_for(first_sector + at / unit_ * iv_step_, iv);
        uint8_t* p = data + at;
        if (mode_ == MODE_XTS) {
            if (n < XTS_BLOCK) continue; // a torn file end (nettle's XTS needs a whole block): left as is
            if (enc) xts_encrypt_message(ctx_, tweak_ctx_, cipher_->encrypt, iv, n, p, p);
            else xts_decrypt_message(ctx_, tweak_ctx_, cipher_->decrypt, cipher_->encrypt, iv, n, p, p);
        } else if (mode_ == MODE_CBC) {
            if (enc) cbc_encrypt(ctx_, cipher_->encrypt, bs, iv, whole, p, p);
            else cbc_decrypt(ctx_, cipher_->decrypt, bs, iv, whole, p, p);
        } else if (mode_ == MODE_CTR) {
            ctr_crypt(ctx_, cipher_->encrypt, bs, iv, n, p, p);
        } else {
            (enc ? cipher_->encrypt : cipher_->decrypt)(ctx_, whole, p, p);
        }
    }
}

void SectorCipher::decrypt(uint64_t first_sector, uint8_t* data, size_t len) const {
    crypt(first_sector, data, len, false);
}

void SectorCipher::encrypt(uint64_t first_sector, uint8_t* data, size_t len) const {
    crypt(first_sector, data, len, true);
}

} // namespace instar::luks
