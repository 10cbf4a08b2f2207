// raw plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "raw_plugin.h"

namespace instar::raw {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "raw",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "Raw disk image (needs an MBR or GPT to be detected)",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CREATE_PLAIN_FILE | CAP_CONVERT | CAP_CONVERT_TARGET,
    .probe_priority = PROBE_CATCH_ALL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "raw.gmod",
    .qemu_traits = QEMU_SPLIT_EOF,
    .measure = &MEASURE_HOOKS,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::raw

INSTAR_DECLARE_PLUGIN(instar::raw::descriptor)
