// qemu size/number syntax, with expectations taken from qemu-img 7.2.22 and 10.0.2 themselves.
#include "options/size.h"

#include "instar/plugin.h"

#include <doctest/doctest.h>

using namespace instar;

namespace {
const std::uint32_t V72 = qemu_version(7, 2, 0);
const std::uint32_t V10 = qemu_version(10, 0, 0);

std::uint64_t ok(const char* s, std::uint32_t v) {
    const auto p = parse_qemu_size(s, v);
    REQUIRE_MESSAGE(p.status == ParseStatus::Ok, s);
    return p.value;
}
ParseStatus st(const char* s, std::uint32_t v) { return parse_qemu_size(s, v).status; }
} // namespace

TEST_CASE("sizes both profiles accept") {
    for (auto v : {V72, V10}) {
        CHECK(ok("1.5M", v) == 1572864);
        CHECK(ok("0x10", v) == 16);
        CHECK(ok(" 1M", v) == 1048576);
        CHECK(ok("1m", v) == 1048576);
        CHECK(ok("1b", v) == 1);
        CHECK(ok("1B", v) == 1);
        CHECK(ok("1K", v) == 1024);
        CHECK(ok("1.0000001k", v) == 1024);
        CHECK(ok("010", v) == 10); // decimal, unlike numbers
        CHECK(ok("+5", v) == 5);
        CHECK(ok("1.5k", v) == 1536);
        CHECK(ok("1T", v) == 1099511627776ull);
        CHECK(ok("18446744073709551615", v) == 18446744073709551615ull);
        CHECK(ok("15E", v) == 15ull << 60);
    }
}

TEST_CASE("sizes both profiles reject") {
    for (auto v : {V72, V10}) {
        CHECK(st("1.5", v) == ParseStatus::Invalid);
        CHECK(st("1e3", v) == ParseStatus::Invalid);
        CHECK(st("1M5", v) == ParseStatus::Invalid);
        CHECK(st("0.5", v) == ParseStatus::Invalid);
        CHECK(st("", v) == ParseStatus::Invalid);
        CHECK(st("abc", v) == ParseStatus::Invalid);
        CHECK(st("1M ", v) == ParseStatus::Invalid);
        CHECK(st("16E", v) == ParseStatus::OutOfRange);
        CHECK(st("16e", v) == ParseStatus::OutOfRange);
        CHECK(st("18446744073709551616", v) == ParseStatus::OutOfRange);
    }
}

TEST_CASE("sizes where 7.2 and 10.0 differ") {
    // A multiplier on hex: 7.2 warns and accepts, 10.0 rejects.
    const auto p = parse_qemu_size("0x10k", V72);
    CHECK(p.status == ParseStatus::Ok);
    CHECK(p.value == 16384);
    REQUIRE(p.warning);
    CHECK(*p.warning == "Using a multiplier suffix on hex numbers is deprecated: 0x10k");
    CHECK(st("0x10k", V10) == ParseStatus::Invalid);
    // Negative: a syntax error for 7.2, out of range for 10.0.
    CHECK(st("-1", V72) == ParseStatus::Invalid);
    CHECK(st("-1", V10) == ParseStatus::OutOfRange);
    // No digit before the dot: 10.0 only.
    CHECK(st(".5k", V72) == ParseStatus::Invalid);
    CHECK(ok(".5k", V10) == 512);
}

TEST_CASE("numbers use strtoull base 0") {
    CHECK(parse_qemu_number("16") == 16u);
    CHECK(parse_qemu_number("0x10") == 16u);
    CHECK(parse_qemu_number("010") == 8u); // octal, as qemu's refcount_bits=010 gives 8
    CHECK(parse_qemu_number(" 16") == 16u);
    CHECK(parse_qemu_number("-1") == UINT64_MAX); // wraps, as strtoull does
    CHECK_FALSE(parse_qemu_number("1k"));
    CHECK_FALSE(parse_qemu_number("1.5"));
    CHECK_FALSE(parse_qemu_number("16x"));
    CHECK_FALSE(parse_qemu_number(""));
    CHECK_FALSE(parse_qemu_number("99999999999999999999"));
}
