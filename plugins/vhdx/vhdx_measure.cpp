// vhdx's measure hooks: instar's extension (`measure --estimate`, divergence measure-estimate):
// qemu-img cannot measure vhdx. Upper bounds of what instar's writer produces, so that
// `instar convert -O vhdx` never exceeds fully_allocated; a dynamic disk's data counted in blocks.
#include "vhdx_plugin.h"

#include <algorithm>
#include <string_view>

namespace instar::vhdx {
namespace {

constexpr std::uint64_t MiB = 1ull << 20;
constexpr std::uint64_t MAX_BLOCK = 256 * MiB;      // the writer's cap on -o block_size
constexpr std::uint64_t DEFAULT_LOG = MiB;          // -o log_size's default
constexpr std::uint64_t BITMAP_CHUNK = 1ull << 32; // 2^23 sectors of 512 bytes per sector-bitmap block

bool fixed(const MeasureRequest& r) {
    const char* v = measure_option(r, "subformat");
    return v && std::string_view(v) == "fixed";
}

// The block size instar's writer picks (guest/vhdx_create_params.cpp): -o block_size rounded up to
// MiB and capped at 256 MiB, or by size.
std::uint64_t block_size(const MeasureRequest& r, std::uint64_t size) {
    std::uint64_t bs = std::min(measure_round_up(measure_number(r, "block_size", 0), MiB), MAX_BLOCK);
    if (bs == 0)
        bs = size > (32ull << 40)    ? 64 * MiB
             : size > (100ull << 30) ? 32 * MiB
             : size > (1ull << 30)   ? 16 * MiB
                                     : 8 * MiB;
    return bs;
}

bool plan(const MeasureRequest& r, MeasurePlan& p, char*) noexcept {
    p = MeasurePlan{};
    // The default block size depends on the virtual size: unknown before the source is open.
    if (!fixed(r) && !((r.flags & MEASURE_SIZE_UNKNOWN) && !measure_option(r, "block_size")))
        p.walk_unit = block_size(r, r.virtual_size);
    return true;
}

bool figures(const MeasureRequest& r, std::uint64_t data, MeasureAnswer& a, char*) noexcept {
    a = MeasureAnswer{};
    const std::uint64_t size = r.virtual_size;
    const std::uint64_t bs = block_size(r, size);
    const std::uint64_t blocks = measure_div_round_up(size, bs);
    const std::uint64_t chunk_ratio = BITMAP_CHUNK / bs;
    const std::uint64_t bat = measure_round_up(8 * (blocks + measure_div_round_up(blocks, chunk_ratio) + 1), MiB);
    const std::uint64_t log = measure_round_up(std::max(measure_number(r, "log_size", DEFAULT_LOG), MiB), MiB);
    // Header section, log, BAT, the 5 MiB gap (metadata region) before the payload, a MiB of
    // alignment before the first appended block, a MiB of slack (the log's trailing sectors).
    const std::uint64_t meta = MiB + log + bat + 5 * MiB + MiB + MiB;
    if (fixed(r)) {
        // A fixed disk's payload, and (instar's writer today) blocks appended for the data.
        a.fully_allocated = a.required = meta + measure_round_up(size, MiB) + blocks * bs;
        return true;
    }
    const std::uint64_t used = (r.flags & MEASURE_HAVE_SOURCE) ? data / bs : 0;
    a.fully_allocated = meta + blocks * bs;
    a.required = meta + used * bs;
    return true;
}

} // namespace

const MeasureHooks MEASURE_HOOKS = {MEASURE_HOOKS_EXTENSION, plan, figures};

} // namespace instar::vhdx
