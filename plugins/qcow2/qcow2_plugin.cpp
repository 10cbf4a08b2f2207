// qcow2 plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "qcow2_plugin.h"

namespace instar::qcow2 {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "qcow2",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "QEMU copy-on-write image, versions 2 and 3",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CONVERT | CAP_CONVERT_TARGET | CAP_CONVERT_COMPRESS,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "qcow2.gmod",
    .qemu_traits = QEMU_SUPPORTS_BACKING | QEMU_DETECT_METADATA_PREALLOC | QEMU_FILES_AS_WRITTEN,
    .measure = &MEASURE_HOOKS,
    .secret_option = "encrypt.key-secret",
    .amend_options = AMEND_OPTIONS,
    .amend_option_count = AMEND_OPTION_COUNT,
    .amend_keyslot_prefix = "encrypt.",
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::qcow2

INSTAR_DECLARE_PLUGIN(instar::qcow2::descriptor)
