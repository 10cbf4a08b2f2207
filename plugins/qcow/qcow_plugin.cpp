// qcow (version 1) plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
#include "qcow_plugin.h"

namespace instar::qcow {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "qcow",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "QEMU Copy-On-Write version 1 (two-level tables, zlib clusters, legacy AES)",
    .capabilities = CAP_INFO | CAP_CREATE | CAP_CONVERT | CAP_CONVERT_TARGET | CAP_CONVERT_COMPRESS | CAP_REBASE |
                    CAP_MAKE_EMPTY,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = OPTIONS,
    .option_count = OPTION_COUNT,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "qcow.gmod",
    .qemu_traits = QEMU_SUPPORTS_BACKING,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::qcow

INSTAR_DECLARE_PLUGIN(instar::qcow::descriptor)
