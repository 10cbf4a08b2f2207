// The host's pre-filter for format detection: plugins' magic bytes compared at fixed offsets. This
// only narrows which guest modules to load; the guest's own probe decides.
#pragma once

#include "chain/path_policy.h"
#include "plugins/registry.h"

#include <span>
#include <vector>

namespace instar {

// Plugins whose rules match `file`, in probe order (catch-all last).
std::vector<const LoadedPlugin*> host_probe(const PluginRegistry& plugins, const OpenedFile& file);

// One rule against the given head (from offset 0) and tail (ending at EOF) windows.
bool rule_matches(const ProbeRule& rule, std::span<const std::uint8_t> head, std::span<const std::uint8_t> tail,
                  std::uint64_t file_size);

} // namespace instar
