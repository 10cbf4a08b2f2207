// vdi plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "vdi_plugin.h"

namespace instar::vdi {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "vdi",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "VirtualBox VDI (static, dynamic)",
    .capabilities = CAP_INFO | CAP_CHECK | CAP_CREATE | CAP_CONVERT | CAP_CONVERT_TARGET,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "vdi.gmod",
    .qemu_traits = QEMU_RECURSE_HOLES,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::vdi

INSTAR_DECLARE_PLUGIN(instar::vdi::descriptor)
