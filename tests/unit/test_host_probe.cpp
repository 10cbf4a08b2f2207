// Probe rules against a file's head and tail windows: exact and AtLeast (big-endian >=) matches.
#include "ops/host_probe.h"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>

using instar::ProbeMatch;
using instar::ProbeRule;
using instar::rule_matches;

namespace {

constexpr unsigned char MAGIC[] = {'Q', 'F', 'I', 0xfb};
constexpr unsigned char VERSION_2[] = {0, 0, 0, 2};
// qemu's qcow2_probe: the magic, then a version of 2 or more.
constexpr ProbeMatch QCOW2[] = {
    {ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
    {ProbeMatch::FromStart, 4, VERSION_2, sizeof VERSION_2, ProbeMatch::AtLeast},
};
constexpr ProbeRule RULE{QCOW2, 2};

bool head_matches(std::array<std::uint8_t, 8> head) {
    return rule_matches(RULE, head, {}, head.size());
}

} // namespace

TEST_CASE("host probe: AtLeast compares big-endian numbers, Equal exact bytes") {
    CHECK_FALSE(head_matches({'Q', 'F', 'I', 0xfb, 0, 0, 0, 0}));
    CHECK_FALSE(head_matches({'Q', 'F', 'I', 0xfb, 0, 0, 0, 1}));
    CHECK(head_matches({'Q', 'F', 'I', 0xfb, 0, 0, 0, 2}));
    CHECK(head_matches({'Q', 'F', 'I', 0xfb, 0, 0, 0, 3}));
    CHECK(head_matches({'Q', 'F', 'I', 0xfb, 0, 0, 0, 255}));
    CHECK(head_matches({'Q', 'F', 'I', 0xfb, 0, 0, 1, 0}));   // 256: a high byte outweighs the low one
    CHECK(head_matches({'Q', 'F', 'I', 0xfb, 0xff, 0, 0, 0})); // 2^32 - 2^24
    CHECK_FALSE(head_matches({'Q', 'F', 'I', 0xfc, 0, 0, 0, 3})); // the magic stays exact
    CHECK_FALSE(head_matches({'Q', 'F', 'I', 0xfa, 0, 0, 0, 3}));
}

TEST_CASE("host probe: an AtLeast match past the file's end does not match") {
    const std::array<std::uint8_t, 6> short_head{'Q', 'F', 'I', 0xfb, 0, 0};
    CHECK_FALSE(rule_matches(RULE, short_head, {}, short_head.size()));
}

TEST_CASE("host probe: AtLeast from the end") {
    static constexpr unsigned char MIN[] = {0x10, 0x00};
    static constexpr ProbeMatch TAIL[] = {{ProbeMatch::FromEnd, 2, MIN, sizeof MIN, ProbeMatch::AtLeast}};
    const ProbeRule rule{TAIL, 1};
    const std::array<std::uint8_t, 2> big{0x10, 0x01}, same{0x10, 0x00}, small{0x0f, 0xff};
    CHECK(rule_matches(rule, {}, big, 100));
    CHECK(rule_matches(rule, {}, same, 100));
    CHECK_FALSE(rule_matches(rule, {}, small, 100));
}
