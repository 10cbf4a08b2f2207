// The host's pre-filter for format detection: plugins' magic bytes compared at fixed offsets. This
// only narrows which guest modules to load; the guest's own probe decides.
#pragma once

#include "chain/path_policy.h"
#include "plugins/registry.h"

#include <span>
#include <vector>

namespace instar {

// Plugins whose rules match `file`, in probe order (catch-all last). With `head_only`, only rules
// qemu-img's probes could have count (--unsafe-quirks): those that look at the file's first bytes
// (qemu sees nothing else, so a fixed VHD, its footer only at the end, is raw to it) and are not
// instar extensions (PROBE_RULE_EXTENSION: a LUKS2 volume is raw to qemu).
std::vector<const LoadedPlugin*> host_probe(const PluginRegistry& plugins, const OpenedFile& file,
                                            bool head_only = false);

// One rule against the given head (from offset 0) and tail (ending at EOF) windows.
bool rule_matches(const ProbeRule& rule, std::span<const std::uint8_t> head, std::span<const std::uint8_t> tail,
                  std::uint64_t file_size);

} // namespace instar
