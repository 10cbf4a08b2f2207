// vhdx's `-o` table, as `qemu-img create -f vhdx -o help` prints it (same in 7.2 and 10.0).
#include "vhdx_plugin.h"

namespace instar::vhdx {
namespace {

constexpr const char* SUBFORMAT_CHOICES[] = {"dynamic", "fixed", nullptr};
constexpr OptionPolicy H = OptionPolicy::Honoured;

} // namespace

// In qemu's QemuOptsList order (the order `qemu-img create` prints them in its "Formatting" line);
// default_value is qemu's def_value_str, which that line prints for keys the user did not set.
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size; max of 64TB.", H, nullptr, nullptr, 0, 0},
    {"log_size", OptionType::Size, "1048576", "Log size; min 1MB.", H, nullptr, nullptr, 0, 0},
    {"block_size", OptionType::Size, "0",
     "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.", H, nullptr, nullptr, 0, 0},
    {"subformat", OptionType::String, nullptr,
     "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'.", H, nullptr,
     SUBFORMAT_CHOICES, 0, 0},
    {"block_state_zero", OptionType::Bool, nullptr,
     "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to 'off' when using "
     "'qemu-img convert' with subformat=dynamic.",
     H, nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::vhdx
