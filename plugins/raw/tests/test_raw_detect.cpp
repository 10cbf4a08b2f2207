// Unit tests for the detection of formats instar does not support.
#include "hosted_support.h"
#include "raw_detect.h"
#include "raw_format.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using namespace instar;
using instar::guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {
std::string detect(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    const char* name = "unset";
    REQUIRE(raw::detect_other(dev, &name) == Status::Ok);
    return name ? name : "";
}
Bytes with(std::size_t size, std::size_t at, const void* p, std::size_t n) {
    Bytes b(size, 0);
    std::memcpy(b.data() + at, p, n);
    return b;
}
} // namespace

TEST_CASE("detect: each magic") {
    CHECK(detect(with(40000, raw::ISO9660_IDENTIFIER_OFFSET, "CD001", 5)) == "iso");
    CHECK(detect(with(512, 64, "\x7f\x10\xda\xbe", 4)) == "vdi");
    CHECK(detect(with(512, 0, "QED\0", 4)) == "qed");
    CHECK(detect(with(512, 0, "LUKS\xba\xbe\0\1", 8)) == "luks");
    CHECK(detect(with(512, 0, "LUKS\xba\xbe\0\2", 8)) == "luks2");
    CHECK(detect(with(512, 0, raw::LUKS_MAGIC, 6)).empty()); // version 0: neither (qemu: raw)
    CHECK(detect(with(512, 0, "QFI\xfb\0\0\0\1", 8)) == "qcow");
    CHECK(detect(with(512, 0, "QFI\xfb\0\0\0\3", 8)).empty()); // qcow2 is not "other"
    CHECK(detect(with(4096, 4096 - 512, "koly", 4)) == "dmg");
    CHECK(detect(with(512, 0, "WithoutFreeSpace\2\0\0\0", 20)) == "parallels");
    CHECK(detect(with(512, 0, "WithouFreSpacExt\2\0\0\0", 20)) == "parallels");
    CHECK(detect(with(512, 0, "WithoutFreeSpace\3\0\0\0", 20)).empty());
    Bytes bochs(512, 0);
    std::memcpy(bochs.data(), raw::BOCHS_MAGIC, sizeof raw::BOCHS_MAGIC);
    std::memcpy(bochs.data() + 32, "Redolog", 8);
    std::memcpy(bochs.data() + 48, "Growing", 8);
    bochs[66] = 2;
    CHECK(detect(bochs) == "bochs");
    bochs[66] = 3;
    CHECK(detect(bochs).empty());
    CHECK(detect(with(512, 0, raw::CLOOP_MAGIC_V2_0, sizeof raw::CLOOP_MAGIC_V2_0 - 1)) == "cloop");
}

TEST_CASE("detect: nothing on garbage, empty and truncated files") {
    CHECK(detect(Bytes{}).empty());
    CHECK(detect(Bytes(3, 'Q')).empty());
    CHECK(detect(Bytes(1 << 16, 0)).empty());
    CHECK(detect(with(50, 0, "WithoutFreeSpace", 16)).empty());
    CHECK(detect(with(0x8003, 0x8001, "CD", 2)).empty());
}
