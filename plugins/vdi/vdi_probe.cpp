// VDI probe rules: the signature 0xbeda107f, little-endian, at offset 64 (qemu's vdi_probe), and
// the plugin's divergences.
#include "vdi_plugin.h"

namespace instar::vdi {
namespace {

constexpr unsigned char SIGNATURE[] = {0x7f, 0x10, 0xda, 0xbe};
constexpr ProbeMatch HEADER[] = {{ProbeMatch::FromStart, 64, SIGNATURE, sizeof SIGNATURE}};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"vdi-convert-n-entry-bounds", "convert",
     "convert -n into a VDI whose block map entry (or blocks_allocated) puts a block past the end of the file "
     "is refused with a reason; qemu-img writes there, growing the file by up to 4 PiB",
     "a hostile map entry must not make instar write petabytes of holes into a file"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::vdi
