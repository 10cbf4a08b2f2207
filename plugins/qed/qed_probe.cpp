// QED probe rule ("QED\0" at offset 0, qemu's bdrv_qed_probe) and the plugin's divergences.
#include "qed_plugin.h"

namespace instar::qed {
namespace {

constexpr unsigned char MAGIC[] = {'Q', 'E', 'D', 0};
constexpr ProbeMatch HEADER[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC}};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"qed-table-size-suffix", "create",
     "table_size given with a size suffix (table_size=1k) is taken as its value in bytes-units (1024) and "
     "checked against [1, 16]; qemu-img refuses it with \"Parameter 'table-size' expects integer\"",
     "instar's option parser normalises every size option before the format sees it; both refuse the value"},
    {"qed-large-tables", "*",
     "images whose L1/L2 tables are larger than QED_MAX_TABLE_BYTES (32 MiB: cluster_size x table_size, "
     "e.g. 4 MiB clusters with table_size=16) are refused for convert targets and checks",
     "the guest holds whole tables in its bounded memory; qemu allows 1 GiB tables no tool creates by default"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::qed
