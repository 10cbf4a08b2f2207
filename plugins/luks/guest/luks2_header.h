// LUKS2 (cryptsetup's on-disk format 2, read only; an instar extension: qemu-img reads LUKS1 only):
// the binary header pair, the JSON metadata's key slots, crypt segment and digest, and their checks.
// docs/formats/luks.md, "LUKS2".
#pragma once

#include "luks2_json.h"
#include "luks_crypto.h"
#include "luks_header.h"

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

// The binary header: the first 4096 bytes of each copy; the JSON area follows it to hdr_size.
inline constexpr uint64_t LUKS2_BIN_HEADER_BYTES = 4096;

// cryptsetup's struct luks2_hdr_disk (integers big-endian).
struct Luks2HeaderDisk {
    uint8_t magic[6];        // "LUKS\xba\xbe" (primary) or "SKUL\xba\xbe" (secondary)
    uint8_t version[2];      // 2
    uint8_t hdr_size[8];     // this copy: binary header + JSON area
    uint8_t seqid[8];        // raised on every metadata write
    uint8_t label[48];
    uint8_t checksum_alg[32]; // "sha256"
    uint8_t salt[64];
    uint8_t uuid[40];
    uint8_t subsystem[48];
    uint8_t hdr_offset[8];   // where this copy starts
    uint8_t padding[184];
    uint8_t csum[64];        // checksum_alg over hdr_size bytes with this field zeroed
    uint8_t padding4096[7 * 512];
};
static_assert(sizeof(Luks2HeaderDisk) == LUKS2_BIN_HEADER_BYTES, "LUKS2 binary header layout");
// The header sizes cryptsetup writes and accepts (LUKS2_HDR_16K_LEN to 4 MiB, powers of two): a
// larger one is refused, so reading a header never costs more than 4 MiB of guest memory.
inline constexpr uint64_t LUKS2_MIN_HDR_SIZE = 16384;
inline constexpr uint64_t LUKS2_MAX_HDR_SIZE = 4u << 20;
// Key slot ids cryptsetup allows ("0" to "31": LUKS2_KEYSLOTS_MAX).
inline constexpr uint32_t LUKS2_MAX_KEYSLOTS = 32;
// Salts and digests kept from the metadata: cryptsetup writes 32-byte salts and digests of the
// digest hash's length (64 at most, sha512).
inline constexpr size_t LUKS2_MAX_SALT_BYTES = 64;
// argon2 costs accepted from an image. Memory: cryptsetup's own ceiling (4 GiB, in KiB); the
// sandbox gives less (INSTAR_MAX_GUEST_MEMORY, 3 GiB), which unlock reports with --max-guest-memory.
inline constexpr uint32_t LUKS2_MAX_ARGON2_MEMORY_KIB = 4u << 20;
// Passes: time cost x memory is the work. cryptsetup's 2-second calibration makes a few passes over
// up to 1 GiB (a few GiB of block work); 64 GiB of block passes (about a minute here) bounds what a
// hostile header can make unlocking cost.
inline constexpr uint64_t LUKS2_MAX_ARGON2_WORK_KIB = 64ull << 20;
// Lanes: cryptsetup uses at most 4; they run one after another here (threads = 1), so this only
// bounds the per-lane minimum of 8 KiB blocks argon2 asks for.
inline constexpr uint32_t LUKS2_MAX_ARGON2_LANES = 16;
// Metadata text the JSON tokenizer reads: the area after the binary header, up to its first NUL.
inline constexpr uint64_t LUKS2_MAX_JSON_BYTES = LUKS2_MAX_HDR_SIZE - LUKS2_BIN_HEADER_BYTES;

enum class Luks2Kdf : uint8_t { Pbkdf2, Argon2i, Argon2id };

// A cipher spec ("aes-xts-plain64") with its key size, as qemu's LUKS1 names (luks_header.h).
struct Luks2Cipher {
    const char* cipher_alg = nullptr;  // "aes-256"
    const char* cipher_name = nullptr; // "aes"
    const char* cipher_mode = nullptr; // "xts"
    const char* ivgen_alg = nullptr;   // "plain64"
    const char* ivgen_hash_alg = nullptr;
    uint32_t key_bytes = 0;
};

struct Luks2Keyslot {
    bool present = false;
    uint8_t priority = 1;   // cryptsetup's: 0 ignored unless named, 1 normal, 2 tried first
    uint32_t key_bytes = 0; // the volume key it holds
    const char* af_hash = nullptr;
    uint64_t area_offset = 0;
    uint64_t area_size = 0;
    Luks2Cipher area; // key_bytes: the area key's size
    Luks2Kdf kdf = Luks2Kdf::Pbkdf2;
    const char* kdf_hash = nullptr; // pbkdf2
    uint32_t iterations = 0;        // pbkdf2 iterations, argon2 time cost
    uint32_t memory_kib = 0;        // argon2
    uint32_t lanes = 0;             // argon2 ("cpus")
    uint8_t salt[LUKS2_MAX_SALT_BYTES] = {};
    size_t salt_len = 0;
};

struct Luks2Header {
    uint64_t hdr_size = 0;
    uint64_t seqid = 0;
    bool from_secondary = false; // the secondary copy was the valid one with the higher seqid
    char uuid[40] = {};
    size_t uuid_len = 0;
    Luks2Keyslot slots[LUKS2_MAX_KEYSLOTS];
    // The one crypt segment.
    uint64_t seg_offset = 0;
    bool seg_dynamic = true;
    uint64_t seg_size = 0;
    uint64_t iv_tweak = 0;
    uint32_t sector_size = 512;
    Luks2Cipher seg; // key_bytes: the volume key's size
    // The pbkdf2 digest of the volume key, and the key slots it names (bit i: slot i).
    const char* digest_hash = nullptr;
    uint32_t digest_iterations = 0;
    uint8_t digest_salt[LUKS2_MAX_SALT_BYTES] = {};
    size_t digest_salt_len = 0;
    uint8_t digest[LUKS_MAX_DIGEST_BYTES] = {};
    size_t digest_len = 0;
    uint32_t digest_slots = 0;
};

// Whether the first bytes are a LUKS2 binary header's magic and version (either copy's magic).
bool luks2_magic(const uint8_t* head, size_t len);

// Reads both header copies of `dev`, picks the one cryptsetup would (a good checksum; the higher
// seqid when both are good), and parses its JSON into `out` with the checks of docs/formats/luks.md.
// Scratch comes from `alloc` (the header copies, hdr_size bytes each, and the token array) and is
// freed before returning.
// Refusals: Corrupt / Unsupported / TooLarge, with the reason in `why`. `not_luks2`, when given, is
// set when the file does not look like LUKS2 at all (no copy has a plausible header size): open then
// answers with qemu's LUKS1 words ("LUKS version 2 is not supported").
guest::Status luks2_load(guest::BlockDevice& dev, guest::Allocator& alloc, Luks2Header* out, LuksWhy* why,
                         bool* not_luks2 = nullptr);

// Parses LUKS2 metadata text json[len] for a header of hdr_size bytes in a file of `file_size` bytes.
// Exposed for the unit tests and the fuzz target; luks2_load's JSON half.
guest::Status luks2_parse_json(const char* json, size_t len, uint64_t hdr_size, uint64_t file_size,
                               guest::Allocator& alloc, Luks2Header* out, LuksWhy* why);

// The payload size: the segment's, or (dynamic) the file past the segment offset, in whole sectors.
uint64_t luks2_payload_size(const Luks2Header& h, uint64_t file_size);

// Fills a LuksHeader (qemu's LUKS1 report and SectorCipher's input) with what maps: the segment's
// cipher, the digest's hash and iterations, the offset, uuid and up to 8 slots.
void luks2_as_luks1(const Luks2Header& h, LuksHeader* out);

} // namespace instar::luks
