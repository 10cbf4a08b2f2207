// Unit tests for the VHD footer parser.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "vpc_test_images.h"

#include "vpc_footer.h"

#include <doctest/doctest.h>

using namespace instar::vpc;
using instar::guest::Status;

TEST_CASE("footer: exact fields of a hand-built footer") {
    auto f = vpc_test::footer(VHD_DYNAMIC, "qemu", 100 << 20, 203, 16, 63, 512);
    VpcFooter p{};
    REQUIRE(vpc_footer_parse(f.data(), f.size(), &p) == Status::Ok);
    CHECK(p.data_offset == 512);
    CHECK(p.current_size == (100u << 20));
    CHECK(p.cylinders == 203);
    CHECK(p.heads == 16);
    CHECK(p.sectors_per_track == 63);
    CHECK(p.disk_type == VHD_DYNAMIC);
    CHECK(p.checksum == vpc_footer_checksum(f.data()));
}

TEST_CASE("footer: a wrong checksum, a wrong cookie or a short buffer is Corrupt") {
    auto f = vpc_test::footer(VHD_FIXED, "qemu", 1 << 20, 20, 4, 17, ~uint64_t{0});
    VpcFooter p{};
    auto bad = f;
    bad[100] ^= 1;
    CHECK(vpc_footer_parse(bad.data(), bad.size(), &p) == Status::Corrupt);
    bad = f;
    bad[0] = 'C';
    CHECK(vpc_footer_parse(bad.data(), bad.size(), &p) == Status::Corrupt);
    CHECK(vpc_footer_parse(f.data(), 511, &p) == Status::Corrupt);
}
