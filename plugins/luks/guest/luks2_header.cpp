// LUKS2 header reading (cryptsetup: lib/luks2/luks2_disk_metadata.c for the binary header pair,
// luks2_json_metadata.c for the metadata checks). Read only; docs/formats/luks.md, "LUKS2".
#include "luks2_header.h"

#include "luks_bytes.h"
#include "luks_say.h"

#include <instar/guest/format_util.h>

#include <stddef.h>

namespace instar::luks {

using guest::Status;

namespace {

constexpr uint8_t MAGIC_PRIMARY[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr uint8_t MAGIC_SECONDARY[6] = {'S', 'K', 'U', 'L', 0xba, 0xbe};
constexpr uint16_t LUKS2_VERSION = 2;
// Binary header fields within a copy's bytes (Luks2HeaderDisk).
constexpr size_t OFF_HDR_SIZE = offsetof(Luks2HeaderDisk, hdr_size);
constexpr size_t OFF_SEQID = offsetof(Luks2HeaderDisk, seqid);
constexpr size_t OFF_CSUM_ALG = offsetof(Luks2HeaderDisk, checksum_alg);
constexpr size_t CSUM_ALG_LEN = sizeof(Luks2HeaderDisk::checksum_alg);
constexpr size_t OFF_UUID = offsetof(Luks2HeaderDisk, uuid);
constexpr size_t UUID_LEN = sizeof(Luks2HeaderDisk::uuid);
constexpr size_t OFF_HDR_OFFSET = offsetof(Luks2HeaderDisk, hdr_offset);
constexpr size_t OFF_CSUM = offsetof(Luks2HeaderDisk, csum);
constexpr size_t CSUM_LEN = sizeof(Luks2HeaderDisk::csum);
static_assert(OFF_HDR_OFFSET == 256 && OFF_CSUM == 448, "cryptsetup's luks2_hdr_disk offsets");
// Where cryptsetup looks for the secondary header when the primary is unreadable (hdr2_offsets).
constexpr uint64_t SECONDARY_OFFSETS[] = {0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000,
                                          0x400000};
// The only anti-forensic stripe count cryptsetup reads (as LUKS1).
constexpr uint64_t LUKS2_STRIPES = LUKS_STRIPES;

uint64_t load_be64(const uint8_t* p) { return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4); }

bool plausible_hdr_size(uint64_t s) {
    return s >= LUKS2_MIN_HDR_SIZE && s <= LUKS2_MAX_HDR_SIZE && (s & (s - 1)) == 0;
}


Say refuse(LuksWhy* why, Status st) {
    if (why != nullptr)
        why->text[0] = 0;
    return Say{why, st}.text("LUKS2 ");
}

// One header copy's binary part, checked: magic, version, size, offset, checksum.
struct Copy {
    bool plausible = false; // magic, version and a header size cryptsetup writes
    bool valid = false;     // and the checksum matches
    uint64_t hdr_size = 0;
    uint64_t seqid = 0;
    uint8_t* bytes = nullptr; // the whole copy (hdr_size bytes from the arena) when plausible
};

void release(guest::Allocator& alloc, Copy* c) {
    if (c->bytes != nullptr)
        alloc.deallocate(c->bytes, static_cast<size_t>(c->hdr_size));
    c->bytes = nullptr;
}

// Checks the copy at `at`; `bin` is LUKS2_BIN_HEADER_BYTES of scratch. A plausible copy is read
// whole into an arena buffer (hdr_size bytes, at most LUKS2_MAX_HDR_SIZE), kept in out->bytes.
Status check_copy(guest::BlockDevice& dev, guest::Allocator& alloc, uint64_t at, const uint8_t* magic, uint8_t* bin,
                  Copy* out) {
    *out = Copy{};
    const uint64_t size = dev.size();
    if (at > size || size - at < LUKS2_BIN_HEADER_BYTES)
        return Status::Ok;
    if (const Status st = dev.read(at, bin, LUKS2_BIN_HEADER_BYTES); st != Status::Ok)
        return st;
    if (__builtin_memcmp(bin, magic, 6) != 0 || load_be16(bin + 6) != LUKS2_VERSION)
        return Status::Ok;
    const uint64_t hdr_size = load_be64(bin + OFF_HDR_SIZE);
    if (!plausible_hdr_size(hdr_size) || load_be64(bin + OFF_HDR_OFFSET) != at)
        return Status::Ok;
    out->plausible = true;
    out->hdr_size = hdr_size;
    out->seqid = load_be64(bin + OFF_SEQID);
    if (size - at < hdr_size)
        return Status::Ok; // cut short: invalid
    auto* buf = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(hdr_size), 16));
    if (buf == nullptr)
        return Status::NoMemory;
    out->bytes = buf;
    __builtin_memcpy(buf, bin, LUKS2_BIN_HEADER_BYTES);
    if (const Status st = dev.read(at + LUKS2_BIN_HEADER_BYTES, buf + LUKS2_BIN_HEADER_BYTES,
                                   static_cast<size_t>(hdr_size - LUKS2_BIN_HEADER_BYTES));
        st != Status::Ok)
        return st;
    // The checksum (sha256 as cryptsetup writes; any hash it names that nettle has) over the whole
    // header with the checksum field zeroed.
    char alg[CSUM_ALG_LEN + 1] = {};
    const size_t alg_len = bounded_strlen(buf + OFF_CSUM_ALG, CSUM_ALG_LEN);
    __builtin_memcpy(alg, buf + OFF_CSUM_ALG, alg_len);
    const size_t dlen = luks_digest_len(alg);
    if (dlen == 0 || dlen > CSUM_LEN)
        return Status::Ok;
    uint8_t stored[CSUM_LEN];
    __builtin_memcpy(stored, buf + OFF_CSUM, CSUM_LEN);
    __builtin_memset(buf + OFF_CSUM, 0, CSUM_LEN);
    uint8_t computed[LUKS_MAX_DIGEST_BYTES];
    luks_hash(alg, buf, static_cast<size_t>(hdr_size), computed);
    __builtin_memcpy(buf + OFF_CSUM, stored, CSUM_LEN);
    out->valid = __builtin_memcmp(stored, computed, dlen) == 0;
    return Status::Ok;
}

// A decimal key slot / segment / digest id ("0" to "31"), as cryptsetup's json object keys.
bool parse_id(const Json& j, uint32_t tok, uint32_t limit, uint32_t* out) {
    const JsonToken& t = j.at(tok);
    if (t.type != JsonType::String || t.len == 0 || t.len > 2)
        return false;
    const char* s = j.str(tok);
    if (t.len == 2 && s[0] == '0')
        return false;
    uint32_t v = 0;
    for (uint32_t k = 0; k < t.len; ++k) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        v = v * 10 + static_cast<uint32_t>(s[k] - '0');
    }
    if (v >= limit)
        return false;
    *out = v;
    return true;
}

// A hash name nettle has (luks_crypto.cpp's table), as the static name it knows.
const char* hash_name(const Json& j, uint32_t tok) {
    static constexpr const char* NAMES[] = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160", "sm3"};
    for (const char* n : NAMES)
        if (j.str_is(tok, n))
            return n;
    return nullptr;
}

// "aes-xts-plain64" with a key size: checked and named through the LUKS1 parser (the same names,
// modes, IV generators and key sizes qemu accepts), given a synthetic LUKS1 header that carries
// them and nothing else to check (detached, slots apart, iterations 1).
Status parse_cipher(const Json& j, uint32_t tok, uint32_t key_bytes, Luks2Cipher* out, const char* what, uint32_t id,
                    LuksWhy* why) {
    const JsonToken& t = j.at(tok);
    if (t.type != JsonType::String)
        return refuse(why, Status::Corrupt).text(what).num(id).text(" has no encryption").done();
    const char* s = j.str(tok);
    size_t dash = 0;
    while (dash < t.len && s[dash] != '-')
        ++dash;
    const size_t mode_len = dash < t.len ? t.len - dash - 1 : 0;
    if (dash == t.len || dash >= LUKS_NAME_FIELD || mode_len >= LUKS_NAME_FIELD)
        return refuse(why, Status::Unsupported)
            .text(what).num(id).text(" encryption '").text(s, t.len).text("' is not supported").done();
    LuksHeaderDisk d{};
    __builtin_memcpy(d.magic, MAGIC_PRIMARY, 6);
    d.version[1] = 1;
    __builtin_memcpy(d.cipher_name, s, dash);
    __builtin_memcpy(d.cipher_mode, s + dash + 1, mode_len);
    __builtin_memcpy(d.hash_spec, "sha256", 6);
    const auto be32 = [](uint8_t* p, uint32_t v) { store_be(p, v, 4); };
    be32(d.master_key_len, key_bytes);
    be32(d.master_key_iterations, 1);
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS; ++i) {
        be32(d.key_slots[i].active, LUKS_KEY_SLOT_DISABLED);
        be32(d.key_slots[i].stripes, LUKS_STRIPES);
        be32(d.key_slots[i].key_offset_sector, 8 + i * 512); // 512 sectors hold 64 x 4000 bytes
    }
    LuksHeader h;
    LuksWhy inner;
    // SAFETY: LuksHeaderDisk is an array of byte fields (no padding, static_assert'ed size), read
    // back as its own bytes.
    if (luks_header_parse(reinterpret_cast<const uint8_t*>(&d), sizeof d, &h, true, &inner) !=
        Status::Ok)
        return refuse(why, Status::Unsupported)
            .text(what).num(id).text(" encryption '").text(s, t.len).text("': ").text(inner.text).done();
    out->cipher_alg = h.cipher_alg;
    out->cipher_name = h.cipher_name;
    out->cipher_mode = h.cipher_mode;
    out->ivgen_alg = h.ivgen_alg;
    out->ivgen_hash_alg = h.ivgen_hash_alg;
    out->key_bytes = key_bytes;
    return Status::Ok;
}

bool u64_member(const Json& j, uint32_t obj, const char* key, uint64_t max, uint64_t* out) {
    return j.as_u64(j.member(obj, key), max, out);
}

Status parse_kdf(const Json& j, uint32_t kdf, uint32_t id, Luks2Keyslot* s, LuksWhy* why) {
    const uint32_t type = j.member(kdf, "type");
    uint64_t v = 0;
    if (j.str_is(type, "pbkdf2")) {
        s->kdf = Luks2Kdf::Pbkdf2;
        s->kdf_hash = hash_name(j, j.member(kdf, "hash"));
        if (s->kdf_hash == nullptr)
            return refuse(why, Status::Unsupported).text("keyslot ").num(id).text(" has an unknown PBKDF2 hash").done();
        if (!u64_member(j, kdf, "iterations", UINT32_MAX, &v) || v == 0)
            return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" has no valid PBKDF2 iterations").done();
        if (v > LUKS_MAX_PBKDF2_ITERATIONS)
            return refuse(why, Status::Corrupt)
                .text("keyslot ").num(id).text(" asks for ").num(v).text(" PBKDF2 iterations (at most ")
                .num(LUKS_MAX_PBKDF2_ITERATIONS).text(")").done();
        s->iterations = static_cast<uint32_t>(v);
    } else if (j.str_is(type, "argon2i") || j.str_is(type, "argon2id")) {
        s->kdf = j.str_is(type, "argon2i") ? Luks2Kdf::Argon2i : Luks2Kdf::Argon2id;
        uint64_t time = 0, memory = 0, cpus = 0;
        if (!u64_member(j, kdf, "time", UINT32_MAX, &time) || !u64_member(j, kdf, "memory", UINT32_MAX, &memory) ||
            !u64_member(j, kdf, "cpus", UINT32_MAX, &cpus) || time == 0 || cpus == 0)
            return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" has no valid argon2 costs").done();
        if (cpus > LUKS2_MAX_ARGON2_LANES)
            return refuse(why, Status::Corrupt)
                .text("keyslot ").num(id).text(" asks for ").num(cpus).text(" argon2 lanes (at most ")
                .num(LUKS2_MAX_ARGON2_LANES).text(")").done();
        if (memory > LUKS2_MAX_ARGON2_MEMORY_KIB || memory < 8 * cpus)
            return refuse(why, Status::Corrupt)
                .text("keyslot ").num(id).text(" asks for ").num(memory).text(" KiB of argon2 memory (8 x lanes to ")
                .num(LUKS2_MAX_ARGON2_MEMORY_KIB).text(")").done();
        if (time * memory > LUKS2_MAX_ARGON2_WORK_KIB)
            return refuse(why, Status::Corrupt)
                .text("keyslot ").num(id).text(" asks for ").num(time).text(" argon2 passes over ").num(memory)
                .text(" KiB (at most ").num(LUKS2_MAX_ARGON2_WORK_KIB).text(" KiB in all)").done();
        s->iterations = static_cast<uint32_t>(time);
        s->memory_kib = static_cast<uint32_t>(memory);
        s->lanes = static_cast<uint32_t>(cpus);
    } else {
        return refuse(why, Status::Unsupported).text("keyslot ").num(id).text(" has an unknown key derivation").done();
    }
    if (!j.as_base64(j.member(kdf, "salt"), s->salt, sizeof s->salt, &s->salt_len) || s->salt_len == 0)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" has no valid salt").done();
    return Status::Ok;
}

Status parse_keyslot(const Json& j, uint32_t ks, uint32_t id, uint64_t hdr_size, uint64_t keyslots_end,
                     uint64_t file_size, Luks2Keyslot* s, LuksWhy* why) {
    if (j.at(ks).type != JsonType::Object)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" is not an object").done();
    if (!j.str_is(j.member(ks, "type"), "luks2"))
        return refuse(why, Status::Unsupported).text("keyslot ").num(id).text(" is not of type luks2").done();
    uint64_t key = 0;
    if (!u64_member(j, ks, "key_size", UINT32_MAX, &key) || key == 0 || key > LUKS_MAX_KEY_BYTES)
        return refuse(why, Status::Corrupt)
            .text("keyslot ").num(id).text(" key size is not 1 to ").num(LUKS_MAX_KEY_BYTES).text(" bytes").done();
    s->key_bytes = static_cast<uint32_t>(key);
    if (const uint32_t pr = j.member(ks, "priority"); pr != Json::NONE) {
        uint64_t v = 0;
        if (!j.as_u64(pr, 2, &v))
            return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" priority is not 0, 1 or 2").done();
        s->priority = static_cast<uint8_t>(v);
    }
    const uint32_t af = j.member(ks, "af");
    uint64_t stripes = 0;
    if (!j.str_is(j.member(af, "type"), "luks1") || !u64_member(j, af, "stripes", UINT32_MAX, &stripes) ||
        stripes != LUKS2_STRIPES)
        return refuse(why, Status::Unsupported)
            .text("keyslot ").num(id).text(" anti-forensic split is not luks1 with 4000 stripes").done();
    s->af_hash = hash_name(j, j.member(af, "hash"));
    if (s->af_hash == nullptr)
        return refuse(why, Status::Unsupported).text("keyslot ").num(id).text(" has an unknown AF hash").done();
    const uint32_t area = j.member(ks, "area");
    uint64_t area_key = 0;
    if (!j.str_is(j.member(area, "type"), "raw") || !u64_member(j, area, "offset", UINT64_MAX, &s->area_offset) ||
        !u64_member(j, area, "size", UINT64_MAX, &s->area_size) ||
        !u64_member(j, area, "key_size", UINT32_MAX, &area_key) || area_key == 0 || area_key > LUKS_MAX_KEY_BYTES)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" area is not a valid raw area").done();
    if (s->area_offset < 2 * hdr_size)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" area overlaps the LUKS2 header").done();
    if (s->area_size < key * LUKS2_STRIPES)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" area is smaller than its key material").done();
    if (s->area_offset > keyslots_end || s->area_size > keyslots_end - s->area_offset)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" area passes the keyslots area").done();
    if (s->area_offset > file_size || key * LUKS2_STRIPES > file_size - s->area_offset)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" area is past the end of the file").done();
    if (const Status st = parse_cipher(j, j.member(area, "encryption"), static_cast<uint32_t>(area_key), &s->area,
                                       "keyslot ", id, why);
        st != Status::Ok)
        return st;
    const uint32_t kdf = j.member(ks, "kdf");
    if (kdf == Json::NONE || j.at(kdf).type != JsonType::Object)
        return refuse(why, Status::Corrupt).text("keyslot ").num(id).text(" has no kdf").done();
    if (const Status st = parse_kdf(j, kdf, id, s, why); st != Status::Ok)
        return st;
    s->present = true;
    return Status::Ok;
}

Status parse_segment(const Json& j, uint32_t seg, uint64_t hdr_size, uint64_t keyslots_end, uint64_t file_size,
                     Luks2Header* h, LuksWhy* why) {
    if (j.at(seg).type != JsonType::Object)
        return refuse(why, Status::Corrupt).text("segment 0 is not an object").done();
    if (!j.str_is(j.member(seg, "type"), "crypt"))
        return refuse(why, Status::Unsupported).text("segment 0 is not of type crypt").done();
    if (j.member(seg, "integrity") != Json::NONE)
        return refuse(why, Status::Unsupported).text("segment 0 uses authenticated encryption (integrity)").done();
    uint64_t sector = 0;
    if (!u64_member(j, seg, "offset", UINT64_MAX, &h->seg_offset) ||
        !u64_member(j, seg, "iv_tweak", UINT64_MAX, &h->iv_tweak) ||
        !u64_member(j, seg, "sector_size", UINT32_MAX, &sector))
        return refuse(why, Status::Corrupt).text("segment 0 lacks its offset, iv_tweak or sector_size").done();
    if (sector != 512 && sector != 1024 && sector != 2048 && sector != 4096)
        return refuse(why, Status::Corrupt).text("segment 0 sector size ").num(sector).text(" is not 512 to 4096").done();
    h->sector_size = static_cast<uint32_t>(sector);
    if (h->seg_offset % LUKS_SECTOR_SIZE != 0)
        return refuse(why, Status::Corrupt).text("segment 0 offset is not a multiple of 512").done();
    if (h->seg_offset < 2 * hdr_size || h->seg_offset < keyslots_end)
        return refuse(why, Status::Corrupt).text("segment 0 overlaps the LUKS2 header or keyslots area").done();
    if (h->seg_offset > file_size)
        return refuse(why, Status::Corrupt).text("segment 0 starts past the end of the file").done();
    const uint32_t size = j.member(seg, "size");
    if (j.str_is(size, "dynamic")) {
        h->seg_dynamic = true;
    } else {
        h->seg_dynamic = false;
        if (!j.as_u64(size, UINT64_MAX, &h->seg_size) || h->seg_size % sector != 0)
            return refuse(why, Status::Corrupt).text("segment 0 size is not dynamic or whole sectors").done();
        if (h->seg_size > file_size - h->seg_offset)
            return refuse(why, Status::Corrupt).text("segment 0 ends past the end of the file").done();
    }
    // The IV of the last sector must not wrap 64 bits.
    if (h->iv_tweak > UINT64_MAX - file_size / LUKS_SECTOR_SIZE)
        return refuse(why, Status::Corrupt).text("segment 0 iv_tweak is too large").done();
    return Status::Ok;
}

Status parse_digest(const Json& j, uint32_t dg, Luks2Header* h, LuksWhy* why) {
    if (!j.str_is(j.member(dg, "type"), "pbkdf2"))
        return refuse(why, Status::Unsupported).text("digest of segment 0 is not pbkdf2").done();
    h->digest_hash = hash_name(j, j.member(dg, "hash"));
    if (h->digest_hash == nullptr)
        return refuse(why, Status::Unsupported).text("digest of segment 0 has an unknown hash").done();
    uint64_t it = 0;
    if (!u64_member(j, dg, "iterations", UINT32_MAX, &it) || it == 0)
        return refuse(why, Status::Corrupt).text("digest of segment 0 has no valid iterations").done();
    if (it > LUKS_MAX_PBKDF2_ITERATIONS)
        return refuse(why, Status::Corrupt)
            .text("digest asks for ").num(it).text(" PBKDF2 iterations (at most ").num(LUKS_MAX_PBKDF2_ITERATIONS)
            .text(")").done();
    h->digest_iterations = static_cast<uint32_t>(it);
    if (!j.as_base64(j.member(dg, "salt"), h->digest_salt, sizeof h->digest_salt, &h->digest_salt_len) ||
        h->digest_salt_len == 0)
        return refuse(why, Status::Corrupt).text("digest of segment 0 has no valid salt").done();
    if (!j.as_base64(j.member(dg, "digest"), h->digest, sizeof h->digest, &h->digest_len) || h->digest_len == 0 ||
        h->digest_len > luks_digest_len(h->digest_hash))
        return refuse(why, Status::Corrupt).text("digest of segment 0 has no valid digest").done();
    const uint32_t slots = j.member(dg, "keyslots");
    if (slots == Json::NONE || j.at(slots).type != JsonType::Array)
        return refuse(why, Status::Corrupt).text("digest of segment 0 has no keyslots list").done();
    for (uint32_t e = j.first_element(slots); e != Json::NONE; e = j.next_element(slots, e)) {
        uint32_t id = 0;
        if (!parse_id(j, e, LUKS2_MAX_KEYSLOTS, &id) || !h->slots[id].present)
            return refuse(why, Status::Corrupt).text("digest of segment 0 names a keyslot that does not exist").done();
        h->digest_slots |= 1u << id;
    }
    return Status::Ok;
}

} // namespace

bool luks2_magic(const uint8_t* head, size_t len) {
    return len >= 8 && (__builtin_memcmp(head, MAGIC_PRIMARY, 6) == 0 || __builtin_memcmp(head, MAGIC_SECONDARY, 6) == 0) &&
           load_be16(head + 6) == LUKS2_VERSION;
}

namespace {

// The metadata checks over tokenized text (luks2_parse_json's second half), in cryptsetup's order:
// config, key slots, segment, digest.
Status check_metadata(const Json& j, uint64_t hdr_size, uint64_t file_size, Luks2Header& h, LuksWhy* why) {
    const uint32_t keyslots = j.member(j.root(), "keyslots");
    const uint32_t segments = j.member(j.root(), "segments");
    const uint32_t digests = j.member(j.root(), "digests");
    const uint32_t config = j.member(j.root(), "config");
    if (j.at(keyslots).type != JsonType::Object || j.at(segments).type != JsonType::Object ||
        j.at(digests).type != JsonType::Object || j.at(config).type != JsonType::Object)
        return refuse(why, Status::Corrupt).text("metadata lacks keyslots, segments, digests or config").done();
    uint64_t json_size = 0, keyslots_size = 0;
    if (!u64_member(j, config, "json_size", UINT64_MAX, &json_size) || json_size != hdr_size - LUKS2_BIN_HEADER_BYTES ||
        !u64_member(j, config, "keyslots_size", UINT64_MAX, &keyslots_size) ||
        keyslots_size > UINT64_MAX - 2 * hdr_size)
        return refuse(why, Status::Corrupt).text("config json_size or keyslots_size is wrong").done();
    const uint64_t keyslots_end = 2 * hdr_size + keyslots_size;
    const uint32_t requirement = j.first_element(j.member(j.member(config, "requirements"), "mandatory"));
    if (requirement != Json::NONE)
        return refuse(why, Status::Unsupported)
            .text("volume requires '").text(j.str(requirement), j.at(requirement).len).text("' (not supported)").done();
    for (uint32_t k = j.first_member(keyslots); k != Json::NONE; k = j.next_member(keyslots, k)) {
        uint32_t id = 0;
        if (!parse_id(j, k, LUKS2_MAX_KEYSLOTS, &id) || h.slots[id].present)
            return refuse(why, Status::Corrupt)
                .text("keyslot id '").text(j.str(k), j.at(k).len).text("' is not 0 to 31 or repeats").done();
        if (const Status st = parse_keyslot(j, j.value_of(k), id, hdr_size, keyslots_end, file_size, &h.slots[id], why);
            st != Status::Ok)
            return st;
    }
    // Key slot areas never overlap (cryptsetup's LUKS2_keyslots_validate).
    for (uint32_t a = 0; a < LUKS2_MAX_KEYSLOTS; ++a)
        for (uint32_t b = a + 1; b < LUKS2_MAX_KEYSLOTS; ++b) {
            const Luks2Keyslot& x = h.slots[a];
            const Luks2Keyslot& y = h.slots[b];
            if (x.present && y.present && x.area_offset < y.area_offset + y.area_size &&
                y.area_offset < x.area_offset + x.area_size)
                return refuse(why, Status::Corrupt)
                    .text("keyslots ").num(a).text(" and ").num(b).text(" have overlapping areas").done();
        }
    // One crypt segment, "0" (several are an online reencryption, which sets a mandatory requirement).
    const uint32_t seg_key = j.first_member(segments);
    if (seg_key == Json::NONE || j.next_member(segments, seg_key) != Json::NONE || !j.str_is(seg_key, "0"))
        return refuse(why, Status::Unsupported).text("volume does not have exactly one segment, \"0\"").done();
    const uint32_t seg = j.value_of(seg_key);
    if (const Status st = parse_segment(j, seg, hdr_size, keyslots_end, file_size, &h, why); st != Status::Ok)
        return st;
    uint32_t digest = Json::NONE;
    for (uint32_t k = j.first_member(digests); k != Json::NONE; k = j.next_member(digests, k)) {
        const uint32_t segs = j.member(j.value_of(k), "segments");
        for (uint32_t e = j.first_element(segs); e != Json::NONE; e = j.next_element(segs, e)) {
            if (!j.str_is(e, "0"))
                continue;
            if (digest != Json::NONE)
                return refuse(why, Status::Corrupt).text("segment 0 has more than one digest").done();
            digest = j.value_of(k);
        }
    }
    if (digest == Json::NONE)
        return refuse(why, Status::Corrupt).text("segment 0 has no digest").done();
    if (const Status st = parse_digest(j, digest, &h, why); st != Status::Ok)
        return st;
    if (h.digest_slots == 0)
        return refuse(why, Status::Corrupt).text("no keyslot holds the key of segment 0").done();
    // The volume key: every key slot the digest names holds one of the same size.
    for (uint32_t i = 0; i < LUKS2_MAX_KEYSLOTS; ++i) {
        if (!(h.digest_slots & (1u << i)))
            continue;
        if (h.seg.key_bytes == 0)
            h.seg.key_bytes = h.slots[i].key_bytes;
        else if (h.slots[i].key_bytes != h.seg.key_bytes)
            return refuse(why, Status::Corrupt).text("keyslots of segment 0 hold keys of different sizes").done();
        if (h.slots[i].area_offset + h.slots[i].area_size > h.seg_offset)
            return refuse(why, Status::Corrupt).text("keyslot ").num(i).text(" area overlaps segment 0").done();
    }
    return parse_cipher(j, j.member(seg, "encryption"), h.seg.key_bytes, &h.seg, "segment ", 0, why);
}

} // namespace

Status luks2_parse_json(const char* json, size_t len, uint64_t hdr_size, uint64_t file_size, guest::Allocator& alloc,
                        Luks2Header* out, LuksWhy* why) {
    if (len > LUKS2_MAX_JSON_BYTES)
        return refuse(why, Status::TooLarge).text("metadata is longer than ").num(LUKS2_MAX_JSON_BYTES).text(" bytes").done();
    constexpr size_t TOKEN_BYTES = sizeof(JsonToken) * LUKS2_JSON_MAX_TOKENS;
    auto* tokens = static_cast<JsonToken*>(alloc.allocate(TOKEN_BYTES, alignof(JsonToken)));
    if (tokens == nullptr)
        return Status::NoMemory;
    Json j;
    JsonError err;
    const Status st = j.parse(json, len, tokens, LUKS2_JSON_MAX_TOKENS, &err)
                          ? check_metadata(j, hdr_size, file_size, *out, why)
                          : refuse(why, Status::Corrupt).text("metadata is not valid JSON (").text(err.what)
                                .text(" at byte ").num(err.offset).text(")").done();
    alloc.deallocate(tokens, TOKEN_BYTES);
    return st;
}

Status luks2_load(guest::BlockDevice& dev, guest::Allocator& alloc, Luks2Header* out, LuksWhy* why, bool* not_luks2) {
    if (not_luks2 != nullptr)
        *not_luks2 = false;
    if (why != nullptr)
        why->text[0] = 0;
    auto* bin = static_cast<uint8_t*>(alloc.allocate(LUKS2_BIN_HEADER_BYTES, 16));
    if (bin == nullptr)
        return Status::NoMemory;
    Copy primary, secondary;
    Status st = check_copy(dev, alloc, 0, MAGIC_PRIMARY, bin, &primary);
    if (st == Status::Ok) {
        // The secondary copy follows the primary; when the primary's size is unreadable, cryptsetup
        // looks at every offset a secondary can have.
        if (primary.plausible) {
            st = check_copy(dev, alloc, primary.hdr_size, MAGIC_SECONDARY, bin, &secondary);
        } else {
            for (uint64_t at : SECONDARY_OFFSETS)
                if ((st = check_copy(dev, alloc, at, MAGIC_SECONDARY, bin, &secondary)) != Status::Ok ||
                    secondary.plausible)
                    break;
        }
    }
    alloc.deallocate(bin, LUKS2_BIN_HEADER_BYTES);
    Luks2Header& h = *out;
    h = Luks2Header{};
    if (st != Status::Ok) {
        refuse(why, st).text("header could not be read");
    } else if (!primary.plausible && !secondary.plausible) {
        if (not_luks2 != nullptr)
            *not_luks2 = true;
        st = refuse(why, Status::Unsupported).text("header is not valid in either copy (no LUKS2 header size)").done();
    } else if (!primary.valid && !secondary.valid) {
        st = refuse(why, Status::Corrupt).text("header checksum is wrong in both copies (or a copy is cut short)").done();
    } else {
        const bool use_secondary = secondary.valid && (!primary.valid || secondary.seqid > primary.seqid);
        const Copy& c = use_secondary ? secondary : primary;
        h.hdr_size = c.hdr_size;
        h.seqid = c.seqid;
        h.from_secondary = use_secondary;
        h.uuid_len = bounded_strlen(c.bytes + OFF_UUID, UUID_LEN);
        if (h.uuid_len == UUID_LEN)
            --h.uuid_len;
        __builtin_memcpy(h.uuid, c.bytes + OFF_UUID, h.uuid_len);
        // The metadata text: the JSON area up to its first NUL.
        // SAFETY: bytes viewed as chars (same size and alignment); json_len stays inside the copy.
        const auto* json = reinterpret_cast<const char*>(c.bytes + LUKS2_BIN_HEADER_BYTES);
        const size_t json_len = bounded_strlen(c.bytes + LUKS2_BIN_HEADER_BYTES, c.hdr_size - LUKS2_BIN_HEADER_BYTES);
        // The other copy is not needed while the text is parsed.
        release(alloc, use_secondary ? &primary : &secondary);
        st = luks2_parse_json(json, json_len, c.hdr_size, dev.size(), alloc, &h, why);
    }
    release(alloc, &primary);
    release(alloc, &secondary);
    return st;
}

uint64_t luks2_payload_size(const Luks2Header& h, uint64_t file_size) {
    if (!h.seg_dynamic)
        return h.seg_size;
    const uint64_t rest = file_size > h.seg_offset ? file_size - h.seg_offset : 0;
    return rest / h.sector_size * h.sector_size;
}

void luks2_as_luks1(const Luks2Header& h, LuksHeader* out) {
    LuksHeader r;
    r.cipher_alg = h.seg.cipher_alg;
    r.cipher_name = h.seg.cipher_name;
    r.cipher_mode = h.seg.cipher_mode;
    r.ivgen_alg = h.seg.ivgen_alg;
    r.ivgen_hash_alg = h.seg.ivgen_hash_alg;
    r.key_bytes = h.seg.key_bytes;
    r.hash_alg = h.digest_hash;
    r.payload_offset = h.seg_offset;
    r.master_key_iterations = h.digest_iterations;
    __builtin_memcpy(r.uuid, h.uuid, h.uuid_len);
    r.uuid_len = h.uuid_len;
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS; ++i) {
        r.slots[i].active = h.slots[i].present;
        r.slots[i].iterations = h.slots[i].iterations;
        r.slots[i].stripes = h.slots[i].present ? LUKS_STRIPES : 0;
        r.slots[i].key_offset = h.slots[i].area_offset;
    }
    *out = r;
}

} // namespace instar::luks
