// vdi's `-o` table, as `qemu-img create -f vdi -o help` prints it (same in 7.2 and 10.0: qemu builds
// without CONFIG_VDI_BLOCK_SIZE, so there is no cluster_size).
#include "vdi_plugin.h"

namespace instar::vdi {
namespace {

constexpr OptionPolicy H = OptionPolicy::Honoured;

} // namespace

// In qemu's QemuOptsList order; default_value is qemu's def_value_str (the Formatting line prints
// "static=off" when unset).
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"static", OptionType::Bool, "off", "VDI static (pre-allocated) image", H, nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::vdi
