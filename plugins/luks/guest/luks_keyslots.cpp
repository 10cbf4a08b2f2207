// Key-slot changes of a LUKS1 header (luks_keyslots.h): qcrypto_block_luks_amend_add_keyslot and
// qcrypto_block_luks_amend_erase_keyslots, with create's key material code (luks_seal_key) and the
// reader's slot check (luks_load_key).
#include "luks_keyslots.h"

#include "luks_create.h"
#include "luks_crypto.h"
#include "luks_format.h"
#include "luks_header.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

namespace instar::luks {

using guest::BlockDevice;
using guest::EditHost;
using guest::EditRequest;
using guest::Status;

namespace {

constexpr uint64_t DEFAULT_ITER_TIME_MS = 2000; // QCRYPTO_BLOCK_LUKS_DEFAULT_ITER_TIME_MS
constexpr uint32_t ERASE_PASSES = 16;           // QCRYPTO_BLOCK_LUKS_ERASE_ITERATIONS
constexpr size_t SALT_BYTES = 32;

// qemu's messages: literal parts, a key slot number or a secret id between them.
struct Message {
    char text[guest::CREATE_MAX_REASON] = {};
    Message& add(const char* s) {
        guest::append_text(text, sizeof text, s);
        return *this;
    }
    Message& add(const char* s, size_t len) {
        size_t at = 0;
        while (text[at] != 0) ++at;
        for (size_t i = 0; i < len && at + 1 < sizeof text; ++i) text[at++] = s[i];
        text[at] = 0;
        return *this;
    }
    Message& num(uint64_t v) {
        guest::append_decimal(text, sizeof text, v);
        return *this;
    }
};

Status refuse(EditHost& host, const Message& m, Status st = Status::Invalid) {
    return guest::edit_refuse(host, m.text, st);
}

Status refuse(EditHost& host, const char* text, Status st = Status::Invalid) {
    return guest::edit_refuse(host, text, st);
}

class HostReasons final : public guest::ReasonSink {
public:
    explicit HostReasons(EditHost& host) : host_(host) {}
    void reason(const char* text, size_t len) override { host_.reason(text, len); }

private:
    EditHost& host_;
};

void put_be32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

uint32_t count_active(const LuksHeader& h) {
    uint32_t n = 0;
    for (const LuksKeySlot& s : h.slots) n += s.active ? 1 : 0;
    return n;
}

// The secret the host sent for `index`, or nullptr (qcrypto_secret_lookup failed: no such id).
const uint8_t* secret(const EditRequest& req, uint32_t index, size_t* len) {
    if (req.secrets == nullptr || req.secrets[index] == nullptr) return nullptr;
    *len = req.secret_lengths[index];
    return req.secrets[index];
}

Status no_secret(EditHost& host, const char* id, size_t len) {
    return refuse(host, Message{}.add("No secret with id '").add(id, len).add("'"));
}

// qcow2_crypto_hdr_write_func's bound: a write must end inside the header's `limit` bytes.
Status inside(EditHost& host, uint64_t limit, uint64_t offset, uint64_t len) {
    if (offset > limit || len > limit - offset)
        return refuse(host, "Request for data outside of extension header", Status::Corrupt);
    return Status::Ok;
}

// The header bytes at `base` with slot `slot`'s entry changed by `edit`, written and flushed (one
// 592-byte write inside the first sector: the switch point of both directions).
template <typename Edit>
Status edit_slot(BlockDevice& dev, uint64_t base, uint64_t limit, EditHost& host, uint32_t slot, Edit&& edit) {
    LuksHeaderDisk d;
    if (const Status st = inside(host, limit, 0, sizeof d); st != Status::Ok) return st;
    if (const Status st = dev.read(base, &d, sizeof d); st != Status::Ok) return st;
    edit(d.key_slots[slot]);
    if (const Status st = dev.write(base, &d, sizeof d); st != Status::Ok) return st;
    return host.flush(dev);
}

// Slot `slot`'s entry replaced by `entry`.
Status put_slot(BlockDevice& dev, uint64_t base, uint64_t limit, EditHost& host, uint32_t slot,
                const LuksKeySlotDisk& entry) {
    return edit_slot(dev, base, limit, host, slot, [&](LuksKeySlotDisk& s) { s = entry; });
}

// Slot `slot`'s state, iterations and salt changed (its offset and stripes kept).
Status write_slot(BlockDevice& dev, uint64_t base, uint64_t limit, EditHost& host, uint32_t slot, bool active,
                  uint32_t iterations, const uint8_t* salt) {
    return edit_slot(dev, base, limit, host, slot, [&](LuksKeySlotDisk& s) {
        put_be32(s.active, active ? LUKS_KEY_SLOT_ENABLED : LUKS_KEY_SLOT_DISABLED);
        put_be32(s.iterations, iterations);
        if (salt != nullptr) __builtin_memcpy(s.salt, salt, SALT_BYTES);
        else __builtin_memset(s.salt, 0, SALT_BYTES);
    });
}

// Sealed key material for one passphrase: what store_key writes into a slot.
struct SealedKey {
    const uint8_t* split;
    size_t split_len;
    uint32_t iterations;
    const uint8_t* salt;
};

// The material written and flushed, then the header entry that names it (qemu's order).
Status place_key(BlockDevice& dev, uint64_t base, uint64_t limit, EditHost& host, const LuksHeader& h,
                 uint32_t slot, const SealedKey& k) {
    Status st = dev.write(base + h.slots[slot].key_offset, k.split, k.split_len);
    if (st == Status::Ok) st = host.flush(dev);
    if (st == Status::Ok) st = write_slot(dev, base, limit, host, slot, true, k.iterations, k.salt);
    return st;
}

// `--force` over an active slot. qemu writes the new material over the old in place, so a kill
// between that write and the header entry leaves the slot opening with neither passphrase: with no
// other active slot, the image is lost. Here the new key first goes into a free slot (material,
// then its entry: from then on the new passphrase opens the image), then into the slot asked for;
// then the free slot's entry is put back (flushed) and its former bytes restored. The result is
// qemu's, byte for byte where qemu's is deterministic; a kill at any point leaves the old or the new
// passphrase opening the image. Without a free slot (all eight active, so others open the image),
// qemu's order.
Status replace_active_key(BlockDevice& dev, uint64_t base, uint64_t limit, const EditRequest& req, EditHost& host,
                          const LuksHeader& h, uint32_t slot, const SealedKey& k) {
    uint32_t spare = LUKS_NUM_KEY_SLOTS;
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS && spare == LUKS_NUM_KEY_SLOTS; ++i)
        if (!h.slots[i].active) spare = i;
    if (spare == LUKS_NUM_KEY_SLOTS) return place_key(dev, base, limit, host, h, slot, k);
    if (const Status st = inside(host, limit, h.slots[spare].key_offset, k.split_len); st != Status::Ok) return st;
    LuksHeaderDisk d;
    if (const Status st = dev.read(base, &d, sizeof d); st != Status::Ok) return st;
    const LuksKeySlotDisk spare_entry = d.key_slots[spare];
    auto* before = static_cast<uint8_t*>(req.allocator->allocate(k.split_len, 16));
    if (before == nullptr) return Status::NoMemory;
    Status st = dev.read(base + h.slots[spare].key_offset, before, k.split_len);
    if (st == Status::Ok) st = place_key(dev, base, limit, host, h, spare, k);
    if (st == Status::Ok) st = place_key(dev, base, limit, host, h, slot, k);
    if (st == Status::Ok) st = put_slot(dev, base, limit, host, spare, spare_entry);
    if (st == Status::Ok) st = dev.write(base + h.slots[spare].key_offset, before, k.split_len);
    if (st == Status::Ok) st = host.flush(dev);
    req.allocator->deallocate(before, k.split_len);
    return st;
}

// qcrypto_block_luks_store_key: new key material for `pass` in `slot`, flushed, then the header
// entry naming its salt and iterations (through a free slot when `slot` is active: replace_active_key).
Status store_key(BlockDevice& dev, uint64_t base, uint64_t limit, const EditRequest& req, EditHost& host,
                 const LuksHeader& h, uint32_t slot, const uint8_t* master_key, const uint8_t* pass, size_t pass_len,
                 uint64_t iter_time) {
    uint32_t iterations = 0;
    if (iter_time > UINT32_MAX || !luks_iterations(h.hash_alg, h.key_bytes, iter_time, 1, &iterations))
        return refuse(host, "PBKDF iterations too large: lower iter-time");
    KeyStream rng(req.random);
    uint8_t salt[SALT_BYTES];
    rng.fill(salt, sizeof salt);
    const size_t split_len = size_t{h.key_bytes} * LUKS_STRIPES;
    auto* split = static_cast<uint8_t*>(req.allocator->allocate(split_len, 16));
    if (split == nullptr) return Status::NoMemory;
    Status st = luks_seal_key(h, master_key, pass, pass_len, salt, iterations, rng, *req.allocator, split);
    if (st == Status::Ok) st = inside(host, limit, h.slots[slot].key_offset, split_len);
    const SealedKey k{split, split_len, iterations, salt};
    if (st == Status::Ok)
        st = h.slots[slot].active ? replace_active_key(dev, base, limit, req, host, h, slot, k)
                                  : place_key(dev, base, limit, host, h, slot, k);
    __builtin_memset(split, 0, split_len);
    req.allocator->deallocate(split, split_len);
    if (st == Status::Unsupported) return refuse(host, "this LUKS cipher, mode or hash is not supported by instar yet", st);
    return st;
}

// qcrypto_block_luks_erase_key: the header entry disabled (flushed) first, then the key material
// overwritten with random bytes ERASE_PASSES times.
Status erase_key(BlockDevice& dev, uint64_t base, uint64_t limit, EditHost& host, const LuksHeader& h, uint32_t slot,
                 KeyStream& rng, uint8_t* scratch) {
    const size_t split_len = size_t{h.key_bytes} * LUKS_STRIPES;
    // Checked before the header entry is disabled: an erase refused halfway would lose the slot
    // and keep its key material.
    if (const Status st = inside(host, limit, h.slots[slot].key_offset, split_len); st != Status::Ok) return st;
    if (const Status st = write_slot(dev, base, limit, host, slot, false, 0, nullptr); st != Status::Ok) return st;
    for (uint32_t pass = 0; pass < ERASE_PASSES; ++pass) {
        rng.fill(scratch, split_len);
        if (const Status st = dev.write(base + h.slots[slot].key_offset, scratch, split_len); st != Status::Ok)
            return st;
    }
    return host.flush(dev);
}

// The slot index the user named: qemu keeps the number's low 32 bits in an int, and prints a bad
// one unsigned when adding (%u: 4294967295) and signed when erasing (%i: -1).
bool keyslot_of(const KeySlotChange& c, EditHost& host, bool as_signed, uint32_t* slot, Status* st) {
    const auto raw = static_cast<uint32_t>(c.args.keyslot);
    if (raw >= LUKS_NUM_KEY_SLOTS) {
        Message m;
        m.add("Invalid keyslot ");
        if (as_signed && raw > INT32_MAX)
            m.add("-").num(uint64_t{UINT32_MAX} - raw + 1);
        else
            m.num(raw);
        *st = refuse(host, m.add(" specified, must be between 0 and ").num(LUKS_NUM_KEY_SLOTS - 1));
        return false;
    }
    *slot = raw;
    return true;
}

Status add_keyslot(BlockDevice& dev, uint64_t base, uint64_t limit, const KeySlotChange& c, const EditRequest& req,
                   EditHost& host, const LuksHeader& h, const uint8_t* master_key) {
    uint32_t slot = LUKS_NUM_KEY_SLOTS;
    Status st = Status::Ok;
    if ((c.args.given & guest::KEYSLOT_KEYSLOT) != 0) {
        if (!keyslot_of(c, host, false, &slot, &st)) return st;
    } else {
        for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS && slot == LUKS_NUM_KEY_SLOTS; ++i)
            if (!h.slots[i].active) slot = i;
        if (slot == LUKS_NUM_KEY_SLOTS) return refuse(host, "Can't add a keyslot - all keyslots are in use");
    }
    if (!c.force && h.slots[slot].active)
        return refuse(host,
                      Message{}.add("Refusing to overwrite active keyslot ").num(slot).add(" - please erase it first"));
    size_t pass_len = 0;
    const uint8_t* pass = secret(req, guest::EDIT_SECRET_NEW, &pass_len);
    if (pass == nullptr) return no_secret(host, c.new_id, c.new_id_len);
    const uint64_t iter_time = (c.args.given & guest::KEYSLOT_ITER_TIME) != 0 ? c.args.iter_time : DEFAULT_ITER_TIME_MS;
    return store_key(dev, base, limit, req, host, h, slot, master_key, pass, pass_len, iter_time);
}

Status erase_keyslots(BlockDevice& dev, uint64_t base, uint64_t limit, const KeySlotChange& c,
                      const EditRequest& req, EditHost& host, const LuksHeader& h) {
    const bool has_old = (c.args.given & guest::KEYSLOT_OLD_SECRET) != 0;
    size_t old_len = 0;
    const uint8_t* old = has_old ? secret(req, guest::EDIT_SECRET_OLD, &old_len) : nullptr;
    if (has_old && old == nullptr) return no_secret(host, c.old_id, c.old_id_len);
    const bool has_slot = (c.args.given & guest::KEYSLOT_KEYSLOT) != 0;
    if (!has_slot && !has_old)
        return refuse(host, "To erase keyslot(s), either explicit keyslot index or the password currently contained "
                            "in them must be given");
    const size_t split_len = size_t{h.key_bytes} * LUKS_STRIPES;
    auto* scratch = static_cast<uint8_t*>(req.allocator->allocate(split_len, 16));
    if (scratch == nullptr) return Status::NoMemory;
    bool chosen[LUKS_NUM_KEY_SLOTS] = {};
    Status st = Status::Ok;
    uint8_t candidate[LUKS_MAX_KEY_BYTES];
    if (has_slot) {
        uint32_t slot = 0;
        if (!keyslot_of(c, host, true, &slot, &st)) {
        } else if (has_old && (st = luks_load_key(dev, base, *req.allocator, h, slot, old, old_len, scratch,
                                                  candidate)) != Status::Ok) {
            if (st == Status::Invalid)
                st = refuse(host, Message{}.add("Given keyslot ").num(slot).add(
                                      " doesn't contain the given old password for erase operation"));
        } else if (!c.force && !h.slots[slot].active) {
            st = refuse(host, Message{}.add("Given keyslot ").num(slot).add(" is already erased (inactive) "));
        } else if (!c.force && count_active(h) == 1) {
            st = refuse(host, Message{}.add("Attempt to erase the only active keyslot ").num(slot).add(
                                  " which will erase all the data in the image irreversibly - refusing operation"));
        } else {
            chosen[slot] = true;
        }
    } else {
        uint32_t matched = 0;
        for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS && st == Status::Ok; ++i) {
            if (!h.slots[i].active) continue;
            st = luks_load_key(dev, base, *req.allocator, h, i, old, old_len, scratch, candidate);
            if (st == Status::Ok) {
                chosen[i] = true;
                ++matched;
            } else if (st == Status::Invalid) {
                st = Status::Ok;
            }
        }
        if (st == Status::Ok && matched == 0)
            st = refuse(host, "No keyslots match given (old) password for erase operation");
        else if (st == Status::Ok && !c.force && matched == count_active(h))
            st = refuse(host, "All the active keyslots match the (old) password that was given and erasing them will "
                              "erase all the data in the image irreversibly - refusing operation");
    }
    __builtin_memset(candidate, 0, sizeof candidate);
    if (st == Status::Corrupt)
        st = refuse(host, "LUKS header asks for too many PBKDF2 iterations or has key material past the end", st);
    KeyStream rng(req.random);
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS && st == Status::Ok; ++i)
        if (chosen[i]) st = erase_key(dev, base, limit, host, h, i, rng, scratch);
    __builtin_memset(scratch, 0, split_len);
    req.allocator->deallocate(scratch, split_len);
    return st;
}

} // namespace

Status read_keyslot_change(const EditRequest& req, size_t at, bool force, KeySlotChange* out) {
    KeySlotChange c;
    if (req.args_len < at || req.args_len - at < sizeof c.args) return Status::Invalid;
    __builtin_memcpy(&c.args, req.args + at, sizeof c.args);
    at += sizeof c.args;
    if (c.args.new_id_len > guest::AMEND_MAX_STRING || c.args.old_id_len > guest::AMEND_MAX_STRING ||
        req.args_len - at != size_t{c.args.new_id_len} + c.args.old_id_len)
        return Status::Invalid;
    c.new_id = reinterpret_cast<const char*>(req.args + at);
    c.new_id_len = c.args.new_id_len;
    c.old_id = c.new_id + c.new_id_len;
    c.old_id_len = c.args.old_id_len;
    c.force = force;
    *out = c;
    return Status::Ok;
}

Status luks_amend_keyslots(BlockDevice& dev, uint64_t base, uint64_t limit, const KeySlotChange& change,
                           const EditRequest& req, EditHost& host) {
    if (!req.writable || req.allocator == nullptr) return Status::Invalid;
    if ((change.args.given & guest::KEYSLOT_ERROR) != 0) {
        host.reason(change.new_id, change.new_id_len);
        return Status::Invalid;
    }
    size_t key_len = 0;
    const uint8_t* key = secret(req, guest::EDIT_SECRET_KEY, &key_len);
    if (key == nullptr) return refuse(host, "Parameter 'key-secret' is required for cipher");
    // qemu opened the image with its key: the master key a new slot holds.
    LuksHeader h;
    uint8_t master_key[LUKS_MAX_KEY_BYTES];
    HostReasons reasons(host);
    auto* cipher = guest::arena_new<SectorCipher>(*req.allocator);
    if (cipher == nullptr) return Status::NoMemory;
    Status st = luks_unlock(dev, base, *req.allocator, key, key_len, &h, cipher, &reasons, master_key,
                            req.qemu_version);
    delete_wiped(*req.allocator, cipher);
    if (st == Status::Ok)
        st = change.args.active != 0 ? add_keyslot(dev, base, limit, change, req, host, h, master_key)
                                     : erase_keyslots(dev, base, limit, change, req, host, h);
    __builtin_memset(master_key, 0, sizeof master_key);
    return st;
}

} // namespace instar::luks
