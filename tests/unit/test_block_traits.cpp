// The per-format block-status rules core derives from a plugin's qemu_traits (ops/block_traits.h),
// and the descriptor check's view of the field. The expected values are the rules core used to
// keep per format name (before round 5), plus vdi's static images (RECURSE, qemu's vdi.c).
#include "ops/block_traits.h"
#include "plugins/descriptor_check.h"

#include <doctest/doctest.h>

using namespace instar;

namespace {
// The traits the in-tree plugins set (plugins/*/…_plugin.cpp).
constexpr std::uint32_t QCOW2 = QEMU_SUPPORTS_BACKING | QEMU_DETECT_METADATA_PREALLOC | QEMU_FILES_AS_WRITTEN;
constexpr std::uint32_t QED = QEMU_SUPPORTS_BACKING;
constexpr std::uint32_t VMDK = QEMU_SUPPORTS_BACKING | QEMU_RECURSE_HOLES;
constexpr std::uint32_t VPC = QEMU_RECURSE_HOLES | QEMU_UNALLOCATED_ZERO;
constexpr std::uint32_t VHDX = QEMU_NO_BLOCK_STATUS;
constexpr std::uint32_t RAW = QEMU_SPLIT_EOF;
constexpr std::uint32_t VDI = QEMU_RECURSE_HOLES;
} // namespace

TEST_CASE("map styles from qemu_traits are the rules core used to keep per format name") {
    CHECK(map_style_of(VPC) ==
          (INSTAR_MAP_STYLE_HOLE_IS_DATA | INSTAR_MAP_STYLE_UNALLOCATED_ZERO | INSTAR_MAP_STYLE_NO_BACKING));
    CHECK(map_style_of(VMDK) == INSTAR_MAP_STYLE_HOLE_IS_DATA);
    CHECK(map_style_of(VHDX) == (INSTAR_MAP_STYLE_NO_STATUS | INSTAR_MAP_STYLE_NO_BACKING));
    CHECK(map_style_of(RAW) == (INSTAR_MAP_STYLE_NO_BACKING | INSTAR_MAP_STYLE_SPLIT_EOF));
    CHECK(map_style_of(QCOW2) == 0);
    CHECK(map_style_of(QED) == 0);
    // vdi: qemu's vdi_co_block_status says DATA|RECURSE for a static image's blocks, ZERO for
    // unallocated ones, and vdi has no backing files.
    CHECK(map_style_of(VDI) == (INSTAR_MAP_STYLE_HOLE_IS_DATA | INSTAR_MAP_STYLE_NO_BACKING));
    // A descriptor that says nothing: qemu's BlockDriver defaults (block status, no backing).
    CHECK(map_style_of(0) == INSTAR_MAP_STYLE_NO_BACKING);
    for (std::uint32_t t = 0; t <= QEMU_TRAITS_ALL; ++t)
        CHECK((map_style_of(t) & ~INSTAR_MAP_STYLE_ALL) == 0);
}

TEST_CASE("compare flags from qemu_traits are the rules core used to keep per format name") {
    CHECK(compare_flags_of(QCOW2) == INSTAR_COMPARE_IMAGE_BACKING);
    CHECK(compare_flags_of(QED) == INSTAR_COMPARE_IMAGE_BACKING);
    CHECK(compare_flags_of(VMDK) == (INSTAR_COMPARE_IMAGE_BACKING | INSTAR_COMPARE_IMAGE_HOLE_DATA));
    CHECK(compare_flags_of(VPC) == INSTAR_COMPARE_IMAGE_HOLE_DATA);
    CHECK(compare_flags_of(VHDX) == INSTAR_COMPARE_IMAGE_NO_STATUS);
    CHECK(compare_flags_of(RAW) == 0);
    CHECK(compare_flags_of(VDI) == INSTAR_COMPARE_IMAGE_HOLE_DATA);
    // The new plugins of round 5 say theirs without a core change (qemu's block/*.c).
    CHECK(compare_flags_of(QEMU_SUPPORTS_BACKING) == INSTAR_COMPARE_IMAGE_BACKING); // qcow, parallels
    CHECK(compare_flags_of(QEMU_NO_BLOCK_STATUS) == INSTAR_COMPARE_IMAGE_NO_STATUS); // bochs, cloop, dmg
    for (std::uint32_t t = 0; t <= QEMU_TRAITS_ALL; ++t) {
        // The host never decides RECURSE itself: the guest's check does (file_status.h).
        CHECK((compare_flags_of(t) & INSTAR_COMPARE_IMAGE_RECURSE) == 0);
        CHECK((compare_flags_of(t) & ~INSTAR_COMPARE_IMAGE_ALL) == 0);
    }
}

TEST_CASE("qcow2's metadata-preallocation check is asked for by trait, for map, measure and compare alike") {
    CHECK(image_facts_flags_of(QCOW2) == INSTAR_IMAGE_DETECT_PREALLOC);
    for (std::uint32_t t : {QED, VMDK, VPC, VHDX, RAW, VDI, 0u})
        CHECK(image_facts_flags_of(t) == 0);
}

namespace {

// A descriptor the check accepts: the fields every descriptor must fill, nothing else.
FormatDescriptor minimal_descriptor() {
    FormatDescriptor d{};
    d.abi_version = INSTAR_PLUGIN_ABI_VERSION;
    d.name = "vvfat";
    d.version = "1";
    d.description = "test";
    return d;
}

} // namespace

TEST_CASE("the descriptor check refuses qemu_traits bits this instar does not know") {
    FormatDescriptor d = minimal_descriptor();
    d.qemu_traits = QEMU_TRAITS_ALL;
    CHECK_FALSE(check_descriptor(&d).has_value());
    d.qemu_traits = QEMU_TRAITS_ALL + 1;
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("qemu_traits") != std::string::npos);
}

TEST_CASE("the descriptor check refuses probe-rule flags this instar does not know") {
    static constexpr unsigned char MAGIC[] = {'X'};
    static constexpr ProbeMatch MATCH[] = {{ProbeMatch::FromStart, 0, MAGIC, 1}};
    ProbeRule rule{MATCH, 1, PROBE_RULE_EXTENSION};
    FormatDescriptor d = minimal_descriptor();
    d.probe_rules = &rule;
    d.probe_rule_count = 1;
    CHECK_FALSE(check_descriptor(&d).has_value());
    rule.flags = PROBE_RULE_FLAGS_ALL + 1;
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("unknown flags") != std::string::npos);
}

TEST_CASE("the descriptor check refuses option policies this instar does not know") {
    OptionDesc option{"shade", OptionType::String, nullptr, "h", OptionPolicy::Extension, "x", nullptr, 0, 0};
    FormatDescriptor d = minimal_descriptor();
    d.options = &option;
    d.option_count = 1;
    CHECK_FALSE(check_descriptor(&d).has_value());
    option.policy = static_cast<OptionPolicy>(OPTION_POLICY_LAST + 1);
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("unknown policy") != std::string::npos);
}

namespace {
bool no_plan(const MeasureRequest&, MeasurePlan&, char*) noexcept { return true; }
bool no_figures(const MeasureRequest&, std::uint64_t, MeasureAnswer&, char*) noexcept { return true; }
} // namespace

TEST_CASE("the descriptor check refuses measure hooks without functions or with unknown flags") {
    FormatDescriptor d = minimal_descriptor();
    const MeasureHooks good{MEASURE_HOOKS_EXTENSION, no_plan, no_figures};
    d.measure = &good;
    CHECK_FALSE(check_descriptor(&d).has_value());
    const MeasureHooks half{0, no_plan, nullptr};
    d.measure = &half;
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("measure hooks lack") != std::string::npos);
    const MeasureHooks newer{MEASURE_HOOKS_FLAGS_ALL + 1, no_plan, no_figures};
    d.measure = &newer;
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("unknown measure hook flags") != std::string::npos);
}

TEST_CASE("the descriptor check takes only qemu's secret keys and well-formed amend tables") {
    FormatDescriptor d = minimal_descriptor();
    d.secret_option = "encrypt.key-secret";
    CHECK_FALSE(check_descriptor(&d).has_value());
    d.secret_option = "password"; // instar's image-name parser would refuse it before the probe
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("secret option") != std::string::npos);
    d.secret_option = nullptr;
    d.amend_option_count = 1; // a count without a table
    REQUIRE(check_descriptor(&d).has_value());
    CHECK(check_descriptor(&d)->find("amend option table") != std::string::npos);
}
