// The target formats' measure hooks (instar/measure.h) as instar's core asks them (TargetMeasure,
// ops/measure_op): figures checked against qemu-img 7.2 and 10.0's output, qemu's refusals, and
// instar's --estimate bounds. The plugins' measure sources are compiled in (tests/unit/meson.build).
#include "ops/measure_op.h"

#include "luks_header_size.h"
#include "luks_plugin.h"
#include "qcow2_plugin.h"
#include "raw_plugin.h"
#include "vhd_plugin.h"
#include "vhdx_plugin.h"
#include "vmdk_plugin.h"

#include <doctest/doctest.h>

using namespace instar;

namespace {
constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
constexpr std::uint32_t V10 = qemu_version(10, 0);

struct Target {
    const MeasureHooks& hooks;
    std::span<const OptionDesc> table;
};
const Target QCOW2{instar::qcow2::MEASURE_HOOKS, {instar::qcow2::OPTIONS, instar::qcow2::OPTION_COUNT}};
const Target LUKS{instar::luks::MEASURE_HOOKS, {instar::luks::OPTIONS, instar::luks::OPTION_COUNT}};
const Target RAW{instar::raw::MEASURE_HOOKS, {instar::raw::OPTIONS, instar::raw::OPTION_COUNT}};

struct Case {
    std::string options{};                  // -o, as given
    std::uint64_t size = 0;                 // --size (or the source's virtual size with `source`)
    bool source = false;
    std::uint64_t data = 0;                 // the walk's count
    const std::vector<SourceBitmap>* bitmaps = nullptr;
    std::vector<std::string> secrets{};
};

Expected<MeasureAnswer> measure(const Target& t, const Case& c) {
    const TargetMeasure m(t.hooks, split_option_list(c.options), t.table, V10, c.source ? 0 : c.size, c.secrets,
                          c.source ? std::uint32_t{MEASURE_HAVE_SOURCE} : 0u, c.size, c.bitmaps);
    auto plan = m.plan();
    if (!plan)
        return Error{plan.error()};
    return m.figures(c.data);
}

std::string refusal(const Target& t, const Case& c) {
    auto r = measure(t, c);
    return r ? "" : r.error();
}

std::uint64_t walk_unit(const Target& t, const Case& c, std::uint32_t extra_flags = 0) {
    const TargetMeasure m(t.hooks, split_option_list(c.options), t.table, V10, c.source ? 0 : c.size, c.secrets,
                          (c.source ? std::uint32_t{MEASURE_HAVE_SOURCE} : 0u) | extra_flags, c.size, c.bitmaps);
    auto plan = m.plan();
    REQUIRE(plan);
    return plan->walk_unit;
}
} // namespace

TEST_CASE("qcow2 measure: --size figures as qemu-img prints them") {
    auto f = measure(QCOW2, {.size = 1 * GiB});
    REQUIRE(f);
    CHECK(f->required == 393216);
    CHECK(f->fully_allocated == 1074135040);
    CHECK(!f->has_bitmaps);
    f = measure(QCOW2, {.options = "cluster_size=4k", .size = 1 * GiB});
    CHECK(f->required == 2637824);
    CHECK(f->fully_allocated == 1076379648);
    f = measure(QCOW2, {.options = "cluster_size=512,refcount_bits=1", .size = 0});
    CHECK(f->required == 1536);
    CHECK(f->fully_allocated == 1536);
}

TEST_CASE("qcow2 measure: preallocation, backing and a source's data") {
    auto f = measure(QCOW2, {.options = "preallocation=full", .size = 1 * GiB});
    CHECK(f->required == f->fully_allocated);
    CHECK(f->fully_allocated == 1074135040);
    f = measure(QCOW2, {.options = "extended_l2=on", .size = 1 * GiB});
    CHECK(f->required == 524288);
    CHECK(f->fully_allocated == 1074266112);
    // A source of 4 MiB with 2 MiB of data that can carry bitmaps (it has none).
    const std::vector<SourceBitmap> none;
    f = measure(QCOW2, {.size = 4 * MiB, .source = true, .data = 2 * MiB, .bitmaps = &none});
    CHECK(f->fully_allocated == 4521984);
    CHECK(f->required == 4521984 - 4 * MiB + 2 * MiB);
    CHECK(f->has_bitmaps);
    CHECK(f->bitmaps == 0u);
    // A bitmap: 64 MiB image, 4 KiB granularity: 192 KiB.
    const MeasureBitmap b1{"b1", 4096};
    CHECK(instar::qcow2::qcow2_bitmaps_size(64 * MiB, &b1, 1, 64 * KiB) == 196608);
    const std::vector<SourceBitmap> one{{"b1", 4096}};
    CHECK(measure(QCOW2, {.size = 64 * MiB, .source = true, .bitmaps = &one})->bitmaps == 196608);
    // compat=0.10 targets show no bitmaps.
    CHECK(!measure(QCOW2, {.options = "compat=0.10", .size = 4 * MiB, .source = true, .bitmaps = &none})->has_bitmaps);
    // A backing file makes every cluster required, and no walk runs.
    f = measure(QCOW2, {.options = "backing_file=b.qcow2", .size = 4 * MiB, .source = true});
    CHECK(f->required == 4521984);
    CHECK(walk_unit(QCOW2, {.options = "backing_file=b.qcow2", .size = 4 * MiB, .source = true}) == 0);
    CHECK(walk_unit(QCOW2, {.options = "cluster_size=4k", .source = true}, MEASURE_SIZE_UNKNOWN) == 4096);
    CHECK(walk_unit(QCOW2, {.size = 4 * MiB}) == 0); // --size: nothing to walk
}

TEST_CASE("qcow2 measure: qemu's refusals, in its order") {
    CHECK(refusal(QCOW2, {.options = "cluster_size=1000"}) ==
          "Cluster size must be a power of two between 512 and 2048k");
    CHECK(refusal(QCOW2, {.options = "cluster_size=4k,extended_l2=on"}) ==
          "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
    CHECK(refusal(QCOW2, {.options = "compat=2"}) == "Invalid compatibility level: '2'");
    CHECK(refusal(QCOW2, {.options = "refcount_bits=3"}) ==
          "Refcount width must be a power of two and may not exceed 64 bits");
    CHECK(refusal(QCOW2, {.options = "preallocation=banana"}) == "invalid parameter value: banana");
    CHECK(refusal(QCOW2, {.options = "encrypt.format=luks"}) ==
          "Parameter 'encrypt.key-secret' is required for cipher");
    // The L1 size limit, checked against the size option.
    CHECK(refusal(QCOW2, {.size = 100ull << 40}).empty());
    CHECK(refusal(QCOW2, {.size = 1ull << 60}) == "The image size is too large (try using a larger cluster size)");
    CHECK(refusal(QCOW2, {.options = "cluster_size=512", .size = 5ull << 50}) ==
          "The image size is too large (try using a larger cluster size)");
}

TEST_CASE("qcow2 measure: encrypt.format=luks adds the LUKS header in whole clusters") {
    // qemu-img measure -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s0 --size 1G: the 2 MiB
    // header of aes-256-xts (4 KiB + 8 slots of 64 bytes x 4000 stripes, each rounded to 4 KiB).
    auto f = measure(QCOW2, {.options = "encrypt.format=luks,encrypt.key-secret=s0", .size = 1 * GiB,
                             .secrets = {"s0"}});
    REQUIRE(f);
    CHECK(f->fully_allocated == 1076232192); // as qemu-img 7.2 and 10.0
    CHECK(f->required == 2490368);
    CHECK(refusal(QCOW2, {.options = "encrypt.format=luks,encrypt.key-secret=s1", .secrets = {"s0"}}) ==
          "No secret with id 's1'");
}

TEST_CASE("luks measure: header and whole disk; LUKS2 from its segment offset") {
    auto f = measure(LUKS, {.options = "key-secret=s0", .size = 1 * GiB, .secrets = {"s0"}});
    REQUIRE(f);
    CHECK(f->required == 1075810304); // 1 GiB + 4096 + 8 * round_up(64 * 4000, 4096), as qemu-img 7.2 and 10.0
    CHECK(f->fully_allocated == f->required);
    f = measure(LUKS, {.options = "key-secret=s0,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv", .size = 1 * MiB,
                       .secrets = {"s0"}});
    CHECK(f->required == 1576960); // 1 MiB + 4096 + 8 * 65536: a 16-byte key, 64000 -> 65536 per slot
    f = measure(LUKS, {.options = "key-secret=s0,luks-version=2", .size = 1000, .secrets = {"s0"}});
    CHECK(f->required == luks::LUKS2_NEW_SEGMENT_OFFSET + 1024);
    CHECK(refusal(LUKS, {.options = "key-secret=s0"}) == "No secret with id 's0'");
    CHECK(refusal(LUKS, {}) == "Parameter 'key-secret' is required for cipher");
    CHECK(refusal(LUKS, {.options = "cipher-alg=rot13"}) == "Parameter 'cipher-alg' does not accept value 'rot13'");
    CHECK(refusal(LUKS, {.options = "key-secret=s0,cipher-alg=des", .secrets = {"s0"}}) ==
          "Algorithm 'des' not supported");
    CHECK(refusal(LUKS, {.options = "key-secret=s0,cipher-alg=cast5-128", .secrets = {"s0"}}) ==
          "Unsupported cipher mode xts");
    CHECK(refusal(LUKS, {.options = "key-secret=s0,ivgen-alg=essiv,ivgen-hash-alg=sha512", .secrets = {"s0"}}) ==
          "No AES cipher with key size 64 available");
    CHECK(refusal(LUKS, {.options = "detached-header=on"}) == "Parameter 'detached-header' is unexpected");
    CHECK(refusal(LUKS, {.options = "luks-version=3"}) == "Parameter 'luks-version' does not accept value '3'");
}

TEST_CASE("raw measure") {
    CHECK(measure(RAW, {.size = 1})->required == 512);
    CHECK(measure(RAW, {.size = 0})->fully_allocated == 0);
    CHECK(measure(RAW, {.size = 1000001, .source = true})->required == 1000001);
}

TEST_CASE("estimate: bounds grow with the data and never fall below the empty image") {
    const Target targets[] = {
        {instar::vpc::MEASURE_HOOKS, {instar::vpc::OPTIONS, instar::vpc::OPTION_COUNT}},
        {instar::vhdx::MEASURE_HOOKS, {instar::vhdx::OPTIONS, instar::vhdx::OPTION_COUNT}},
        {instar::vmdk::MEASURE_HOOKS, {instar::vmdk::OPTIONS, instar::vmdk::OPTION_COUNT}},
    };
    for (const Target& t : targets) {
        CHECK((t.hooks.flags & MEASURE_HOOKS_EXTENSION) != 0);
        const auto empty = measure(t, {.size = 1 * GiB});
        const auto half = measure(t, {.size = 1 * GiB, .source = true, .data = 512 * MiB});
        const auto full = measure(t, {.size = 1 * GiB, .source = true, .data = 1 * GiB});
        CHECK(empty->required <= half->required);
        CHECK(half->required <= full->required);
        CHECK(full->required <= full->fully_allocated); // vpc: CHS rounding adds a block the data never fills
        CHECK(full->fully_allocated >= 1 * GiB);
        CHECK(empty->fully_allocated == full->fully_allocated);
    }
    // vhdx's default block size follows the virtual size: no unit before the source is open.
    const Target vhdx{instar::vhdx::MEASURE_HOOKS, {instar::vhdx::OPTIONS, instar::vhdx::OPTION_COUNT}};
    CHECK(walk_unit(vhdx, {.source = true}, MEASURE_SIZE_UNKNOWN) == 0);
    CHECK(walk_unit(vhdx, {.options = "block_size=1M", .source = true}, MEASURE_SIZE_UNKNOWN) == 1 * MiB);
    CHECK(walk_unit(vhdx, {.size = 4 * GiB, .source = true}) == 16 * MiB);
    CHECK(walk_unit(vhdx, {.options = "subformat=fixed", .size = 4 * GiB, .source = true}) == 0);
}
