// Shared declarations of the bochs plugin's host-half data tables.
#pragma once

#include "instar/plugin.h"

namespace instar::bochs {

extern const ProbeRule PROBE_RULES[];
extern const std::uint32_t PROBE_RULE_COUNT;

} // namespace instar::bochs
