// dmg plugin registration: the format descriptor instar loads through INSTAR_DECLARE_PLUGIN.
// Read-only, as qemu's: info and convert from (compare, map, measure, dd come with the reader).
// No option table: qemu's dmg driver has no create_opts.
#include "dmg_plugin.h"

namespace instar::dmg {
namespace {

const FormatDescriptor DESCRIPTOR = {
    .abi_version = INSTAR_PLUGIN_ABI_VERSION,
    .name = "dmg",
    .aliases = nullptr,
    .version = "0.1.0",
    .description = "Apple disk image (UDIF; read-only: zero, raw and zlib chunks)",
    .capabilities = CAP_INFO | CAP_CONVERT | CAP_READ_ONLY,
    .probe_priority = PROBE_NORMAL,
    .probe_rules = PROBE_RULES,
    .probe_rule_count = PROBE_RULE_COUNT,
    .options = nullptr,
    .option_count = 0,
    .divergences = DIVERGENCES,
    .divergence_count = DIVERGENCE_COUNT,
    .guest_module = "dmg.gmod",
    .qemu_traits = QEMU_NO_BLOCK_STATUS,
};

const FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace
} // namespace instar::dmg

INSTAR_DECLARE_PLUGIN(instar::dmg::descriptor)
