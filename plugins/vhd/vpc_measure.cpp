// vpc's measure hooks: instar's extension (`measure --estimate`, divergence measure-estimate):
// qemu-img cannot measure vpc. Upper bounds of what instar's writer (guest/vpc_create*.cpp)
// produces, so that `instar convert -O vpc` never exceeds fully_allocated; counted in 2 MiB blocks.
#include "vhd_plugin.h"

#include <string_view>

namespace instar::vpc {
namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t BLOCK = 2048 * KiB; // the block size instar's dynamic disks use
constexpr std::uint64_t SECTOR = 512;
constexpr std::uint64_t SLACK = 64 * KiB;
// CHS geometry may round the size up by less than a cylinder (16 heads x 255 sectors).
constexpr std::uint64_t CHS_CYLINDER = 16 * 255 * SECTOR;

bool fixed(const MeasureRequest& r) {
    const char* v = measure_option(r, "subformat");
    return v && std::string_view(v) == "fixed";
}

bool plan(const MeasureRequest& r, MeasurePlan& p, char*) noexcept {
    p = MeasurePlan{};
    p.walk_unit = fixed(r) ? 0 : BLOCK;
    return true;
}

bool figures(const MeasureRequest& r, std::uint64_t data, MeasureAnswer& a, char*) noexcept {
    a = MeasureAnswer{};
    const std::uint64_t vs = measure_round_up(r.virtual_size, SECTOR) + CHS_CYLINDER;
    if (fixed(r)) {
        a.fully_allocated = a.required = vs + SECTOR + SLACK; // the data, its footer
        return true;
    }
    const std::uint64_t blocks = measure_div_round_up(vs, BLOCK);
    // footer copy, dynamic header, BAT, footer; each block with its sector bitmap; slack.
    const std::uint64_t meta = SECTOR + 2 * SECTOR + measure_round_up(4 * blocks, SECTOR) + SECTOR + SLACK;
    const std::uint64_t used = (r.flags & MEASURE_HAVE_SOURCE) ? data / BLOCK : 0;
    a.fully_allocated = meta + blocks * (BLOCK + SECTOR);
    a.required = meta + used * (BLOCK + SECTOR);
    return true;
}

} // namespace

const MeasureHooks MEASURE_HOOKS = {MEASURE_HOOKS_EXTENSION, plan, figures};

} // namespace instar::vpc
