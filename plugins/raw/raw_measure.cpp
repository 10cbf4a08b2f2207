// raw's measure hooks (raw_measure, block/raw-format.c): the source's virtual size, or the size
// option rounded up to a sector; the data never matters (raw is fully allocated by definition).
#include "raw_plugin.h"

namespace instar::raw {
namespace {

bool plan(const MeasureRequest&, MeasurePlan& p, char*) noexcept {
    p = MeasurePlan{};
    return true;
}

bool figures(const MeasureRequest& r, std::uint64_t, MeasureAnswer& a, char*) noexcept {
    a = MeasureAnswer{};
    a.required = (r.flags & MEASURE_HAVE_SOURCE) ? r.virtual_size : measure_round_up(r.size_option, 512);
    a.fully_allocated = a.required;
    return true;
}

} // namespace

const MeasureHooks MEASURE_HOOKS = {0, plan, figures};

} // namespace instar::raw
