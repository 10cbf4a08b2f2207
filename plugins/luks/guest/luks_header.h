// The LUKS1 partition header that qcow2's full disk encryption extension points at: layout,
// parsed form (qemu's QCryptoBlockInfoLUKS), and its report as qemu's "encrypt" object.
#pragma once

#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

using guest::Status;

inline constexpr uint32_t LUKS_NUM_KEY_SLOTS = 8;
inline constexpr uint32_t LUKS_STRIPES = 4000;          // the only anti-forensic stripe count qemu accepts
inline constexpr uint32_t LUKS_KEY_SLOT_ENABLED = 0x00AC71F3;
inline constexpr uint32_t LUKS_KEY_SLOT_DISABLED = 0x0000DEAD;
inline constexpr uint32_t LUKS_SECTOR_SIZE = 512;
inline constexpr uint32_t LUKS_KEY_SLOT_OFFSET = 4096; // key material starts after the header's 8 sectors
// The size of a LUKS1 header's name fields (cipher-name, cipher-mode, hash-spec).
inline constexpr size_t LUKS_NAME_FIELD = 32;

struct LuksKeySlotDisk {
    uint8_t active[4];
    uint8_t iterations[4];
    uint8_t salt[32];
    uint8_t key_offset_sector[4];
    uint8_t stripes[4];
};
static_assert(sizeof(LuksKeySlotDisk) == 48, "LUKS key slot layout");

struct LuksHeaderDisk {
    uint8_t magic[6]; // "LUKS\xba\xbe"
    uint8_t version[2];
    uint8_t cipher_name[LUKS_NAME_FIELD];
    uint8_t cipher_mode[LUKS_NAME_FIELD];
    uint8_t hash_spec[LUKS_NAME_FIELD];
    uint8_t payload_offset_sector[4];
    uint8_t master_key_len[4];
    uint8_t master_key_digest[20];
    uint8_t master_key_salt[32];
    uint8_t master_key_iterations[4];
    uint8_t uuid[40];
    LuksKeySlotDisk key_slots[LUKS_NUM_KEY_SLOTS];
};
static_assert(sizeof(LuksHeaderDisk) == 592, "LUKS1 header layout");

struct LuksKeySlot {
    bool active = false;
    uint32_t iterations = 0;
    uint32_t stripes = 0;
    uint64_t key_offset = 0; // bytes
};

// Names are qemu's QAPI enum strings (static storage).
struct LuksHeader {
    const char* cipher_alg = nullptr;
    const char* cipher_name = nullptr; // "aes", "serpent", ... (the header's cipher-name)
    uint32_t key_bytes = 0;            // master key length
    uint8_t mk_digest[20] = {};
    uint8_t mk_salt[32] = {};
    uint8_t slot_salt[LUKS_NUM_KEY_SLOTS][32] = {};
    const char* cipher_mode = nullptr;
    const char* ivgen_alg = nullptr;
    const char* ivgen_hash_alg = nullptr; // only for essiv
    const char* hash_alg = nullptr;
    uint64_t payload_offset = 0; // bytes
    uint32_t master_key_iterations = 0;
    char uuid[40] = {};
    size_t uuid_len = 0;
    LuksKeySlot slots[LUKS_NUM_KEY_SLOTS];
};

// Why a header was refused, in qemu's words ("Keyslot 3 is corrupted (stripes 5 != 4000)"). The
// longest quotes a 31-byte name and a 10-digit number.
struct LuksWhy {
    char text[128] = {};
};

// Parses and checks a LUKS1 header the way qemu opens one without a key (crypto/block-luks.c's
// check_header then parse_header: magic, version, NUL-terminated names, the payload offset,
// iteration counts, key slot sanity and overlaps with qemu's 32-bit arithmetic, then the cipher
// mode, IV hash, cipher, hash, IV generator and ESSIV cipher lookups), stopping at the first
// refusal with qemu's message in `why`. `detached`: the header is a file of its own (qemu 9.0+'s
// header=), so the payload-overlap checks do not apply.
Status luks_header_parse(const uint8_t* data, size_t len, LuksHeader* out, bool detached = false,
                         LuksWhy* why = nullptr);

// qemu's QCryptoHashAlgorithm (and QCryptoCipherAlgorithm: sm4) gained sm3 in 9.0; older qemu-img
// cannot name it in a header or an option.
inline constexpr uint32_t LUKS_SM_QEMU_VERSION = 90000;
// luks_unlock's default profile: every hash the parser knows.
inline constexpr uint32_t LUKS_ANY_QEMU_VERSION = 0xffffffffu;

// qemu-img `qemu_version`'s refusal of a parsed header naming a hash it lacks (sm3 before 9.0:
// "Hash algorithm 'sm3' not supported", whether as the PBKDF2 hash or essiv's IV hash), or nullptr.
const char* luks_header_profile_refusal(const LuksHeader& h, uint32_t qemu_version);

// qemu's LUKS cipher map read backwards: the header's cipher-name and key size (one key; xts has
// two) of a QAPI cipher-alg ("serpent-192": "serpent", 24). false: no LUKS name (des, 3des, sm4).
bool luks_cipher_for_alg(const char* qapi_name, const char** luks_name, uint32_t* key_bytes);

// qcrypto_block_luks_essiv_cipher: whether an ESSIV cipher exists for a cipher (LUKS name, one key's
// size) and an IV hash's digest length: the cipher itself, or its family at the digest's key size.
bool luks_essiv_cipher_exists(const char* luks_name, uint32_t key_bytes, uint32_t digest_len);

// Emits the body of qemu's ImageInfoSpecificQCow2Encryption for format "luks", inside an open object.
// `detached`: the value of "detached-header" (qemu 9.0+: the header's payload offset is 0, as
// qcrypto_block_luks_open sets block->detached_header).
void luks_header_report(const LuksHeader& h, bool with_detached_header, guest::InfoSink& sink, bool detached = false);

} // namespace instar::luks
