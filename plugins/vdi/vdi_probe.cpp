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
    {"vdi-static-map-holes", "map",
     "map --output=json of a static image shows a preallocated block whose bytes are a hole in the file as "
     "\"zero\": true, \"data\": false; qemu-img (BDRV_BLOCK_RECURSE) says \"data\": true there. Human map, "
     "measure, compare and convert are qemu's",
     "the reader reports the hole as Zero with its offset; core keeps the style that would turn it into "
     "DATA|ZERO per format name (map_op.cpp map_style), which issue 13 lets no new format change"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::vdi
