// bochs plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
// Read-only, as in qemu (no bdrv_co_create, no bdrv_co_check): create, convert -O and check are
// refused by the core in qemu-img's words because the capabilities are absent. No -o options.
#include "bochs_plugin.h"

namespace instar::bochs {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "bochs",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "Bochs growing redolog disk (read-only, as in qemu)",
    .capabilities = CAP_INFO | CAP_CONVERT | CAP_READ_ONLY,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = nullptr,
    .option_count = 0,
    .divergences = nullptr,
    .divergence_count = 0,
    .guest_module = "bochs.gmod",
    .qemu_traits = QEMU_NO_BLOCK_STATUS,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::bochs

INSTAR_DECLARE_PLUGIN(instar::bochs::descriptor)
