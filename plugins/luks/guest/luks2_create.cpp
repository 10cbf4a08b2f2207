// Creating LUKS2 volumes (an instar extension: `-o luks-version=2`; qemu-img creates LUKS1 only),
// laid out as cryptsetup 2.x's `luksFormat --type luks2 --pbkdf pbkdf2` lays out a file
// (cryptsetup: lib/luks2/luks2_json_format.c, luks2_disk_metadata.c, luks2_digest_pbkdf2.c): the
// options, keys, salts and iterations are luks_plan_header's (qemu's LUKS1 choices), written as
// the LUKS2 metadata the reader (luks2_header.cpp) and cryptsetup both check.
#include "luks2_header.h"
#include "luks_bytes.h"
#include "luks_create.h"

#include <instar/guest/format_util.h>

namespace instar::luks {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Status;

namespace {

// cryptsetup's defaults for a new volume: 16 KiB header copies (LUKS2_HDR_16K_LEN: the smallest,
// 12 KiB of JSON, far more than one key slot needs), the data segment at 16 MiB
// (LUKS2_DEFAULT_HDR_SIZE: room for 32 key slots of a 512-bit key), key slot areas aligned to 4 KiB.
constexpr uint64_t NEW_HDR_SIZE = LUKS2_MIN_HDR_SIZE;
constexpr uint64_t NEW_JSON_SIZE = NEW_HDR_SIZE - LUKS2_BIN_HEADER_BYTES;
constexpr uint64_t NEW_SEGMENT_OFFSET = 16u << 20;
constexpr uint64_t NEW_KEYSLOTS_SIZE = NEW_SEGMENT_OFFSET - 2 * NEW_HDR_SIZE;
constexpr uint64_t AREA_ALIGN = 4096;
constexpr uint32_t SALT_BYTES = 32; // cryptsetup's LUKS_SALTSIZE, as qemu's LUKS1 salts

// The metadata text, built in place in the JSON area; `ok` turns false (and stays) when it would
// not fit.
struct JsonText {
    char* buf;
    size_t cap;
    size_t at = 0;
    bool ok = true;

    JsonText& add(const char* s, size_t n) {
        if (n > cap - at) {
            ok = false;
            return *this;
        }
        __builtin_memcpy(buf + at, s, n);
        at += n;
        return *this;
    }
    JsonText& str(const char* s) { return add(s, __builtin_strlen(s)); }
    JsonText& num(uint64_t v) {
        char digits[20];
        return add(digits, guest::format_unsigned(digits, v, 10));
    }
    // A 64-bit number as cryptsetup writes offsets and sizes: a decimal string.
    JsonText& qnum(uint64_t v) { return str("\"").num(v).str("\""); }
    JsonText& b64(const uint8_t* p, size_t n) {
        constexpr char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        str("\"");
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = uint32_t{p[i]} << 16;
            if (i + 1 < n) v |= uint32_t{p[i + 1]} << 8;
            if (i + 2 < n) v |= p[i + 2];
            const char q[4] = {A[(v >> 18) & 63], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=',
                               i + 2 < n ? A[v & 63] : '='};
            add(q, 4);
        }
        return str("\"");
    }
};

// The cipher spec both the key slot area and the segment use ("aes-xts-plain64",
// "aes-cbc-essiv:sha256"): the LUKS1 header's cipher name and mode fields joined.
void cipher_spec(const LuksHeaderDisk& d, char out[2 * LUKS_NAME_FIELD + 2]) {
    const size_t n = bounded_strlen(d.cipher_name, LUKS_NAME_FIELD);
    const size_t m = bounded_strlen(d.cipher_mode, LUKS_NAME_FIELD);
    __builtin_memcpy(out, d.cipher_name, n);
    out[n] = '-';
    __builtin_memcpy(out + n + 1, d.cipher_mode, m);
    out[n + 1 + m] = 0;
}

// cryptsetup's metadata for one pbkdf2 key slot, one crypt segment and one digest.
bool write_json(const LuksPlan& p, const char* spec, const char* hash, uint64_t area_size, const uint8_t* digest,
                size_t digest_len, JsonText& j) {
    const uint32_t key = p.h.key_bytes;
    j.str("{\"keyslots\":{\"0\":{\"type\":\"luks2\",\"key_size\":").num(key);
    j.str(",\"af\":{\"type\":\"luks1\",\"stripes\":").num(LUKS_STRIPES).str(",\"hash\":\"").str(hash).str("\"}");
    j.str(",\"area\":{\"type\":\"raw\",\"offset\":").qnum(2 * NEW_HDR_SIZE).str(",\"size\":").qnum(area_size);
    j.str(",\"encryption\":\"").str(spec).str("\",\"key_size\":").num(key).str("}");
    j.str(",\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"").str(hash).str("\",\"iterations\":").num(p.slot_iters);
    j.str(",\"salt\":").b64(p.disk.key_slots[0].salt, SALT_BYTES).str("}}}");
    j.str(",\"tokens\":{}");
    j.str(",\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":").qnum(NEW_SEGMENT_OFFSET);
    j.str(",\"size\":\"dynamic\",\"iv_tweak\":\"0\",\"encryption\":\"").str(spec);
    j.str("\",\"sector_size\":").num(LUKS_SECTOR_SIZE).str("}}");
    j.str(",\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"keyslots\":[\"0\"],\"segments\":[\"0\"],\"hash\":\"").str(hash);
    j.str("\",\"iterations\":").num(p.mk_iters).str(",\"salt\":").b64(p.disk.master_key_salt, SALT_BYTES);
    j.str(",\"digest\":").b64(digest, digest_len).str("}}");
    j.str(",\"config\":{\"json_size\":").qnum(NEW_JSON_SIZE).str(",\"keyslots_size\":").qnum(NEW_KEYSLOTS_SIZE);
    j.str("}}");
    return j.ok;
}

// One header copy in buf[NEW_HDR_SIZE] (the JSON already in place after the binary header): magic,
// version 2, sizes, seqid 1, sha256 over the whole copy with the checksum field zeroed.
void seal_copy(uint8_t* buf, bool secondary, const uint8_t* uuid, KeyStream& rng) {
    auto* d = reinterpret_cast<Luks2HeaderDisk*>(buf);
    const uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
    const uint8_t magic2[6] = {'S', 'K', 'U', 'L', 0xba, 0xbe};
    __builtin_memcpy(d->magic, secondary ? magic2 : magic, 6);
    store_be(d->version, 2, 2);
    store_be(d->hdr_size, NEW_HDR_SIZE, 8);
    store_be(d->seqid, 1, 8);
    __builtin_memcpy(d->checksum_alg, "sha256", 6);
    rng.fill(d->salt, sizeof d->salt);
    __builtin_memcpy(d->uuid, uuid, 36);
    store_be(d->hdr_offset, secondary ? NEW_HDR_SIZE : 0, 8);
    __builtin_memset(d->csum, 0, sizeof d->csum);
    luks_hash("sha256", buf, NEW_HDR_SIZE, d->csum);
}

Status fail(CreateTarget& t, const char* text) { return guest::create_fail(t, Status::Unsupported, text); }

} // namespace

Status luks2_create_header(const CreateRequest& req, CreateTarget& t, LuksHeaderTarget& out, SectorCipher* payload,
                           uint64_t* header_len) {
    if (req.allocator == nullptr) return Status::Invalid;
    guest::Allocator& alloc = *req.allocator;
    auto* p = guest::arena_new<LuksPlan>(alloc, req.random);
    if (p == nullptr) return Status::NoMemory;
    Status st = luks_plan_header(req, t, "", p);
    const LuksHeader& h = p->h;
    const char* hash = h.hash_alg;
    // dm-crypt's ecb takes no IV generator, and qemu's options always name one: cryptsetup could
    // not open such a volume.
    // (Every mode name is three letters: comparing four bytes with the NUL is in bounds.)
    if (st == Status::Ok && __builtin_memcmp(h.cipher_mode, "ecb", 4) == 0)
        st = fail(t, "instar does not create LUKS2 volumes in ecb mode: dm-crypt's ecb takes no IV generator");
    *header_len = NEW_SEGMENT_OFFSET;
    if (st == Status::Ok) st = out.init(NEW_SEGMENT_OFFSET);
    if (st != Status::Ok) { // refused, with the reason already given to `t`
        delete_wiped(alloc, p);
        return st;
    }
    const uint64_t split_len = uint64_t{h.key_bytes} * LUKS_STRIPES;
    const uint64_t area_size = (split_len + AREA_ALIGN - 1) / AREA_ALIGN * AREA_ALIGN;

    // Key slot 0: the area holds the split key, zero-padded to its 4 KiB-aligned size.
    auto* area = static_cast<uint8_t*>(alloc.allocate(area_size, 16));
    if (area == nullptr) st = Status::NoMemory;
    if (st == Status::Ok) {
        __builtin_memset(area, 0, area_size);
        st = luks_seal_key(h, p->master_key, req.secret, req.secret_len, p->disk.key_slots[0].salt, p->slot_iters,
                           p->rng, alloc, area);
    }
    if (st == Status::Ok) st = out.write(2 * NEW_HDR_SIZE, area, static_cast<size_t>(area_size));
    if (area != nullptr) {
        __builtin_memset(area, 0, area_size);
        alloc.deallocate(area, area_size);
    }

    // The digest: PBKDF2 of the volume key over the LUKS1 plan's master key salt and iterations,
    // the hash's whole length (as cryptsetup writes it; LUKS1's is 20 bytes).
    uint8_t digest[LUKS_MAX_DIGEST_BYTES];
    const size_t digest_len = luks_digest_len(hash);
    if (st == Status::Ok && !luks_pbkdf2(hash, p->master_key, h.key_bytes, p->disk.master_key_salt, SALT_BYTES,
                                         p->mk_iters, digest, digest_len))
        st = Status::Unsupported;

    auto* copy = st == Status::Ok ? static_cast<uint8_t*>(alloc.allocate(NEW_HDR_SIZE, 16)) : nullptr;
    if (st == Status::Ok && copy == nullptr) st = Status::NoMemory;
    if (st == Status::Ok) {
        __builtin_memset(copy, 0, NEW_HDR_SIZE);
        char spec[2 * LUKS_NAME_FIELD + 2];
        cipher_spec(p->disk, spec);
        JsonText j{reinterpret_cast<char*>(copy) + LUKS2_BIN_HEADER_BYTES, NEW_JSON_SIZE - 1};
        if (!write_json(*p, spec, hash, area_size, digest, digest_len, j))
            st = fail(t, "the LUKS2 metadata does not fit its 12 KiB area");
    }
    // The secondary copy first, the primary last: a file cut short has no primary header.
    for (int copy_index = 1; copy_index >= 0 && st == Status::Ok; --copy_index) {
        const bool secondary = copy_index == 1;
        seal_copy(copy, secondary, p->disk.uuid, p->rng);
        st = out.write(secondary ? NEW_HDR_SIZE : 0, copy, NEW_HDR_SIZE);
    }
    if (copy != nullptr) alloc.deallocate(copy, NEW_HDR_SIZE);
    if (st == Status::Ok) st = payload->init(h, p->master_key, h.key_bytes, true);
    delete_wiped(alloc, p);
    return luks_seal_failed(t, st);
}

} // namespace instar::luks
