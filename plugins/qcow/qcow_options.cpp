// qcow's `-o` table, as `qemu-img create -f qcow -o help` prints it (same in 7.2 and 10.0).
#include "qcow_plugin.h"

namespace instar::qcow {
namespace {

constexpr OptionPolicy H = OptionPolicy::Honoured;
constexpr OptionPolicy R = OptionPolicy::Rejected;
constexpr OptionType STR = OptionType::String;
constexpr const char* NO_AES = "qcow AES encryption is insecure and deprecated; instar never creates it";

} // namespace

// In qemu's QemuOptsList order (qcow_create_opts); none has a def_value_str.
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"backing_file", STR, nullptr, "File name of a base image", H, nullptr, nullptr, 0, 0},
    {"backing_fmt", STR, nullptr, "Format of the backing image", H, nullptr, nullptr, 0, 0},
    {"encryption", OptionType::Bool, nullptr,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", R, NO_AES, nullptr, 0, 0},
    {"encrypt.format", STR, nullptr, "Encrypt the image, format choices: 'aes'", R, NO_AES, nullptr, 0, 0},
    {"encrypt.key-secret", STR, nullptr, "ID of the secret that provides the AES encryption key", R, NO_AES, nullptr,
     0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::qcow
