// Unit tests for qcow2 bitmap directory entries (qcow2_bitmap.cpp).
#include <doctest/doctest.h>

#include "qcow2_bitmap.h"
#include "qcow2_test_image.h"

using namespace instar::qcow2;
using instar::guest::Status;

namespace {

Qcow2Header header64k() {
    Qcow2Header h;
    h.version = 3;
    h.cluster_bits = 16;
    h.size = 1 << 20;
    return h;
}

} // namespace

TEST_CASE("entry fields") {
    auto e = test::bitmap_entry("bitmap-one", BME_FLAG_IN_USE | BME_FLAG_AUTO, 20, 0x60000, 3);
    Qcow2BitmapDirEntry d;
    REQUIRE(qcow2_bitmap_entry_parse(header64k(), 1 << 20, e.data(), e.size(), &d) == Status::Ok);
    CHECK(d.bitmap_table_offset == 0x60000);
    CHECK(d.bitmap_table_size == 3);
    CHECK(d.flags == 3);
    CHECK(d.type == 1);
    CHECK(d.granularity_bits == 20);
    CHECK(d.granularity() == 1048576);
    CHECK(d.name_size == 10);
    CHECK(d.extra_data_size == 0);
    CHECK(d.entry_size() == 40);
}

TEST_CASE("qemu's per-entry constraints") {
    const auto h = header64k();
    Qcow2BitmapDirEntry d;
    auto check = [&](std::vector<std::uint8_t> e) { return qcow2_bitmap_entry_parse(h, 1 << 20, e.data(), e.size(), &d); };
    CHECK(check(test::bitmap_entry("b", 4, 16)) == Status::Corrupt);          // reserved flag
    CHECK(check(test::bitmap_entry("b", 0, 8)) == Status::Corrupt);           // granularity < 512
    CHECK(check(test::bitmap_entry("b", 0, 32)) == Status::Corrupt);          // granularity > 2 GiB
    CHECK(check(test::bitmap_entry("b", 0, 16, 0x60001)) == Status::Corrupt); // unaligned table
    CHECK(check(test::bitmap_entry("b", 0, 16, 0)) == Status::Corrupt);       // no table
    CHECK(check(test::bitmap_entry("b", 0, 16, 0x60000, 0)) == Status::Corrupt);
    CHECK(check(test::bitmap_entry("b", 0, 16, 0x60000, 0x8000001)) == Status::TooLarge);
    CHECK(check(test::bitmap_entry("b", 0, 16, 0x60000, 0x2001)) == Status::TooLarge); // > 512 MiB of bitmap
    auto e = test::bitmap_entry("b", 0, 16);
    e[16] = 2; // type
    CHECK(check(e) == Status::Corrupt);
    e = test::bitmap_entry("b", 0, 16);
    e[23] = 8; // extra data
    CHECK(check(e) == Status::Unsupported);
    CHECK(qcow2_bitmap_entry_parse(h, 1 << 20, e.data(), 23, &d) == Status::Corrupt);
}

TEST_CASE("a consistent bitmap's table must cover the disk") {
    const auto h = header64k();
    Qcow2BitmapDirEntry d;
    // one 64 KiB cluster of bits at 512 bytes per bit covers 256 MiB
    auto e = test::bitmap_entry("b", 0, 9);
    CHECK(qcow2_bitmap_entry_parse(h, 256u << 20, e.data(), e.size(), &d) == Status::Ok);
    CHECK(qcow2_bitmap_entry_parse(h, (256u << 20) + 512, e.data(), e.size(), &d) == Status::Corrupt);
    e = test::bitmap_entry("b", BME_FLAG_IN_USE, 9);
    CHECK(qcow2_bitmap_entry_parse(h, (256u << 20) + 512, e.data(), e.size(), &d) == Status::Ok);
}
