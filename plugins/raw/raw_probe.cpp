// raw probe rules: a file is raw only when it carries a partition table (MBR boot signature at 510,
// or a GPT header at LBA 1 for 512- or 4096-byte sectors). Probed last.
#include "raw_plugin.h"

namespace instar::raw {
namespace {

constexpr unsigned char MBR_SIGNATURE[] = {0x55, 0xaa};
constexpr unsigned char GPT_SIGNATURE[] = {'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'};

constexpr ProbeMatch MBR[] = {{ProbeMatch::FromStart, 510, MBR_SIGNATURE, sizeof MBR_SIGNATURE}};
constexpr ProbeMatch GPT_512[] = {{ProbeMatch::FromStart, 512, GPT_SIGNATURE, sizeof GPT_SIGNATURE}};
constexpr ProbeMatch GPT_4K[] = {{ProbeMatch::FromStart, 4096, GPT_SIGNATURE, sizeof GPT_SIGNATURE}};

} // namespace

const ProbeRule PROBE_RULES[] = {{MBR, 1}, {GPT_512, 1}, {GPT_4K, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"raw-needs-partition-table", "info",
     "a file without an MBR or GPT and without a known magic is reported as an unknown format, not raw "
     "(--unsafe-quirks restores qemu-img's raw fallback)",
     "CVE-2008-2004: a guest can write any header into its raw disk; never silently reinterpret a file"},
    {"iso-not-raw", "info",
     "an ISO 9660 image is reported as 'iso', not raw (--unsafe-quirks restores raw)",
     "an ISO is a read-only filesystem image, not a disk; naming it keeps tooling from treating it as one"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::raw
