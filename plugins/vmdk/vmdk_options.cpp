// vmdk's `-o` table, as `qemu-img create -f vmdk -o help` prints it (same in 7.2 and 10.0).
#include "vmdk_plugin.h"

namespace instar::vmdk {
namespace {

constexpr const char* ADAPTER_CHOICES[] = {"ide", "lsilogic", "buslogic", "legacyESX", nullptr};
constexpr const char* SUBFORMAT_CHOICES[] = {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                                             "twoGbMaxExtentFlat", "streamOptimized", nullptr};
constexpr OptionPolicy H = OptionPolicy::Honoured;
constexpr OptionType STR = OptionType::String;

} // namespace

// In qemu's QemuOptsList order (the order `qemu-img create` prints them in its "Formatting" line);
// default_value is qemu's def_value_str, which that line prints for keys the user did not set.
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"adapter_type", STR, nullptr,
     "Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX", H, nullptr,
     ADAPTER_CHOICES, 0, 0},
    {"backing_file", STR, nullptr, "File name of a base image", H, nullptr, nullptr, 0, 0},
    {"backing_fmt", STR, nullptr, "Must be 'vmdk' if present", H, nullptr, nullptr, 0, 0},
    {"compat6", OptionType::Bool, "off", "VMDK version 6 image", H, nullptr, nullptr, 0, 0},
    {"hwversion", STR, "undefined", "VMDK hardware version", H, nullptr, nullptr, 0, 0},
    {"toolsversion", STR, nullptr, "VMware guest tools version", H, nullptr, nullptr, 0, 0},
    // qemu's help text really ends with a space.
    {"subformat", STR, nullptr,
     "VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | "
     "twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ",
     H, nullptr, SUBFORMAT_CHOICES, 0, 0},
    {"zeroed_grain", OptionType::Bool, nullptr, "Enable efficient zero writes using the zeroed-grain GTE feature", H,
     nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::vmdk
