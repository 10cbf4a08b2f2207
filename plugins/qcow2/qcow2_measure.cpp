// qcow2's measure hooks: qemu's qcow2_measure (block/qcow2.c) from the target's options, the
// source's walk (counted in the target's clusters) and the source's persistent bitmaps.
#include "qcow2_plugin.h"

#include "luks_header_size.h"

#include <bit>
#include <cstdlib>
#include <string>
#include <string_view>

namespace instar::qcow2 {
namespace {

constexpr std::uint64_t L1E_SIZE = 8; // qcow2.h
constexpr std::uint64_t L2E_SIZE_NORMAL = 8;
constexpr std::uint64_t L2E_SIZE_EXTENDED = 16;
constexpr std::uint64_t REFTABLE_ENTRY_SIZE = 8;
constexpr std::uint64_t QCOW_MAX_L1_SIZE = 32ull << 20;
constexpr std::uint64_t BME_TABLE_ENTRY_SIZE = 8;   // qcow2-bitmap.c
constexpr std::uint64_t BITMAP_DIR_ENTRY_SIZE = 24; // sizeof(Qcow2BitmapDirEntry)

constexpr auto div_round_up = measure_div_round_up;
constexpr auto round_up = measure_round_up;

bool bool_value(std::string_view v) { return v == "on" || v == "yes" || v == "true" || v == "y"; }

// qcow2_measure's options after validation (defaults: qemu's).
struct Params {
    std::uint64_t cluster_size = 65536;
    bool extended_l2 = false;
    int version = 3;
    std::uint64_t refcount_bits = 16;
    bool full_preallocation = false; // preallocation=full or falloc: every cluster is required
    bool has_backing = false;        // backing_file given: every cluster is required
    std::uint64_t luks_payload = 0;  // encrypt.format=luks: the LUKS header, in whole clusters
};

// qcow2_measure's option checks, in its order; false with qemu's message.
bool params(const MeasureRequest& r, Params& p, char* error) {
    if (const char* v = measure_option(r, "extended_l2"))
        p.extended_l2 = bool_value(v);
    p.cluster_size = measure_number(r, "cluster_size", p.cluster_size);
    {
        // validate_cluster_size: qemu takes ctz32 of the value truncated to 32 bits.
        const auto low = static_cast<std::uint32_t>(p.cluster_size);
        const int bits = low == 0 ? 32 : std::countr_zero(low);
        if (bits < 9 || bits > 21 || (1ull << bits) != p.cluster_size)
            return measure_fail(error, "Cluster size must be a power of two between 512 and 2048k");
        if (p.extended_l2 && p.cluster_size < 512 * 32)
            return measure_fail(error,
                                "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
    }
    if (const char* v = measure_option(r, "compat")) {
        if (std::string_view(v) == "0.10")
            p.version = 2;
        else if (std::string_view(v) == "1.1")
            p.version = 3;
        else
            return measure_fail(error, "Invalid compatibility level: '" + std::string(v) + "'");
    }
    p.refcount_bits = measure_number(r, "refcount_bits", p.refcount_bits);
    if (p.refcount_bits > 64 || !std::has_single_bit(p.refcount_bits))
        return measure_fail(error, "Refcount width must be a power of two and may not exceed 64 bits");
    if (p.version < 3 && p.refcount_bits != 16)
        return measure_fail(error, "Different refcount widths than 16 bits require compatibility level 1.1 or "
                                   "above (use compat=1.1 or greater)");
    if (const char* v = measure_option(r, "preallocation")) {
        const std::string_view mode = v;
        if (mode == "full" || mode == "falloc")
            p.full_preallocation = true;
        else if (mode != "off" && mode != "metadata")
            return measure_fail(error, "invalid parameter value: " + std::string(mode));
    }
    p.has_backing = measure_option(r, "backing_file") != nullptr;
    if (const char* v = measure_option(r, "encrypt.format"); v && std::string_view(v) == "luks") {
        std::uint64_t header = 0;
        if (!luks::luks_header_size(r, "encrypt.", header, error))
            return false;
        p.luks_payload = round_up(header, p.cluster_size);
    }
    return true;
}

// qcow2_calc_prealloc_size's check: the L1 table must fit QCOW_MAX_L1_SIZE.
bool too_large(const Params& p, std::uint64_t size) {
    const std::uint64_t vs = round_up(size, p.cluster_size);
    const std::uint64_t l2e = p.extended_l2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
    const std::uint64_t l2_tables = div_round_up(vs / p.cluster_size, p.cluster_size / l2e);
    return l2_tables > QCOW_MAX_L1_SIZE / L1E_SIZE;
}

bool plan(const MeasureRequest& r, MeasurePlan& out, char* error) noexcept {
    Params p;
    if (!params(r, p, error))
        return false;
    if (too_large(p, r.size_option)) // qemu checks the size option, before it walks
        return measure_fail(error, "The image size is too large (try using a larger cluster size)");
    out = MeasurePlan{};
    // qemu walks block status unless a backing file makes every cluster required.
    if ((r.flags & MEASURE_HAVE_SOURCE) && !p.has_backing) {
        out.walk_unit = p.cluster_size;
        out.flags = MEASURE_QEMU_BLOCK_STATUS;
    }
    return true;
}

bool figures(const MeasureRequest& r, std::uint64_t data, MeasureAnswer& a, char* error) noexcept {
    Params p;
    if (!params(r, p, error))
        return false;
    const std::uint64_t vs = round_up(r.virtual_size, p.cluster_size);
    std::uint64_t required = 0;
    if (r.flags & MEASURE_HAVE_SOURCE)
        required = p.has_backing ? vs : data;
    if (p.full_preallocation)
        required = vs;
    a = MeasureAnswer{};
    a.fully_allocated =
        p.luks_payload + qcow2_prealloc_size(vs, p.cluster_size, std::countr_zero(p.refcount_bits), p.extended_l2);
    a.required = a.fully_allocated - vs + required;
    if (p.version >= 3 && (r.flags & MEASURE_SOURCE_BITMAPS)) {
        a.has_bitmaps = 1;
        a.bitmaps = qcow2_bitmaps_size(r.virtual_size, r.bitmaps, r.bitmap_count, p.cluster_size);
    }
    return true;
}

} // namespace

std::uint64_t qcow2_refcount_metadata_size(std::uint64_t clusters, std::uint64_t cluster_size, int refcount_order) {
    const std::uint64_t blocks_per_table_cluster = cluster_size / REFTABLE_ENTRY_SIZE;
    const std::uint64_t refcounts_per_block = cluster_size * 8 / (1ull << refcount_order);
    std::uint64_t table = 0;
    std::uint64_t blocks = 0;
    std::uint64_t n = 0;
    std::uint64_t last = 0;
    do {
        last = n;
        blocks = div_round_up(clusters + table + blocks, refcounts_per_block);
        table = div_round_up(blocks, blocks_per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cluster_size;
}

std::uint64_t qcow2_prealloc_size(std::uint64_t total_size, std::uint64_t cluster_size, int refcount_order,
                                  bool extended_l2) {
    const std::uint64_t aligned = round_up(total_size, cluster_size);
    const std::uint64_t l2e = extended_l2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
    std::uint64_t meta = cluster_size; // header
    const std::uint64_t nl2e = round_up(aligned / cluster_size, cluster_size / l2e);
    meta += nl2e * l2e;
    const std::uint64_t nl1e = round_up(nl2e * l2e / cluster_size, cluster_size / L1E_SIZE);
    meta += nl1e * L1E_SIZE;
    meta += qcow2_refcount_metadata_size((meta + aligned) / cluster_size, cluster_size, refcount_order);
    return meta + aligned;
}

std::uint64_t qcow2_bitmaps_size(std::uint64_t virtual_size, const MeasureBitmap* bitmaps, std::uint32_t count,
                                 std::uint64_t cluster_size) {
    std::uint64_t size = 0;
    std::uint64_t dir = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
        const MeasureBitmap& bm = bitmaps[i];
        const std::uint64_t bytes = div_round_up(div_round_up(virtual_size, bm.granularity), 8);
        const std::uint64_t clusters = div_round_up(bytes, cluster_size);
        size += clusters * cluster_size;
        size += round_up(clusters * BME_TABLE_ENTRY_SIZE, cluster_size);
        dir += round_up(BITMAP_DIR_ENTRY_SIZE + std::string_view(bm.name).size(), 8);
    }
    return size + round_up(dir, cluster_size);
}

const MeasureHooks MEASURE_HOOKS = {0, plan, figures};

} // namespace instar::qcow2
