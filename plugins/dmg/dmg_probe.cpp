// DMG probe rules: the UDIF trailer's "koly" magic 512 (to 515) bytes before the end of the file (qemu's
// dmg_probe goes by the ".dmg" file name suffix instead: divergence dmg-probe-by-trailer), and the
// plugin's divergences.
#include "dmg_plugin.h"

namespace instar::dmg {
namespace {

constexpr unsigned char KOLY[] = {'k', 'o', 'l', 'y'};
// The trailer ends the file, or (qemu searches 515 bytes) up to three stray bytes follow it.
constexpr ProbeMatch TRAILER[] = {{ProbeMatch::FromEnd, 512, KOLY, sizeof KOLY}};
constexpr ProbeMatch TRAILER_1[] = {{ProbeMatch::FromEnd, 513, KOLY, sizeof KOLY}};
constexpr ProbeMatch TRAILER_2[] = {{ProbeMatch::FromEnd, 514, KOLY, sizeof KOLY}};
constexpr ProbeMatch TRAILER_3[] = {{ProbeMatch::FromEnd, 515, KOLY, sizeof KOLY}};

} // namespace

const ProbeRule PROBE_RULES[] = {{TRAILER, 1}, {TRAILER_1, 1}, {TRAILER_2, 1}, {TRAILER_3, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"dmg-probe-by-trailer", "*",
     "without -f, a file is a dmg when its UDIF trailer (\"koly\") starts 512 bytes before its end, whatever its "
     "name; qemu-img probes dmg by the \".dmg\" file name suffix alone (so a UDIF image named otherwise is raw to "
     "it, and a .dmg file without a trailer fails with \"Could not locate UDIF trailer\")",
     "instar probes by content, never by name; the trailer is what qemu's open then requires"},
    {"dmg-missing-module-warnings", "*",
     "no \"qemu: module block-block-dmg-bz2 not found ...\" lines and no \"warning: dmg-bzip2 module is missing\" "
     "(or lzfse, or unknown chunk type) warning on opening an image with such chunks; reading their sectors fails "
     "with the same I/O error as qemu-img's",
     "the module lines are Debian's packaging of qemu; the guest has no channel for an open-time warning"},
    {"dmg-chunk-limit-message", "*",
     "a chunk whose sector count or length is over qemu's limit is refused in one line, \"Could not open 'F': "
     "sector count N for chunk I is larger than max (131072)\"; qemu-img prints that text on a line of its own "
     "followed by \"Could not open 'F': Could not open 'F': Invalid argument\"",
     "a format module's refusal is one reason line"},
    {"dmg-table-limits", "*",
     "images with more than 1048576 kept chunks, or a binary resource fork of more than 65536 resources, are "
     "refused (TooLarge); qemu-img has no limit",
     "the chunk table lives in bounded guest memory, and each resource costs a device read"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::dmg
