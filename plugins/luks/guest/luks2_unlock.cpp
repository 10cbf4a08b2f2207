// Unlocking a LUKS2 volume (cryptsetup: lib/luks2/luks2_keyslot_luks2.c, luks2_digest_pbkdf2.c):
// derive a key slot's key (PBKDF2 through nettle, argon2i/argon2id through Debian's libargon2, one
// thread, lanes one after another, its memory from the guest arena), decrypt the slot's area,
// merge the stripes (af_merge, as LUKS1) and check the digest; then set up the segment's cipher.
#include "luks2_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

#include <argon2.h>

namespace instar::luks {

using guest::Status;

namespace {

// argon2's allocation callbacks carry no context: the allocator of the unlock under way. The guest
// runs one operation at a time (and the hosted tests one thread), so one pointer serves.
guest::Allocator* argon2_arena = nullptr;

int argon2_allocate(uint8_t** memory, size_t bytes) {
    *memory = argon2_arena != nullptr ? static_cast<uint8_t*>(argon2_arena->allocate(bytes, 64)) : nullptr;
    return *memory != nullptr ? ARGON2_OK : ARGON2_MEMORY_ALLOCATION_ERROR;
}

void argon2_free(uint8_t* memory, size_t bytes) {
    if (argon2_arena != nullptr && memory != nullptr)
        argon2_arena->deallocate(memory, bytes);
}

// What stopped a key slot from being tried: the argon2 memory it needed (KiB) when the arena had
// too little.
struct SlotTrouble {
    uint32_t slot = 0;
    uint32_t memory_kib = 0;
    const char* kdf = nullptr;
};

Status derive(const Luks2Keyslot& s, guest::Allocator& alloc, const uint8_t* pass, size_t pass_len, uint8_t* out,
              size_t out_len) {
    if (s.kdf == Luks2Kdf::Pbkdf2)
        return luks_pbkdf2(s.kdf_hash, pass, pass_len, s.salt, s.salt_len, s.iterations, out, out_len)
                   ? Status::Ok
                   : Status::Unsupported;
    argon2_context ctx{};
    ctx.out = out;
    ctx.outlen = static_cast<uint32_t>(out_len);
    ctx.pwd = const_cast<uint8_t*>(pass); // argon2 only wipes it with ARGON2_FLAG_CLEAR_PASSWORD
    ctx.pwdlen = static_cast<uint32_t>(pass_len);
    ctx.salt = const_cast<uint8_t*>(s.salt);
    ctx.saltlen = static_cast<uint32_t>(s.salt_len);
    ctx.t_cost = s.iterations;
    ctx.m_cost = s.memory_kib;
    ctx.lanes = s.lanes;
    ctx.threads = 1; // no threads in the guest: argon2 fills the lanes one after another
    ctx.version = ARGON2_VERSION_13;
    ctx.allocate_cbk = argon2_allocate;
    ctx.free_cbk = argon2_free;
    ctx.flags = ARGON2_DEFAULT_FLAGS;
    argon2_arena = &alloc;
    const int rc = argon2_ctx(&ctx, s.kdf == Luks2Kdf::Argon2i ? Argon2_i : Argon2_id);
    argon2_arena = nullptr;
    if (rc == ARGON2_MEMORY_ALLOCATION_ERROR)
        return Status::NoMemory;
    return rc == ARGON2_OK ? Status::Ok : Status::Corrupt;
}

// One key slot: Ok (the volume key in key_out[h.seg.key_bytes]), Invalid (the passphrase does not
// open it), or another Status.
Status try_slot(guest::BlockDevice& dev, guest::Allocator& alloc, const Luks2Header& h, uint32_t id,
                const uint8_t* pass, size_t pass_len, uint8_t* split, uint8_t* key_out) {
    const Luks2Keyslot& s = h.slots[id];
    const size_t split_len = size_t{s.key_bytes} * LUKS_STRIPES;
    uint8_t area_key[LUKS_MAX_KEY_BYTES];
    Status st = derive(s, alloc, pass, pass_len, area_key, s.area.key_bytes);
    if (st == Status::Ok)
        st = dev.read(s.area_offset, split, split_len);
    auto* c = st == Status::Ok ? guest::arena_new<SectorCipher>(alloc) : nullptr;
    if (st == Status::Ok && c == nullptr)
        st = Status::NoMemory;
    if (st == Status::Ok) {
        LuksHeader area;
        area.cipher_name = s.area.cipher_name;
        area.cipher_mode = s.area.cipher_mode;
        area.ivgen_alg = s.area.ivgen_alg;
        area.ivgen_hash_alg = s.area.ivgen_hash_alg;
        st = c->init(area, area_key, s.area.key_bytes);
        if (st == Status::Ok)
            c->decrypt(0, split, split_len);
    }
    __builtin_memset(area_key, 0, sizeof area_key);
    delete_wiped(alloc, c);
    if (st != Status::Ok)
        return st;
    uint8_t candidate[LUKS_MAX_KEY_BYTES];
    if (!af_merge(s.af_hash, s.key_bytes, LUKS_STRIPES, split, candidate))
        return Status::Unsupported;
    uint8_t digest[LUKS_MAX_DIGEST_BYTES];
    luks_pbkdf2(h.digest_hash, candidate, s.key_bytes, h.digest_salt, h.digest_salt_len, h.digest_iterations, digest,
                h.digest_len);
    uint8_t diff = 0;
    for (size_t k = 0; k < h.digest_len; ++k)
        diff |= static_cast<uint8_t>(digest[k] ^ h.digest[k]);
    if (diff == 0)
        __builtin_memcpy(key_out, candidate, s.key_bytes);
    __builtin_memset(candidate, 0, sizeof candidate);
    return diff == 0 ? Status::Ok : Status::Invalid;
}

const char* kdf_name(Luks2Kdf k) {
    return k == Luks2Kdf::Pbkdf2 ? "pbkdf2" : k == Luks2Kdf::Argon2i ? "argon2i" : "argon2id";
}

} // namespace

Status luks2_unlock(guest::BlockDevice& dev, guest::Allocator& alloc, const Luks2Header& h, const uint8_t* pass,
                    size_t pass_len, SectorCipher* cipher, guest::ReasonSink* reasons, SectorCipher* encryptor) {
    const size_t split_len = size_t{h.seg.key_bytes} * LUKS_STRIPES;
    auto* split = static_cast<uint8_t*>(alloc.allocate(split_len, 16));
    if (split == nullptr)
        return Status::NoMemory;
    uint8_t key[LUKS_MAX_KEY_BYTES];
    Status result = Status::Invalid;
    Status trouble = Status::Ok; // the first failure other than a wrong passphrase
    SlotTrouble memory;
    // cryptsetup's order: priority "prefer" (2) slots first, then "normal" (1); "ignore" (0) ones
    // only when named, which instar cannot do.
    for (int pass_priority = 2; pass_priority >= 1 && result != Status::Ok; --pass_priority)
        for (uint32_t i = 0; i < LUKS2_MAX_KEYSLOTS && result != Status::Ok; ++i) {
            if (!(h.digest_slots & (1u << i)) || h.slots[i].priority != pass_priority)
                continue;
            const Status st = try_slot(dev, alloc, h, i, pass, pass_len, split, key);
            if (st == Status::Ok) {
                result = Status::Ok;
            } else if (st != Status::Invalid && trouble == Status::Ok) {
                trouble = st;
                memory = SlotTrouble{i, h.slots[i].memory_kib, kdf_name(h.slots[i].kdf)};
            }
        }
    __builtin_memset(split, 0, split_len);
    alloc.deallocate(split, split_len);
    if (result != Status::Ok) {
        __builtin_memset(key, 0, sizeof key);
        char text[256] = {}; // the longest: the memory refusal, about 200 bytes
        if (trouble == Status::NoMemory) {
            guest::append_text(text, sizeof text, "LUKS2 keyslot ");
            guest::append_decimal(text, sizeof text, memory.slot);
            guest::append_text(text, sizeof text, "'s ");
            guest::append_text(text, sizeof text, memory.kdf);
            guest::append_text(text, sizeof text, " needs ");
            guest::append_decimal(text, sizeof text, (uint64_t{memory.memory_kib} + 1023) / 1024);
            guest::append_text(text, sizeof text,
                               " MiB of guest memory, more than the sandbox has: raise --max-guest-memory (at most 3G)");
            guest::say_reason(reasons, text);
            return Status::NoMemory;
        }
        if (trouble == Status::Unsupported || trouble == Status::Corrupt) {
            guest::append_text(text, sizeof text, "LUKS2 keyslot ");
            guest::append_decimal(text, sizeof text, memory.slot);
            guest::append_text(text, sizeof text, " could not be used (its key derivation or cipher failed)");
            guest::say_reason(reasons, text);
            return trouble;
        }
        if (trouble != Status::Ok)
            return trouble; // an I/O error: the host names it
        guest::say_reason(reasons, "Invalid password, cannot unlock any keyslot");
        return Status::Invalid;
    }
    LuksHeader seg;
    seg.cipher_name = h.seg.cipher_name;
    seg.cipher_mode = h.seg.cipher_mode;
    seg.ivgen_alg = h.seg.ivgen_alg;
    seg.ivgen_hash_alg = h.seg.ivgen_hash_alg;
    Status st = cipher->init(seg, key, h.seg.key_bytes);
    if (st == Status::Ok && encryptor != nullptr)
        st = encryptor->init(seg, key, h.seg.key_bytes, true);
    __builtin_memset(key, 0, sizeof key);
    if (st != Status::Ok) {
        guest::say_reason(reasons, "LUKS2 segment 0 cipher is not supported");
        return st;
    }
    cipher->set_sector_size(h.sector_size);
    if (encryptor != nullptr)
        encryptor->set_sector_size(h.sector_size);
    return Status::Ok;
}

} // namespace instar::luks

namespace instar::luks {

namespace {

void put_name(guest::InfoSink& sink, const char* key, const char* value) {
    sink.put_string(key, value, __builtin_strlen(value));
}

} // namespace

void luks2_report(const Luks2Header& h, bool with_detached_header, guest::InfoSink& sink) {
    put_name(sink, "cipher-alg", h.seg.cipher_alg);
    put_name(sink, "cipher-mode", h.seg.cipher_mode);
    put_name(sink, "ivgen-alg", h.seg.ivgen_alg);
    if (h.seg.ivgen_hash_alg)
        put_name(sink, "ivgen-hash-alg", h.seg.ivgen_hash_alg);
    put_name(sink, "hash-alg", h.digest_hash);
    if (with_detached_header)
        sink.put_bool("detached-header", false);
    sink.put_int("payload-offset", static_cast<int64_t>(h.seg_offset));
    sink.put_int("master-key-iters", h.digest_iterations);
    sink.put_string("uuid", h.uuid, h.uuid_len);
    uint32_t shown = LUKS_NUM_KEY_SLOTS;
    for (uint32_t i = 0; i < LUKS2_MAX_KEYSLOTS; ++i)
        if (h.slots[i].present && i + 1 > shown)
            shown = i + 1;
    sink.begin_list("slots");
    for (uint32_t i = 0; i < shown; ++i) {
        const Luks2Keyslot& s = h.slots[i];
        sink.begin_object(nullptr);
        sink.put_bool("active", s.present);
        if (s.present) {
            sink.put_int("iters", s.iterations);
            sink.put_int("stripes", LUKS_STRIPES);
        }
        sink.put_int("key-offset", static_cast<int64_t>(s.area_offset));
        sink.end_object();
    }
    sink.end_list();
}

} // namespace instar::luks
