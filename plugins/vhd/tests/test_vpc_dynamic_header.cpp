// Unit tests for the VHD dynamic disk header parser.
#include "vpc_test_images.h"

#include "vpc_dynamic_header.h"

#include <doctest/doctest.h>

using namespace instar::vpc;
using instar::guest::Status;

TEST_CASE("dynamic header: exact fields and locators") {
    auto h = vpc_test::dynamic_header(1536, 51, 2 << 20);
    std::memcpy(h.data() + 576, "W2ru", 4);
    vpc_test::be(h, 576 + 8, 24, 4);
    vpc_test::be(h, 576 + 16, 0x1234, 8);
    VpcDynamicHeader p{};
    REQUIRE(vpc_dynamic_header_parse(h.data(), h.size(), &p) == Status::Ok);
    CHECK(p.table_offset == 1536);
    CHECK(p.max_table_entries == 51);
    CHECK(p.block_size == (2u << 20));
    CHECK(std::memcmp(p.parent_locators[0].platform_code, "W2ru", 4) == 0);
    CHECK(p.parent_locators[0].data_length == 24);
    CHECK(p.parent_locators[0].data_offset == 0x1234);
}

TEST_CASE("dynamic header: bad cookie, bad block sizes, short buffer") {
    VpcDynamicHeader p{};
    auto h = vpc_test::dynamic_header(1536, 1, 2 << 20);
    CHECK(vpc_dynamic_header_parse(h.data(), 1023, &p) == Status::Corrupt);
    for (std::uint32_t bs : {0u, 1u, 256u, 3000u, 0x80000001u}) {
        auto b = vpc_test::dynamic_header(1536, 1, bs);
        CHECK(vpc_dynamic_header_parse(b.data(), b.size(), &p) == Status::Corrupt);
    }
    h[1] = 'X';
    CHECK(vpc_dynamic_header_parse(h.data(), h.size(), &p) == Status::Corrupt);
}
