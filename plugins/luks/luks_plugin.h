// Shared declarations of the luks plugin's host-half data tables.
#pragma once

#include "instar/plugin.h"

namespace instar::luks {

extern const OptionDesc OPTIONS[];
extern const std::uint32_t OPTION_COUNT;
extern const OptionDesc AMEND_OPTIONS[];
extern const std::uint32_t AMEND_OPTION_COUNT;
extern const ProbeRule PROBE_RULES[];
extern const std::uint32_t PROBE_RULE_COUNT;
extern const Divergence DIVERGENCES[];
extern const std::uint32_t DIVERGENCE_COUNT;
extern const MeasureHooks MEASURE_HOOKS;

} // namespace instar::luks
