// Parsing of a LUKS1 header (qemu: crypto/block-luks.c), as qemu opens one without a key. Also
// compiled into the qcow2 module, for the same header inside encrypted qcow2 images.
#include "luks_header.h"

#include "luks_bytes.h"
#include "luks_say.h"

#include <instar/guest/format_util.h>

namespace instar::luks {

namespace {

constexpr uint8_t LUKS_MAGIC[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr uint16_t LUKS_VERSION = 1;
constexpr uint32_t LUKS_HEADER_SECTORS = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR_SIZE;

bool str_eq(const char* a, size_t alen, const char* b) {
    size_t i = 0;
    for (; i < alen; ++i)
        if (b[i] == 0 || a[i] != b[i])
            return false;
    return b[i] == 0;
}

struct HashName {
    const char* name;
    uint32_t digest_len;
};
// qemu's QCryptoHashAlgo names that LUKS headers use.
constexpr HashName HASHES[] = {{"md5", 16},    {"sha1", 20},   {"sha224", 28},     {"sha256", 32},
                               {"sha384", 48}, {"sha512", 64}, {"ripemd160", 20}, {"sm3", 32}};

const HashName* find_hash(const char* s, size_t n) {
    for (const auto& h : HASHES)
        if (str_eq(s, n, h.name))
            return &h;
    return nullptr;
}

const char* find_in(const char* s, size_t n, const char* const* names, size_t count) {
    for (size_t i = 0; i < count; ++i)
        if (str_eq(s, n, names[i]))
            return names[i];
    return nullptr;
}

struct CipherSize {
    const char* luks_name;
    uint32_t key_bytes;
    const char* qapi_name;
};
// qemu's LUKS cipher-name/key-size map.
constexpr CipherSize CIPHERS[] = {
    {"aes", 16, "aes-128"},         {"aes", 24, "aes-192"},         {"aes", 32, "aes-256"},
    {"cast5", 16, "cast5-128"},     {"serpent", 16, "serpent-128"}, {"serpent", 24, "serpent-192"},
    {"serpent", 32, "serpent-256"}, {"twofish", 16, "twofish-128"}, {"twofish", 24, "twofish-192"},
    {"twofish", 32, "twofish-256"},
};

const CipherSize* find_cipher(const char* s, size_t n, uint32_t key_bytes) {
    for (const auto& c : CIPHERS)
        if (c.key_bytes == key_bytes && str_eq(s, n, c.luks_name))
            return &c;
    return nullptr;
}

} // namespace

bool luks_cipher_for_alg(const char* qapi_name, const char** luks_name, uint32_t* key_bytes) {
    for (const auto& c : CIPHERS) {
        size_t i = 0;
        while (qapi_name[i] != 0 && qapi_name[i] == c.qapi_name[i])
            ++i;
        if (qapi_name[i] == c.qapi_name[i]) {
            *luks_name = c.luks_name;
            *key_bytes = c.key_bytes;
            return true;
        }
    }
    return false;
}

bool luks_essiv_cipher_exists(const char* luks_name, uint32_t key_bytes, uint32_t digest_len) {
    if (digest_len == key_bytes)
        return true; // the cipher itself (cast5 with md5)
    for (const auto& x : CIPHERS) {
        size_t i = 0;
        while (luks_name[i] != 0 && luks_name[i] == x.luks_name[i])
            ++i;
        // cast5 has no other key size: qemu's "Cipher cast5-128 not supported with essiv".
        if (luks_name[i] == x.luks_name[i] && x.key_bytes == digest_len)
            return true;
    }
    return false;
}

namespace {

constexpr const char* MODES[] = {"ecb", "cbc", "xts", "ctr"};
constexpr const char* IVGENS[] = {"plain", "plain64", "essiv"};

// Refusals in qemu's words (crypto/block-luks.c): luks_say.h's Say.

Say refuse(LuksWhy* why, Status st) {
    if (why != nullptr)
        why->text[0] = 0;
    return Say{why, st};
}

// qemu's qcrypto_block_luks_splitkeylen_sectors, with its C types: the split key's byte count is a
// 32-bit product (it wraps for a hostile key length), rounded up to whole header-sized units.
uint32_t splitkey_sectors(uint32_t key_len, uint32_t stripes) {
    const uint32_t bytes = key_len * stripes;
    const uint64_t sectors = (uint64_t{bytes} + LUKS_SECTOR_SIZE - 1) / LUKS_SECTOR_SIZE;
    return static_cast<uint32_t>((sectors + LUKS_HEADER_SECTORS - 1) / LUKS_HEADER_SECTORS * LUKS_HEADER_SECTORS);
}

// qemu's qcrypto_block_luks_check_header after the names' NUL checks, in its order and words.
Status check_slots(const LuksHeaderDisk& d, uint32_t key_len, uint32_t payload_sector, bool detached, LuksWhy* why) {
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS; ++i) {
        const LuksKeySlotDisk& s = d.key_slots[i];
        const uint32_t active = load_be32(s.active);
        const uint32_t start = load_be32(s.key_offset_sector);
        const uint32_t stripes = load_be32(s.stripes);
        const uint32_t len = splitkey_sectors(key_len, stripes);
        if (stripes != LUKS_STRIPES)
            return refuse(why, Status::Corrupt)
                .text("Keyslot ").num(i).text(" is corrupted (stripes ").int32(stripes).text(" != 4000)").done();
        if (active != LUKS_KEY_SLOT_ENABLED && active != LUKS_KEY_SLOT_DISABLED)
            return refuse(why, Status::Corrupt).text("Keyslot ").num(i).text(" state (active/disable) is corrupted").done();
        if (active == LUKS_KEY_SLOT_ENABLED && load_be32(s.iterations) == 0)
            return refuse(why, Status::Corrupt).text("Keyslot ").num(i).text(" iteration count is zero").done();
        if (start < LUKS_HEADER_SECTORS)
            return refuse(why, Status::Corrupt).text("Keyslot ").num(i).text(" is overlapping with the LUKS header").done();
        // An unsigned int sum in qemu: it wraps, and a slot far past 4 G sectors then passes.
        if (!detached && static_cast<uint32_t>(start + len) > payload_sector)
            return refuse(why, Status::Corrupt)
                .text("Keyslot ").num(i).text(" is overlapping with the encrypted payload").done();
        for (uint32_t j = i + 1; j < LUKS_NUM_KEY_SLOTS; ++j) {
            const uint64_t start2 = load_be32(d.key_slots[j].key_offset_sector);
            const uint64_t len2 = splitkey_sectors(key_len, load_be32(d.key_slots[j].stripes));
            // qemu's ranges_overlap, literally: 64-bit last bytes (offset + len - 1, which wraps for
            // an empty range at 0), so an empty range inside another overlaps it.
            const uint64_t last1 = uint64_t{start} + len - 1;
            const uint64_t last2 = start2 + len2 - 1;
            if (!(last2 < start || last1 < start2))
                return refuse(why, Status::Corrupt)
                    .text("Keyslots ").num(i).text(" and ").num(j).text(" are overlapping in the header").done();
        }
    }
    return Status::Ok;
}

// qemu's "No AES cipher with key size N available" family for an ESSIV hash whose digest fits no
// key of the cipher's family.
Status essiv_refusal(const CipherSize& c, uint32_t digest_len, LuksWhy* why) {
    const char* family = str_eq("aes", 3, c.luks_name) ? "AES"
                         : str_eq("serpent", 7, c.luks_name) ? "Serpent"
                         : str_eq("twofish", 7, c.luks_name) ? "Twofish"
                                                             : nullptr;
    if (family == nullptr)
        return refuse(why, Status::Unsupported).text("Cipher ").text(c.qapi_name).text(" not supported with essiv").done();
    return refuse(why, Status::Unsupported)
        .text("No ").text(family).text(" cipher with key size ").num(digest_len).text(" available").done();
}

} // namespace

Status luks_header_parse(const uint8_t* data, size_t len, LuksHeader* out, bool detached, LuksWhy* why) {
    if (why != nullptr)
        why->text[0] = 0;
    if (len < sizeof(LuksHeaderDisk))
        return refuse(why, Status::Corrupt).text("Volume is not in LUKS format").done();
    LuksHeaderDisk d;
    __builtin_memcpy(&d, data, sizeof d);
    // qemu's qcrypto_block_luks_check_header, in its order.
    for (size_t i = 0; i < sizeof LUKS_MAGIC; ++i)
        if (d.magic[i] != LUKS_MAGIC[i])
            return refuse(why, Status::Corrupt).text("Volume is not in LUKS format").done();
    if (const uint16_t version = load_be16(d.version); version != LUKS_VERSION)
        return refuse(why, Status::Unsupported).text("LUKS version ").num(version).text(" is not supported").done();
    const size_t name_len = bounded_strlen(d.cipher_name, sizeof d.cipher_name);
    const size_t mode_len = bounded_strlen(d.cipher_mode, sizeof d.cipher_mode);
    const size_t hash_len = bounded_strlen(d.hash_spec, sizeof d.hash_spec);
    if (name_len == sizeof d.cipher_name)
        return refuse(why, Status::Corrupt).text("LUKS header cipher name is not NUL terminated").done();
    if (mode_len == sizeof d.cipher_mode)
        return refuse(why, Status::Corrupt).text("LUKS header cipher mode is not NUL terminated").done();
    if (hash_len == sizeof d.hash_spec)
        return refuse(why, Status::Corrupt).text("LUKS header hash spec is not NUL terminated").done();
    const uint32_t payload_sector = load_be32(d.payload_offset_sector);
    const uint32_t key_len = load_be32(d.master_key_len);
    LuksHeader h;
    h.master_key_iterations = load_be32(d.master_key_iterations);
    if (!detached && payload_sector < LUKS_HEADER_SECTORS)
        return refuse(why, Status::Corrupt).text("LUKS payload is overlapping with the header").done();
    if (h.master_key_iterations == 0)
        return refuse(why, Status::Corrupt).text("LUKS key iteration count is zero").done();
    if (const Status st = check_slots(d, key_len, payload_sector, detached, why); st != Status::Ok)
        return st;

    // qemu's qcrypto_block_luks_parse_header: "<mode>-<ivgen>[:<ivhash>]", then each name looked up.
    // SAFETY: byte fields viewed as chars for string comparison; same size and alignment.
    const char* mode = reinterpret_cast<const char*>(d.cipher_mode);
    size_t dash = 0;
    while (dash < mode_len && mode[dash] != '-')
        ++dash;
    if (dash == mode_len)
        return refuse(why, Status::Corrupt)
            .text("Unexpected cipher mode string format '").text(d.cipher_mode, mode_len).text("'").done();
    const char* ivgen = mode + dash + 1;
    size_t ivgen_len = mode_len - dash - 1;
    size_t colon = 0;
    while (colon < ivgen_len && ivgen[colon] != ':')
        ++colon;
    const HashName* ivhash = nullptr;
    if (colon < ivgen_len) {
        const size_t ivhash_len = ivgen_len - colon - 1;
        ivhash = find_hash(ivgen + colon + 1, ivhash_len);
        if (!ivhash)
            return refuse(why, Status::Unsupported)
                .text("Hash algorithm '")
                .text(d.cipher_mode + dash + 1 + colon + 1, ivhash_len)
                .text("' not supported")
                .done();
        ivgen_len = colon;
    }
    h.cipher_mode = find_in(mode, dash, MODES, sizeof MODES / sizeof MODES[0]);
    if (!h.cipher_mode)
        return refuse(why, Status::Unsupported).text("Cipher mode '").text(d.cipher_mode, dash).text("' not supported").done();
    const bool xts = h.cipher_mode == MODES[2];
    const uint32_t cipher_key = xts ? key_len / 2 : key_len;
    const CipherSize* cipher = find_cipher(reinterpret_cast<const char*>(d.cipher_name), name_len, cipher_key);
    if (!cipher)
        return refuse(why, Status::Unsupported)
            .text("Algorithm '")
            .text(d.cipher_name, name_len)
            .text("' with key size ")
            .int32(cipher_key)
            .text(" bytes not supported")
            .done();
    h.cipher_alg = cipher->qapi_name;
    h.cipher_name = cipher->luks_name;
    h.key_bytes = key_len;
    __builtin_memcpy(h.mk_digest, d.master_key_digest, sizeof h.mk_digest);
    __builtin_memcpy(h.mk_salt, d.master_key_salt, sizeof h.mk_salt);
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS; ++i)
        __builtin_memcpy(h.slot_salt[i], d.key_slots[i].salt, 32);
    const HashName* hash = find_hash(reinterpret_cast<const char*>(d.hash_spec), hash_len);
    if (!hash)
        return refuse(why, Status::Unsupported).text("Hash algorithm '").text(d.hash_spec, hash_len).text("' not supported").done();
    h.hash_alg = hash->name;
    h.ivgen_alg = find_in(ivgen, ivgen_len, IVGENS, sizeof IVGENS / sizeof IVGENS[0]);
    if (!h.ivgen_alg)
        return refuse(why, Status::Unsupported)
            .text("IV generator '")
            .text(d.cipher_mode + dash + 1, ivgen_len)
            .text("' not supported")
            .done();
    if (h.ivgen_alg == IVGENS[2]) {
        if (!ivhash)
            return refuse(why, Status::Corrupt).text("Missing IV generator hash specification").done();
        if (!luks_essiv_cipher_exists(cipher->luks_name, cipher->key_bytes, ivhash->digest_len))
            return essiv_refusal(*cipher, ivhash->digest_len, why);
        h.ivgen_hash_alg = ivhash->name;
    }
    h.payload_offset = uint64_t{payload_sector} * LUKS_SECTOR_SIZE;
    h.uuid_len = bounded_strlen(d.uuid, sizeof d.uuid);
    __builtin_memcpy(h.uuid, d.uuid, h.uuid_len);
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS; ++i) {
        const LuksKeySlotDisk& s = d.key_slots[i];
        h.slots[i].active = load_be32(s.active) == LUKS_KEY_SLOT_ENABLED;
        h.slots[i].iterations = load_be32(s.iterations);
        h.slots[i].stripes = load_be32(s.stripes);
        h.slots[i].key_offset = uint64_t{load_be32(s.key_offset_sector)} * LUKS_SECTOR_SIZE;
    }
    *out = h;
    return Status::Ok;
}

const char* luks_header_profile_refusal(const LuksHeader& h, uint32_t qemu_version) {
    if (qemu_version >= LUKS_SM_QEMU_VERSION)
        return nullptr;
    const auto is_sm3 = [](const char* name) { return name != nullptr && str_eq(name, 3, "sm3") && name[3] == 0; };
    if (is_sm3(h.hash_alg) || is_sm3(h.ivgen_hash_alg))
        return "Hash algorithm 'sm3' not supported";
    return nullptr;
}

namespace {

size_t cstr_len(const char* s) {
    size_t n = 0;
    while (s[n])
        ++n;
    return n;
}

void put_cstr(guest::InfoSink& sink, const char* key, const char* value) {
    sink.put_string(key, value, cstr_len(value));
}

} // namespace

void luks_header_report(const LuksHeader& h, bool with_detached_header, guest::InfoSink& sink, bool detached) {
    // QCryptoBlockInfoLUKS field order. "detached-header" exists since qemu 9.0; a LUKS header
    // inside qcow2 is never detached.
    put_cstr(sink, "cipher-alg", h.cipher_alg);
    put_cstr(sink, "cipher-mode", h.cipher_mode);
    put_cstr(sink, "ivgen-alg", h.ivgen_alg);
    if (h.ivgen_hash_alg)
        put_cstr(sink, "ivgen-hash-alg", h.ivgen_hash_alg);
    put_cstr(sink, "hash-alg", h.hash_alg);
    if (with_detached_header)
        sink.put_bool("detached-header", detached);
    sink.put_int("payload-offset", static_cast<int64_t>(h.payload_offset));
    sink.put_int("master-key-iters", h.master_key_iterations);
    sink.put_string("uuid", h.uuid, h.uuid_len);
    sink.begin_list("slots");
    for (const LuksKeySlot& s : h.slots) {
        sink.begin_object(nullptr);
        sink.put_bool("active", s.active);
        if (s.active) {
            sink.put_int("iters", s.iterations);
            sink.put_int("stripes", s.stripes);
        }
        sink.put_int("key-offset", static_cast<int64_t>(s.key_offset));
        sink.end_object();
    }
    sink.end_list();
}

} // namespace instar::luks
