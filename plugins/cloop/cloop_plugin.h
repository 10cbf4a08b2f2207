// Shared declarations of the cloop plugin's host-half data tables.
#pragma once

#include "instar/plugin.h"

namespace instar::cloop {

extern const ProbeRule PROBE_RULES[];
extern const std::uint32_t PROBE_RULE_COUNT;
extern const Divergence DIVERGENCES[];
extern const std::uint32_t DIVERGENCE_COUNT;

} // namespace instar::cloop
