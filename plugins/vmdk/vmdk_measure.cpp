// vmdk's measure hooks: instar's extension (`measure --estimate`, divergence measure-estimate):
// qemu-img cannot measure vmdk. Upper bounds of the files instar's writer produces (the sum of
// their lengths), so that `instar convert -O vmdk` never exceeds fully_allocated; sparse
// subformats' data counted in grains.
#include "vmdk_plugin.h"

#include <algorithm>
#include <string_view>

namespace instar::vmdk {
namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t SECTOR = 512;
constexpr std::uint64_t GRAIN = 64 * KiB;
constexpr std::uint64_t GT_GRAINS = 512;          // grain table entries
constexpr std::uint64_t EXTENT_MAX = 2ull << 30;  // twoGbMaxExtent*
constexpr std::uint64_t DESCRIPTOR = 64 * KiB;    // a separate descriptor file, at most
constexpr std::uint64_t STREAM_DEFLATE_SLACK = 2 * KiB; // incompressible grains grow a little

enum class Kind { Sparse, TwoGbSparse, Flat, TwoGbFlat, Stream };
Kind kind(const MeasureRequest& r) {
    const char* v = measure_option(r, "subformat");
    const std::string_view sub = v ? v : "monolithicSparse";
    if (sub == "streamOptimized")
        return Kind::Stream;
    if (sub == "twoGbMaxExtentSparse")
        return Kind::TwoGbSparse;
    if (sub == "twoGbMaxExtentFlat")
        return Kind::TwoGbFlat;
    if (sub == "monolithicFlat" || sub == "vmfs")
        return Kind::Flat;
    return Kind::Sparse;
}

std::uint64_t extents(std::uint64_t size) { return std::max<std::uint64_t>(1, measure_div_round_up(size, EXTENT_MAX)); }

// One sparse extent's metadata: header and descriptor, redundant and primary grain directory and
// tables, each padded to a grain, and a grain of slack.
std::uint64_t sparse_overhead(std::uint64_t extent_size) {
    const std::uint64_t grains = measure_div_round_up(extent_size, GRAIN);
    const std::uint64_t gts = measure_div_round_up(grains, GT_GRAINS);
    const std::uint64_t tables = measure_round_up(4 * gts, SECTOR) + gts * GT_GRAINS * 4;
    return 2 * GRAIN + 2 * measure_round_up(tables, GRAIN) + GRAIN;
}

bool plan(const MeasureRequest& r, MeasurePlan& p, char*) noexcept {
    p = MeasurePlan{};
    const Kind k = kind(r);
    p.walk_unit = k == Kind::Flat || k == Kind::TwoGbFlat ? 0 : GRAIN;
    return true;
}

bool figures(const MeasureRequest& r, std::uint64_t data, MeasureAnswer& a, char*) noexcept {
    a = MeasureAnswer{};
    const std::uint64_t size = r.virtual_size;
    const Kind k = kind(r);
    if (k == Kind::Flat || k == Kind::TwoGbFlat) {
        const std::uint64_t n = k == Kind::TwoGbFlat ? extents(size) : 1;
        a.fully_allocated = a.required = measure_round_up(size, SECTOR) + DESCRIPTOR + n * SECTOR;
        return true;
    }
    const std::uint64_t grains = measure_div_round_up(size, GRAIN);
    const std::uint64_t used = (r.flags & MEASURE_HAVE_SOURCE) ? data / GRAIN : 0;
    if (k == Kind::Stream) {
        // Each grain: a marker sector, the deflated grain, padded to sectors. Grain tables with
        // markers, the directory, footer and end-of-stream markers, header and descriptor.
        const std::uint64_t per_grain = GRAIN + STREAM_DEFLATE_SLACK;
        const std::uint64_t gts = measure_div_round_up(grains, GT_GRAINS);
        const std::uint64_t meta =
            2 * GRAIN + gts * (SECTOR + GT_GRAINS * 4) + measure_round_up(4 * gts, SECTOR) + 8 * SECTOR;
        a.fully_allocated = meta + grains * per_grain;
        a.required = meta + used * per_grain;
        return true;
    }
    const std::uint64_t meta = k == Kind::TwoGbSparse
                                   ? DESCRIPTOR + extents(size) * sparse_overhead(std::min(size, EXTENT_MAX))
                                   : sparse_overhead(size);
    a.fully_allocated = meta + grains * GRAIN;
    a.required = meta + used * GRAIN;
    return true;
}

} // namespace

const MeasureHooks MEASURE_HOOKS = {MEASURE_HOOKS_EXTENSION, plan, figures};

} // namespace instar::vmdk
