// parallels' `-o` table, as `qemu-img create -f parallels -o help` prints it (same in 7.2 and 10.0).
#include "parallels_plugin.h"

namespace instar::parallels {
namespace {

constexpr OptionPolicy H = OptionPolicy::Honoured;

} // namespace

// In qemu's QemuOptsList order; default_value is qemu's def_value_str (the Formatting line prints
// "cluster_size=1048576" when unset).
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"cluster_size", OptionType::Size, "1048576", "Parallels image cluster size", H, nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::parallels
