// luks's `-o` table: the keys, types and help texts of `qemu-img create -f luks -o help` (10.0 adds
// detached-header), with instar's policy for each. Creating LUKS images is not implemented yet.
#include "luks_plugin.h"

namespace instar::luks {
namespace {

constexpr const char* NOT_YET = "LUKS images cannot be created by instar yet";
constexpr OptionPolicy R = OptionPolicy::Rejected;
constexpr OptionType STR = OptionType::String;

} // namespace

const OptionDesc OPTIONS[] = {
    {"cipher-alg", STR, nullptr, "Name of encryption cipher algorithm", R, NOT_YET, nullptr, 0, 0},
    {"cipher-mode", STR, nullptr, "Name of encryption cipher mode", R, NOT_YET, nullptr, 0, 0},
    {"detached-header", OptionType::Bool, nullptr, "Create a detached LUKS header", R, NOT_YET, nullptr, 100000, 0},
    {"hash-alg", STR, nullptr, "Name of encryption hash algorithm", R, NOT_YET, nullptr, 0, 0},
    {"iter-time", OptionType::Number, nullptr, "Time to spend in PBKDF in milliseconds", R, NOT_YET, nullptr, 0, 0},
    {"ivgen-alg", STR, nullptr, "Name of IV generator algorithm", R, NOT_YET, nullptr, 0, 0},
    {"ivgen-hash-alg", STR, nullptr, "Name of IV generator hash algorithm", R, NOT_YET, nullptr, 0, 0},
    {"key-secret", STR, nullptr, "ID of the secret that provides the keyslot passphrase", R, NOT_YET, nullptr, 0, 0},
    {"size", OptionType::Size, nullptr, "Virtual disk size", R, NOT_YET, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::luks
