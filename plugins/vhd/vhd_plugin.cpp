// vpc plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "vhd_plugin.h"

namespace instar::vpc {
namespace {

constexpr const char* ALIASES[] = {"vhd", nullptr};

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "vpc",
    .aliases = ALIASES,
    .version = "0.1.0",
    .description = "Microsoft Virtual PC / VHD (fixed, dynamic, differencing)",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CREATE_DIFFERENCING | CAP_CONVERT | CAP_CONVERT_TARGET,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "vpc.gmod",
    .qemu_traits = QEMU_RECURSE_HOLES | QEMU_UNALLOCATED_ZERO,
    .measure = &MEASURE_HOOKS,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::vpc

INSTAR_DECLARE_PLUGIN(instar::vpc::descriptor)
