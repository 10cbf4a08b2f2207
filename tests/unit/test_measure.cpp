// qemu's measure arithmetic (ops/measure_op): figures checked against qemu-img 7.2 and 10.0's output.
#include "ops/measure_op.h"

#include <doctest/doctest.h>

using namespace instar;

namespace {
constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
}

TEST_CASE("qcow2 measure: --size figures as qemu-img prints them") {
    Qcow2MeasureParams p;
    auto f = qcow2_measure(p, 1 * GiB, false, 0, std::nullopt);
    CHECK(f.required == 393216);
    CHECK(f.fully_allocated == 1074135040);
    CHECK(!f.bitmaps);
    p.cluster_size = 4 * KiB; // -o cluster_size=4k --size 1G
    f = qcow2_measure(p, 1 * GiB, false, 0, std::nullopt);
    CHECK(f.required == 2637824);
    CHECK(f.fully_allocated == 1076379648);
    p.cluster_size = 512;     // -o cluster_size=512,refcount_bits=1 --size 0
    p.refcount_bits = 1;
    f = qcow2_measure(p, 0, false, 0, std::nullopt);
    CHECK(f.required == 1536);
    CHECK(f.fully_allocated == 1536);
}

TEST_CASE("qcow2 measure: preallocation, backing and a source's data") {
    Qcow2MeasureParams p;
    p.full_preallocation = true;
    auto f = qcow2_measure(p, 1 * GiB, false, 0, std::nullopt);
    CHECK(f.required == f.fully_allocated);
    CHECK(f.fully_allocated == 1074135040);
    p = Qcow2MeasureParams{};
    p.extended_l2 = true; // -o extended_l2=on --size 1G
    f = qcow2_measure(p, 1 * GiB, false, 0, std::nullopt);
    CHECK(f.required == 524288);
    CHECK(f.fully_allocated == 1074266112);
    // A source of 4 MiB with 2 MiB of data, and a bitmap (64 MiB image, 4 KiB granularity: 192 KiB).
    p = Qcow2MeasureParams{};
    f = qcow2_measure(p, 4 * MiB, true, 2 * MiB, std::vector<MeasureBitmap>{});
    CHECK(f.fully_allocated == 4521984);
    CHECK(f.required == 4521984 - 4 * MiB + 2 * MiB);
    CHECK(f.bitmaps == 0u);
    CHECK(qcow2_bitmaps_size(64 * MiB, {{"b1", 4096}}, 64 * KiB) == 196608);
    p.version = 2; // compat=0.10 targets show no bitmaps
    CHECK(!qcow2_measure(p, 4 * MiB, true, 0, std::vector<MeasureBitmap>{}).bitmaps);
    p = Qcow2MeasureParams{};
    p.has_backing = true; // every cluster required
    CHECK(qcow2_measure(p, 4 * MiB, true, 0, std::nullopt).required == 4521984);
}

TEST_CASE("qcow2 measure: the L1 size limit") {
    Qcow2MeasureParams p;
    CHECK(!qcow2_image_too_large(p, 100ull << 40));
    CHECK(qcow2_image_too_large(p, 1ull << 60));
    p.cluster_size = 512;
    CHECK(qcow2_image_too_large(p, 5ull << 50));
}

TEST_CASE("raw measure") {
    CHECK(raw_measure(std::nullopt, 1).required == 512);
    CHECK(raw_measure(std::nullopt, 0).fully_allocated == 0);
    CHECK(raw_measure(1000001, 0).required == 1000001);
}

TEST_CASE("estimate: bounds grow with the data and never fall below the empty image") {
    const std::vector<OptionItem> none;
    for (const char* fmt : {"vpc", "vhdx", "vmdk"}) {
        const auto empty = estimate_figures(fmt, none, 1 * GiB, 0);
        const auto half = estimate_figures(fmt, none, 1 * GiB, 512 * MiB);
        const auto full = estimate_figures(fmt, none, 1 * GiB, std::nullopt);
        CHECK(empty.required <= half.required);
        CHECK(half.required <= full.required);
        CHECK(full.required == full.fully_allocated);
        CHECK(full.fully_allocated >= 1 * GiB);
    }
}
