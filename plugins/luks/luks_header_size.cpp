// LUKS header sizes for measure (luks_header_size.h). Messages are qemu's (Debian's builds: no sm4).
#include "luks_header_size.h"

#include "instar/plugin.h"

#include <algorithm>
#include <iterator>
#include <string>

namespace instar::luks {
namespace {

struct Alg {
    const char* name;
    std::uint64_t key;
    const char* family; // qemu's ESSIV lookup names the family; nullptr: no ESSIV with it
};
// QCryptoCipherAlgo; key 0: in the enum but not offered by qemu's LUKS code.
constexpr Alg ALGS[] = {{"aes-128", 16, "AES"},         {"aes-192", 24, "AES"},         {"aes-256", 32, "AES"},
                        {"des", 0, nullptr},            {"3des", 0, nullptr},           {"cast5-128", 16, nullptr},
                        {"serpent-128", 16, "Serpent"}, {"serpent-192", 24, "Serpent"}, {"serpent-256", 32, "Serpent"},
                        {"twofish-128", 16, "Twofish"}, {"twofish-192", 24, "Twofish"}, {"twofish-256", 32, "Twofish"},
                        {"sm4", 0, nullptr}};
constexpr const char* MODES[] = {"ecb", "cbc", "xts", "ctr"};
constexpr const char* IVGENS[] = {"plain", "plain64", "essiv"};
struct Hash {
    const char* name;
    std::uint64_t digest;
};
constexpr Hash HASHES[] = {{"md5", 16},    {"sha1", 20},   {"sha224", 28},    {"sha256", 32},
                           {"sha384", 48}, {"sha512", 64}, {"ripemd160", 20}, {"sm3", 32}};
// qcrypto_block_calculate_payload_offset: the partition header and key-slot headers (4 KiB), and 8
// key slots of the master key split into 4000 stripes, each rounded up to 4 KiB.
constexpr std::uint64_t STRIPES = 4000, SLOTS = 8, ALIGN = 4096;
// sm4 and sm3 are enum values from qemu 9.0 (the guest's LUKS_SM_QEMU_VERSION).
constexpr std::uint32_t SM_QEMU_VERSION = qemu_version(9, 0);

bool bad(char* error, const char* key, const char* value) {
    return measure_fail(error, "Parameter '" + std::string(key) + "' does not accept value '" + value + "'");
}

bool named(const char* v, const char* name) { return v && std::string_view(v) == name; }

} // namespace

bool luks_header_size(const MeasureRequest& r, std::string_view prefix, std::uint64_t& size, char* error) {
    const bool sm = r.qemu_version >= SM_QEMU_VERSION;
    auto known = [&](std::string_view v) { return sm || (v != "sm4" && v != "sm3"); };
    auto get = [&](const char* key) { return measure_option(r, std::string(prefix) + key); };
    const char* alg = get("cipher-alg");
    const char* mode = get("cipher-mode");
    const char* ivgen = get("ivgen-alg");
    const char* ivhash = get("ivgen-hash-alg");
    const char* hash = get("hash-alg");
    const Alg* a = std::find_if(std::begin(ALGS), std::end(ALGS), [&](const Alg& x) { return named(alg, x.name); });
    const Hash* ih =
        std::find_if(std::begin(HASHES), std::end(HASHES), [&](const Hash& x) { return named(ivhash, x.name); });
    auto in = [](const char* v, const auto& names) {
        return std::any_of(std::begin(names), std::end(names), [&](const char* n) { return named(v, n); });
    };
    if (alg && (a == std::end(ALGS) || !known(alg)))
        return bad(error, "cipher-alg", alg);
    if (mode && !in(mode, MODES))
        return bad(error, "cipher-mode", mode);
    if (ivgen && !in(ivgen, IVGENS))
        return bad(error, "ivgen-alg", ivgen);
    if (ivhash && (ih == std::end(HASHES) || !known(ivhash)))
        return bad(error, "ivgen-hash-alg", ivhash);
    const bool hash_known =
        std::any_of(std::begin(HASHES), std::end(HASHES), [&](const Hash& x) { return named(hash, x.name); });
    if (hash && (!hash_known || !known(hash)))
        return bad(error, "hash-alg", hash);
    // qemu 9.0+ lists detached-header among luks's create options, but block_crypto_measure's
    // QCryptoBlockCreateOptions has no such member: any value is refused before the secret.
    if (prefix.empty() && measure_option(r, "detached-header"))
        return measure_fail(error, "Parameter 'detached-header' is unexpected");
    const char* luks_version = prefix.empty() ? measure_option(r, "luks-version") : nullptr;
    if (luks_version && !named(luks_version, "1") && !named(luks_version, "2"))
        return bad(error, "luks-version", luks_version);
    const char* secret = get("key-secret");
    if (!secret)
        return measure_fail(error, "Parameter '" + std::string(prefix) + "key-secret' is required for cipher");
    if (std::none_of(r.secret_ids, r.secret_ids + r.secret_count, [&](const char* id) { return named(secret, id); }))
        return measure_fail(error, "No secret with id '" + std::string(secret) + "'");
    if (!alg)
        a = &ALGS[2]; // aes-256
    const bool xts = !mode || named(mode, "xts");
    if (a->key == 0)
        return measure_fail(error, "Algorithm '" + std::string(a->name) + "' not supported");
    if (named(ivgen, "essiv")) {
        if (a->family == nullptr)
            return measure_fail(error, "Cipher " + std::string(a->name) + " not supported with essiv");
        const std::uint64_t digest = ivhash ? ih->digest : 32; // sha256
        if (digest != 16 && digest != 24 && digest != 32)
            return measure_fail(error, "No " + std::string(a->family) + " cipher with key size " +
                                           std::to_string(digest) + " available");
    }
    if (xts && a->family == nullptr) // cast5's 8-byte blocks
        return measure_fail(error, "Unsupported cipher mode xts");
    if (named(luks_version, "2")) {
        size = LUKS2_NEW_SEGMENT_OFFSET;
        return true;
    }
    const std::uint64_t key = a->key * (xts ? 2 : 1); // the master key: doubled for XTS
    size = ALIGN + SLOTS * measure_round_up(key * STRIPES, ALIGN);
    return true;
}

} // namespace instar::luks
