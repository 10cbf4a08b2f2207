// Unit tests for qcow2 snapshot table entries (qcow2_snapshot.cpp).
#include <doctest/doctest.h>

#include "qcow2_snapshot.h"
#include "qcow2_test_image.h"

#include <algorithm>

using namespace instar::qcow2;
using instar::guest::Status;
using test::SnapshotSpec;

namespace {

Status parse_entry(const std::vector<std::uint8_t>& e, Qcow2Snapshot* s) {
    const std::uint32_t extra = (std::uint32_t{e[36]} << 24) | (e[37] << 16) | (e[38] << 8) | e[39];
    const std::size_t known = std::min<std::size_t>(extra, 24);
    std::vector<std::uint8_t> x(e.begin() + 40, e.begin() + 40 + std::min(known, e.size() - 40));
    return qcow2_snapshot_parse(e.data(), 40, x.data(), known, s);
}

} // namespace

TEST_CASE("entry with qemu 5.0+ extra data (vm state, disk size, icount)") {
    SnapshotSpec sp{"1", "first", 1795252344, 414102000, 3000000001ull, 7, test::snapshot_extra(1ull << 33, 1 << 20, 42)};
    Qcow2Snapshot s;
    REQUIRE(parse_entry(test::snapshot_entry(sp), &s) == Status::Ok);
    CHECK(s.l1_table_offset == 0x50000);
    CHECK(s.l1_size == 1);
    CHECK(s.id_str_size == 1);
    CHECK(s.name_size == 5);
    CHECK(s.date_sec == 1795252344u);
    CHECK(s.date_nsec == 414102000u);
    CHECK(s.vm_clock_nsec == 3000000001ull);
    CHECK(s.vm_state_size == (1ull << 33)); // the 64-bit field wins
    CHECK(s.extra_data_size == 24);
    CHECK(s.has_disk_size);
    CHECK(s.disk_size == (1u << 20));
    CHECK(s.has_icount);
    CHECK(s.icount == 42);
}

TEST_CASE("entry with 16 bytes of extra data has no icount; all-ones icount means none") {
    auto extra = test::snapshot_extra(5, 1 << 20, 0);
    extra.resize(16);
    Qcow2Snapshot s;
    REQUIRE(parse_entry(test::snapshot_entry({"2", "b", 0, 0, 0, 9, extra}), &s) == Status::Ok);
    CHECK(s.vm_state_size == 5);
    CHECK_FALSE(s.has_icount);
    REQUIRE(parse_entry(test::snapshot_entry({"2", "b", 0, 0, 0, 9, test::snapshot_extra(5, 1, ~0ull)}), &s) == Status::Ok);
    CHECK_FALSE(s.has_icount);
}

TEST_CASE("v2-style entry without extra data uses the 32-bit vm state size") {
    Qcow2Snapshot s;
    REQUIRE(parse_entry(test::snapshot_entry({"1", "old", 10, 20, 30, 0xfffffffe, {}}), &s) == Status::Ok);
    CHECK(s.vm_state_size == 0xfffffffeu);
    CHECK_FALSE(s.has_disk_size);
    CHECK_FALSE(s.has_icount);
}

TEST_CASE("extra data beyond qemu's 1024 bytes is refused") {
    SnapshotSpec sp{"1", "x", 0, 0, 0, 0, std::vector<std::uint8_t>(1025, 0)};
    Qcow2Snapshot s;
    CHECK(parse_entry(test::snapshot_entry(sp), &s) == Status::TooLarge);
    sp.extra.resize(1024);
    CHECK(parse_entry(test::snapshot_entry(sp), &s) == Status::Ok);
}

TEST_CASE("short buffers are caller errors") {
    std::uint8_t buf[40] = {};
    Qcow2Snapshot s;
    CHECK(qcow2_snapshot_parse(buf, 39, buf, 0, &s) == Status::Invalid);
}
