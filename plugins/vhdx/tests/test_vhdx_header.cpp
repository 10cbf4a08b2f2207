// Unit tests for VHDX header parsing and selection.
#include "vhdx_test_images.h"

#include "hosted_support.h"
#include "vhdx_header.h"

#include <doctest/doctest.h>

using namespace instar;
using namespace instar::vhdx;
using instar::guest::Status;

TEST_CASE("header: exact fields") {
    auto img = vhdx_test::image();
    VhdxHeader h{};
    REQUIRE(vhdx_header_parse(img.data() + VHDX_HEADER1_OFFSET, 4096, &h));
    CHECK(h.sequence_number == 1);
    CHECK(h.version == 1);
    CHECK(h.log_version == 0);
    CHECK(h.log_length == vhdx_test::LOG_LENGTH);
    CHECK(h.log_offset == vhdx_test::LOG_OFFSET);
    CHECK(!vhdx_header_parse(img.data() + VHDX_HEADER1_OFFSET, 4095, &h));
}

TEST_CASE("header: the valid one with the higher sequence number wins") {
    hosted::BudgetAllocator alloc(1 << 20);
    VhdxHeader h{};
    vhdx_test::Options o;
    o.seq1 = 7;
    o.seq2 = 3;
    auto img = vhdx_test::image(o);
    hosted::MemoryDevice d1(img);
    REQUIRE(vhdx_read_current_header(d1, alloc, &h) == Status::Ok);
    CHECK(h.sequence_number == 7);
    img[VHDX_HEADER1_OFFSET + 100] ^= 1; // header 1 checksum broken: header 2 is used
    hosted::MemoryDevice d2(img);
    REQUIRE(vhdx_read_current_header(d2, alloc, &h) == Status::Ok);
    CHECK(h.sequence_number == 3);
    img[VHDX_HEADER2_OFFSET + 100] ^= 1; // both broken
    hosted::MemoryDevice d3(img);
    CHECK(vhdx_read_current_header(d3, alloc, &h) == Status::Corrupt);
    o.seq1 = o.seq2 = 5; // equal sequence numbers: fine only if identical
    img = vhdx_test::image(o);
    hosted::MemoryDevice d4(img);
    CHECK(vhdx_read_current_header(d4, alloc, &h) == Status::Ok);
    vhdx_test::le(img, VHDX_HEADER2_OFFSET + 16, 0x1234, 8); // different file write GUID
    vhdx_test::seal(img, VHDX_HEADER2_OFFSET, 4096);
    hosted::MemoryDevice d5(img);
    CHECK(vhdx_read_current_header(d5, alloc, &h) == Status::Corrupt);
}
