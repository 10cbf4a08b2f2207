// luks's `-o` table: the keys, types and help texts of `qemu-img create -f luks -o help` (10.0 adds
// detached-header), in qemu's list order (the order of create's "Formatting" line). The guest half
// checks the values as qemu's QAPI visitor does ("Parameter 'X' does not accept value 'Y'").
#include "luks_plugin.h"

namespace instar::luks {
namespace {

constexpr OptionPolicy H = OptionPolicy::Honoured;
constexpr OptionType STR = OptionType::String;
constexpr const char* LUKS_VERSIONS[] = {"1", "2", nullptr};

} // namespace

const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"key-secret", STR, nullptr, "ID of the secret that provides the keyslot passphrase", H, nullptr, nullptr, 0, 0},
    {"cipher-alg", STR, nullptr, "Name of encryption cipher algorithm", H, nullptr, nullptr, 0, 0},
    {"cipher-mode", STR, nullptr, "Name of encryption cipher mode", H, nullptr, nullptr, 0, 0},
    {"ivgen-alg", STR, nullptr, "Name of IV generator algorithm", H, nullptr, nullptr, 0, 0},
    {"ivgen-hash-alg", STR, nullptr, "Name of IV generator hash algorithm", H, nullptr, nullptr, 0, 0},
    {"hash-alg", STR, nullptr, "Name of encryption hash algorithm", H, nullptr, nullptr, 0, 0},
    {"iter-time", OptionType::Number, nullptr, "Time to spend in PBKDF in milliseconds", H, nullptr, nullptr, 0, 0},
    // Listed by qemu-img 10.0 but refused by its create whatever the value ("Parameter
    // 'detached-header' is unexpected"): the guest half does the same.
    {"detached-header", OptionType::Bool, nullptr, "Create a detached LUKS header", H, nullptr, nullptr, 100000, 0},
    // instar only: qemu-img creates LUKS1 and has no such key (docs/formats/luks.md, divergence
    // luks2-create). Left out of -o help and "Accepted parameters" (OptionPolicy::Extension).
    {"luks-version", STR, nullptr, "LUKS on-disk format version: 1 (qemu-img's) or 2 (cryptsetup's default)",
     OptionPolicy::Extension,
     "creates a LUKS2 volume (pbkdf2 key slot, 16 MiB segment offset, 512-byte sectors) that cryptsetup opens",
     LUKS_VERSIONS, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

// qemu's block_crypto_amend_opts_luks: the LUKS key-slot options, without a prefix
// (FormatDescriptor::amend_keyslot_prefix "").
const OptionDesc AMEND_OPTIONS[] = {
    {"state", STR, nullptr, "Select new state of affected keyslots (active/inactive)", H, nullptr, nullptr, 0, 0},
    {"keyslot", OptionType::Number, nullptr, "Select a single keyslot to modify explicitly", H, nullptr, nullptr, 0,
     0},
    {"old-secret", STR, nullptr, "Select all keyslots that match this password", H, nullptr, nullptr, 0, 0},
    {"new-secret", STR, nullptr, "New secret to set in the matching keyslots. Empty string to erase", H, nullptr,
     nullptr, 0, 0},
    {"iter-time", OptionType::Number, nullptr, "Time to spend in PBKDF in milliseconds", H, nullptr, nullptr, 0, 0},
};
const std::uint32_t AMEND_OPTION_COUNT = sizeof AMEND_OPTIONS / sizeof AMEND_OPTIONS[0];

} // namespace instar::luks
