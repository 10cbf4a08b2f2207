// Sanity checks on a descriptor a plugin handed us, before anything else reads it.
#pragma once

#include "instar/plugin.h"

#include <optional>
#include <string>

namespace instar {

// Descriptors come from installed (trusted) code, but a broken one must give a warning, not a crash:
// these bounds keep a garbage count from walking us off the end of the plugin's data.
inline constexpr std::uint32_t MAX_PLUGIN_OPTIONS = 256;      // qcow2, the largest, has 23
inline constexpr std::uint32_t MAX_PLUGIN_PROBE_RULES = 32;   // a handful of magics per format
inline constexpr std::uint32_t MAX_PROBE_MATCHES = 8;         // matches ANDed in one rule
inline constexpr std::uint32_t MAX_PROBE_MATCH_BYTES = 4096;  // probes read at most a few sectors
inline constexpr std::uint64_t MAX_PROBE_OFFSET = 1u << 20;   // magics sit in the first/last MiB
inline constexpr std::uint32_t MAX_PLUGIN_DIVERGENCES = 256;

// Returns the reason the descriptor is unusable, or nullopt when it is fine.
std::optional<std::string> check_descriptor(const FormatDescriptor* d);

} // namespace instar
