// vpc's `-o` table, as `qemu-img create -f vpc -o help` prints it (same in 7.2 and 10.0).
#include "vhd_plugin.h"

namespace instar::vpc {
namespace {

constexpr const char* SUBFORMAT_CHOICES[] = {"dynamic", "fixed", nullptr};
constexpr OptionPolicy H = OptionPolicy::Honoured;

} // namespace

// In qemu's QemuOptsList order (the order `qemu-img create` prints them in its "Formatting" line);
// default_value is qemu's def_value_str, which that line prints for keys the user did not set.
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    // qemu's help text really ends with a space.
    {"subformat", OptionType::String, nullptr,
     "Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ", H, nullptr,
     SUBFORMAT_CHOICES, 0, 0},
    {"force_size", OptionType::Bool, nullptr,
     "Force disk size calculation to use the actual size specified, rather than using the nearest CHS-based "
     "calculation",
     H, nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::vpc
