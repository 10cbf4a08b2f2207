// LUKS probe rule: the LUKS1 magic "LUKS\xba\xbe" at offset 0 (qemu's qcrypto_block_luks_has_format),
// and the plugin's divergences.
#include "luks_plugin.h"

namespace instar::luks {
namespace {

constexpr unsigned char MAGIC[] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr ProbeMatch HEADER[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC}};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 1}};
const std::uint32_t PROBE_RULE_COUNT = 1;

const Divergence DIVERGENCES[] = {
    {"luks-pbkdf-bound", "convert",
     "a key slot or master key digest asking for more than 64M PBKDF2 iterations is refused as corrupt",
     "an image can otherwise make unlocking run for hours; qemu's own iter-time calibration stays far below"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::luks
