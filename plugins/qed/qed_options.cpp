// qed's `-o` table, as `qemu-img create -f qed -o help` prints it (same in 7.2 and 10.0).
#include "qed_plugin.h"

namespace instar::qed {
namespace {

constexpr OptionPolicy H = OptionPolicy::Honoured;

} // namespace

// In qemu's QemuOptsList order (qed_create_opts); default_value is qemu's def_value_str.
const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"backing_file", OptionType::String, nullptr, "File name of a base image", H, nullptr, nullptr, 0, 0},
    {"backing_fmt", OptionType::String, nullptr, "Image format of the base image", H, nullptr, nullptr, 0, 0},
    {"cluster_size", OptionType::Size, "65536", "Cluster size (in bytes)", H, nullptr, nullptr, 0, 0},
    {"table_size", OptionType::Size, nullptr, "L1/L2 table size (in clusters)", H, nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::qed
