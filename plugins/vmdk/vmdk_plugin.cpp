// vmdk plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "vmdk_plugin.h"

namespace instar::vmdk {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "vmdk",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "VMware virtual disk (sparse, stream-optimized, flat, split)",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CONVERT | CAP_CONVERT_TARGET | CAP_CONVERT_COMPRESS,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "vmdk.gmod",
    .qemu_traits = QEMU_SUPPORTS_BACKING | QEMU_RECURSE_HOLES,
    .measure = &MEASURE_HOOKS,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::vmdk

INSTAR_DECLARE_PLUGIN(instar::vmdk::descriptor)
