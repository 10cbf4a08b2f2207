// vhdx plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "vhdx_plugin.h"

namespace instar::vhdx {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "vhdx",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "Microsoft Hyper-V VHDX (fixed, dynamic, differencing)",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CREATE_DIFFERENCING | CAP_CONVERT | CAP_CONVERT_TARGET |
                    CAP_OPEN_REPLAY,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "vhdx.gmod",
    .qemu_traits = QEMU_NO_BLOCK_STATUS,
    .measure = &MEASURE_HOOKS,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::vhdx

INSTAR_DECLARE_PLUGIN(instar::vhdx::descriptor)
