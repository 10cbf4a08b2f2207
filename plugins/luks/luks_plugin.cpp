// luks plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "luks_plugin.h"

namespace instar::luks {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "luks",
    .aliases = nullptr,
    .version = "0.3.0",
    .description = "LUKS1 encrypted disk (qemu's luks driver): info, reading, creating, writing and resizing with --object secret; "
                   "LUKS2 read, written and created (-o luks-version=2)",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CONVERT | CAP_CONVERT_TARGET | CAP_RESIZE,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "luks.gmod",
    .qemu_traits = QEMU_NO_BLOCK_STATUS,
    .measure = &MEASURE_HOOKS,
    .secret_option = "key-secret",
    .detached_header_since = qemu_version(9, 0),
    .amend_options = AMEND_OPTIONS,
    .amend_option_count = AMEND_OPTION_COUNT,
    .amend_keyslot_prefix = "",
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::luks

INSTAR_DECLARE_PLUGIN(instar::luks::descriptor)
