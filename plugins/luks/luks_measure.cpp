// luks's measure hooks (block_crypto_measure): the LUKS header, then the whole disk (encrypted data
// is never sparse, so required is fully allocated and no walk is needed).
#include "luks_header_size.h"
#include "luks_plugin.h"

namespace instar::luks {
namespace {

bool plan(const MeasureRequest& r, MeasurePlan& p, char* error) noexcept {
    std::uint64_t header = 0;
    p = MeasurePlan{};
    return luks_header_size(r, "", header, error);
}

bool figures(const MeasureRequest& r, std::uint64_t, MeasureAnswer& a, char* error) noexcept {
    std::uint64_t header = 0;
    if (!luks_header_size(r, "", header, error))
        return false;
    std::uint64_t size = r.virtual_size;
    // A LUKS2 volume holds whole 512-byte sectors (the guest half rounds the size up). The size is
    // --size or the source's, both at most INT64_MAX (img_measure's check), so neither the rounding
    // nor the sum wraps.
    if (const char* v = measure_option(r, "luks-version"); v && std::string_view(v) == "2")
        size = measure_round_up(size, 512);
    a = MeasureAnswer{};
    a.required = a.fully_allocated = header + size;
    return true;
}

} // namespace

const MeasureHooks MEASURE_HOOKS = {0, plan, figures};

} // namespace instar::luks
