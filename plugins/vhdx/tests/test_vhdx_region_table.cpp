// Unit tests for the VHDX region table.
#include "vhdx_test_images.h"

#include "vhdx_region_table.h"

#include <doctest/doctest.h>

#include <string>

using namespace instar::vhdx;
using instar::guest::Status;

namespace {
constexpr std::size_t RT = 192 * 1024;
Status parse(const vhdx_test::Bytes& img, VhdxRegions* r) {
    return vhdx_region_table_parse(img.data() + RT, 64 * 1024, vhdx_test::LOG_OFFSET, vhdx_test::LOG_LENGTH, r);
}
} // namespace

TEST_CASE("region table: exact BAT and metadata regions") {
    auto img = vhdx_test::image();
    VhdxRegions r{};
    REQUIRE(parse(img, &r) == Status::Ok);
    CHECK(r.bat.file_offset == vhdx_test::BAT_OFFSET);
    CHECK(r.bat.length == vhdx_test::MiB);
    CHECK(r.metadata.file_offset == vhdx_test::META_OFFSET);
    CHECK(r.metadata.length == vhdx_test::MiB);
    CHECK(vhdx_region_table_parse(img.data() + RT, 1000, 0, 0, &r) == Status::Corrupt);
}

TEST_CASE("region table: hostile tables") {
    VhdxRegions r{};
    auto img = vhdx_test::image();
    img[RT + 5] ^= 1; // checksum
    CHECK(parse(img, &r) == Status::Corrupt);
    img = vhdx_test::image();
    vhdx_test::le(img, RT + 8, 2048, 4); // too many entries
    vhdx_test::seal(img, RT, 64 * 1024);
    CHECK(parse(img, &r) == Status::Corrupt);
    img = vhdx_test::image();
    vhdx_test::le(img, RT + 64, vhdx_test::LOG_OFFSET, 8); // metadata over the log
    vhdx_test::seal(img, RT, 64 * 1024);
    CHECK(parse(img, &r) == Status::Corrupt);
    img = vhdx_test::image();
    vhdx_test::le(img, RT + 64, vhdx_test::BAT_OFFSET + 4096, 8); // metadata over the BAT
    vhdx_test::seal(img, RT, 64 * 1024);
    CHECK(parse(img, &r) == Status::Corrupt);
    img = vhdx_test::image();
    vhdx_test::le(img, RT + 8, 3, 4); // unknown required region
    img[RT + 80] = 0x42;
    vhdx_test::le(img, RT + 96, 5 * vhdx_test::MiB, 8);
    vhdx_test::le(img, RT + 104, 4096, 4);
    vhdx_test::le(img, RT + 108, 1, 4);
    vhdx_test::seal(img, RT, 64 * 1024);
    CHECK(parse(img, &r) == Status::Unsupported);
    img = vhdx_test::image();
    vhdx_test::le(img, RT + 8, 1, 4); // metadata region missing
    vhdx_test::seal(img, RT, 64 * 1024);
    CHECK(parse(img, &r) == Status::Corrupt);
}

namespace {
std::string text(const VhdxReport& r) { return std::string(r.text, r.len); }
} // namespace

TEST_CASE("region table: qemu's overlap line, in qemu's order and arithmetic") {
    VhdxRegions r{};
    VhdxReport line;
    auto img = vhdx_test::image();
    vhdx_test::le(img, RT + 64, vhdx_test::LOG_OFFSET, 8); // metadata over the log
    vhdx_test::seal(img, RT, 64 * 1024);
    CHECK(vhdx_region_table_parse(img.data() + RT, 64 * 1024, vhdx_test::LOG_OFFSET, vhdx_test::LOG_LENGTH, &r,
                                  &line) == Status::Corrupt);
    CHECK(text(line) == "VHDX region " + std::to_string(vhdx_test::LOG_OFFSET) + "-" +
                            std::to_string(vhdx_test::LOG_OFFSET + vhdx_test::MiB) + " overlaps with region " +
                            std::to_string(vhdx_test::LOG_OFFSET) + "-" +
                            std::to_string(vhdx_test::LOG_OFFSET + vhdx_test::LOG_LENGTH));
    // Over the BAT and the log at once: qemu's list holds the later entry first, so the BAT is named.
    img = vhdx_test::image();
    vhdx_test::le(img, RT + 64, vhdx_test::LOG_OFFSET + vhdx_test::LOG_LENGTH - 4096, 8); // into the log's end
    vhdx_test::le(img, RT + 72, vhdx_test::MiB + 8192, 4);                                 // to the BAT's start
    vhdx_test::seal(img, RT, 64 * 1024);
    line.len = 0;
    CHECK(vhdx_region_table_parse(img.data() + RT, 64 * 1024, vhdx_test::LOG_OFFSET, vhdx_test::LOG_LENGTH, &r,
                                  &line) == Status::Corrupt);
    CHECK(text(line).find(" overlaps with region " + std::to_string(vhdx_test::BAT_OFFSET) + "-") != std::string::npos);
    // "%." PRIu64: a wrapped end of 0 prints no digit.
    vhdx_overlap_report(5, 10, 1, 0, &line);
    CHECK(text(line) == "VHDX region 5-10 overlaps with region 1-");
    vhdx_overlap_report(0, 18446744073709551615ull, 0, 1, &line);
    CHECK(text(line) == "VHDX region 0-18446744073709551615 overlaps with region 0-1");
    // qemu's test: a zero-length region strictly inside another overlaps it, at its start not.
    CHECK(vhdx_region_overlap(5, 5, 0, 10));
    CHECK_FALSE(vhdx_region_overlap(0, 0, 0, 10));
    CHECK_FALSE(vhdx_region_overlap(10, 20, 0, 10));
}
