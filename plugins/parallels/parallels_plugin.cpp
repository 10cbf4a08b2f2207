// parallels plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "parallels_plugin.h"

namespace instar::parallels {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "parallels",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "Parallels (ploop) images",
    .capabilities = CAP_INFO | CAP_CHECK | CAP_CREATE | CAP_CONVERT | CAP_CONVERT_TARGET,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "parallels.gmod",
    .qemu_traits = QEMU_SUPPORTS_BACKING | QEMU_PERSISTENT_BITMAPS_SINCE_8_2,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::parallels

INSTAR_DECLARE_PLUGIN(instar::parallels::descriptor)
