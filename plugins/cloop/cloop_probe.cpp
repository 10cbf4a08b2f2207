// cloop probe rule, as qemu's cloop_probe: the V2.0 shell-script preamble at offset 0 (memcmp of its
// strlen bytes; qemu probes a 2 KiB buffer, so the whole preamble must be there).
#include "cloop_plugin.h"

namespace instar::cloop {
namespace {

constexpr unsigned char PREAMBLE[] = "#!/bin/sh\n"
                                     "#V2.0 Format\n"
                                     "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
constexpr ProbeMatch HEADER[] = {{ProbeMatch::FromStart, 0, PREAMBLE, sizeof PREAMBLE - 1}};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

} // namespace instar::cloop

namespace instar::cloop {

const Divergence DIVERGENCES[] = {
    {"cloop-guest-memory", "*",
     "an image whose largest compressed block plus its block size does not fit in the guest's memory "
     "(256 MiB by default, --max-guest-memory) fails to open with qemu's \"Could not allocate "
     "compressed_block\" / \"uncompressed_block\"; qemu allocates up to 64 MiB + 128 MiB on its heap",
     "the reader holds both blocks in the bounded guest arena; cloop tools write blocks of 64-256 KiB"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::cloop
