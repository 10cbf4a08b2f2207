// Shared declarations of the qcow2 plugin's host-half data tables.
#pragma once

#include "instar/plugin.h"

namespace instar::qcow2 {

extern const OptionDesc OPTIONS[];
extern const std::uint32_t OPTION_COUNT;
extern const OptionDesc AMEND_OPTIONS[];
extern const std::uint32_t AMEND_OPTION_COUNT;
extern const ProbeRule PROBE_RULES[];
extern const std::uint32_t PROBE_RULE_COUNT;
extern const Divergence DIVERGENCES[];
extern const std::uint32_t DIVERGENCE_COUNT;
extern const MeasureHooks MEASURE_HOOKS;

// qemu's qcow2 arithmetic behind the hooks (qcow2_measure.cpp), for the unit tests:
// qcow2_refcount_metadata_size (generous_increase = false), qcow2_calc_prealloc_size and
// qcow2_get_persistent_dirty_bitmap_size.
std::uint64_t qcow2_refcount_metadata_size(std::uint64_t clusters, std::uint64_t cluster_size, int refcount_order);
std::uint64_t qcow2_prealloc_size(std::uint64_t total_size, std::uint64_t cluster_size, int refcount_order,
                                  bool extended_l2);
std::uint64_t qcow2_bitmaps_size(std::uint64_t virtual_size, const MeasureBitmap* bitmaps, std::uint32_t count,
                                 std::uint64_t cluster_size);

} // namespace instar::qcow2
