// EditCommand::Amend's argument bytes (docs/amend.md): the host parsed `-o KEY=VAL,...` against
// qemu's amend option table (types checked, last value of a key wins) and sends which keys were
// given with their values; the format applies them in qemu's order (qcow2_amend_options), with
// every check that depends on the image.
//
// Layout: AmendArgs, then the strings it names (compat, backing_file, backing_fmt, data_file), each
// `*_len` bytes with no NUL, in that order; then, when AMEND_ENCRYPT is given, KeySlotArgs and its
// two secret ids (new, old; no NUL). The secrets themselves travel in the edit's secrets device
// (INSTAR_EDIT_SECRETS: EDIT_SECRET_KEY, _NEW, _OLD); an id the host found no secret for has none.
#pragma once

#include <stdint.h>

namespace instar::guest {

// AmendArgs::given: the keys the user set.
inline constexpr uint32_t AMEND_SIZE = 1u << 0;
inline constexpr uint32_t AMEND_COMPAT = 1u << 1;
inline constexpr uint32_t AMEND_BACKING_FILE = 1u << 2;
inline constexpr uint32_t AMEND_BACKING_FMT = 1u << 3;
inline constexpr uint32_t AMEND_DATA_FILE = 1u << 4;
inline constexpr uint32_t AMEND_DATA_FILE_RAW = 1u << 5;
inline constexpr uint32_t AMEND_LAZY_REFCOUNTS = 1u << 6;
inline constexpr uint32_t AMEND_REFCOUNT_BITS = 1u << 7;
inline constexpr uint32_t AMEND_ENCRYPT = 1u << 8; // any encrypt.* key (LUKS key slot changes)

// AmendArgs::flags.
inline constexpr uint32_t AMEND_FORCE = 1u << 0;    // --force
inline constexpr uint32_t AMEND_PROGRESS = 1u << 1; // -p (and not -q)

struct AmendArgs {
    uint32_t given;          // AMEND_*
    uint32_t flags;          // AMEND_FORCE, AMEND_PROGRESS
    uint64_t size;           // size=, bytes (0: no change, as qemu)
    uint64_t refcount_bits;  // refcount_bits=, as parsed (checked by the format)
    uint32_t lazy_refcounts; // 0 off, 1 on
    uint32_t data_file_raw;  // 0 off, 1 on
    uint32_t compat_len;
    uint32_t backing_file_len;
    uint32_t backing_fmt_len;
    uint32_t data_file_len;
    // The image's backing file's virtual size when it has one (has_backing = 1): size= growing an
    // overlay zeroes the new area the backing file would show through, as resize does.
    uint64_t backing_size;
    uint32_t has_backing;
    uint32_t reserved;
};
static_assert(sizeof(AmendArgs) == 64, "amend args layout");

// KeySlotArgs::given: the key-slot keys the user set (luks's state, keyslot, new-secret, old-secret,
// iter-time; qcow2's the same with "encrypt.").
inline constexpr uint32_t KEYSLOT_KEYSLOT = 1u << 0;
inline constexpr uint32_t KEYSLOT_NEW_SECRET = 1u << 1;
inline constexpr uint32_t KEYSLOT_OLD_SECRET = 1u << 2;
inline constexpr uint32_t KEYSLOT_ITER_TIME = 1u << 3;
// The host's QAPI check of the key-slot keys failed and the format reports it where qemu does
// (qcow2: after the option loop's own checks and the upgrade). The "new id" bytes then carry qemu's
// message instead of an id.
inline constexpr uint32_t KEYSLOT_ERROR = 1u << 4;

// qemu's QCryptoBlockAmendOptionsLUKS after the QAPI visitor (state given and valid: the host
// checks it).
struct KeySlotArgs {
    uint32_t given;       // KEYSLOT_*
    uint32_t active;      // state: 1 active, 0 inactive
    uint64_t keyslot;     // as parsed (qemu keeps the low 32 bits as an int)
    uint64_t iter_time;   // milliseconds, as parsed
    uint32_t new_id_len;  // new-secret's id
    uint32_t old_id_len;  // old-secret's id
};
static_assert(sizeof(KeySlotArgs) == 32, "key slot args layout");

// Longest string value the host sends: qemu keeps these in a header cluster (at most 2 MiB).
inline constexpr uint32_t AMEND_MAX_STRING = 4096;

} // namespace instar::guest
