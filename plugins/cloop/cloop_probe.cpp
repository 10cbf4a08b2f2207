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
     "every image qemu opens opens at the default guest memory (256 MiB holds qemu's largest blocks, "
     "64 MiB inflated plus 128 MiB compressed); under a lower --max-guest-memory an image whose blocks do "
     "not fit fails to open naming the buffer and its size (\"Could not allocate compressed_block of N "
     "bytes in the sandbox (see --max-guest-memory)\"); qemu allocates them on its heap",
     "the reader holds both blocks in the bounded guest arena; cloop tools write blocks of 64-256 KiB"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::cloop
