// Tests of the VHD emitter: layouts and field values as qemu-img writes them, qemu's size rules and
// error texts, differencing disks, and bounded memory; every image is parsed back with info().
#include "vpc_test_images.h"

#include "hosted_create.h"
#include "hosted_support.h"
#include "vpc_create.h"
#include "vpc_format.h"
#include "vpc_geometry.h"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

using namespace instar;
using instar::guest::Status;
using vpc_test::Bytes;

namespace {

struct Created {
    Status status;
    Bytes bytes;
    std::string reason;
    std::uint64_t unit;
    std::vector<guest::Prealloc> fills;
};

Created make(std::uint64_t size, std::vector<std::pair<std::string, std::string>> options = {},
             hosted::CreateParams p = {}) {
    p.size = size;
    p.options = std::move(options);
    hosted::MemoryTarget t(64u << 20);
    const Status st = hosted::run_create(&vpc::create, p, t);
    return {st, st == Status::Ok ? t.image_output().bytes() : Bytes{}, t.reason_text(), t.unit(), t.fills};
}

hosted::HostedInfo info_of(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    return hosted::run_info(&vpc::info, dev, {}, 1 << 20);
}

std::uint64_t be(const Bytes& b, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v = (v << 8) | b.at(at + i);
    return v;
}

std::string str(const Bytes& b, std::size_t at, std::size_t n) {
    return std::string(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
}

// The fields qemu sets in every footer it writes.
void check_footer(const Bytes& b, std::size_t at, std::uint64_t data_offset, const char* creator,
                  std::uint64_t size, std::uint32_t type) {
    CHECK(str(b, at, 8) == "conectix");
    CHECK(be(b, at + 8, 4) == 2);
    CHECK(be(b, at + 12, 4) == 0x10000);
    CHECK(be(b, at + 16, 8) == data_offset);
    CHECK(be(b, at + 24, 4) == 1700000000 - 946684800);
    CHECK(str(b, at + 28, 4) == creator);
    CHECK(be(b, at + 32, 4) == 0x00050003);
    CHECK(str(b, at + 36, 4) == "Wi2k");
    CHECK(be(b, at + 40, 8) == size);
    CHECK(be(b, at + 48, 8) == size);
    CHECK(be(b, at + 60, 4) == type);
    // Unique id: the request's random bytes as a version 4 UUID.
    CHECK(b.at(at + 68) == 1);
    CHECK(b.at(at + 74) == ((7 & 0x0f) | 0x40));
    CHECK(b.at(at + 76) == ((9 & 0x3f) | 0x80));
    Bytes f(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + 512));
    const auto sum = be(f, 64, 4);
    vpc_test::fix_checksum(f);
    CHECK(be(f, 64, 4) == sum);
    for (std::size_t i = 85; i < 512; ++i)
        REQUIRE(b.at(at + i) == 0);
}

std::uint32_t header_checksum(Bytes h) {
    for (int i = 36; i < 40; ++i)
        h[i] = 0;
    std::uint32_t sum = 0;
    for (auto c : h)
        sum += c;
    return ~sum;
}

} // namespace

TEST_CASE("geometry: the VHD specification's CHS table as qemu computes it") {
    auto g = vpc::vpc_geometry_for(2048); // 1 MiB
    CHECK(g.cylinders == 30);
    CHECK(g.heads == 4);
    CHECK(g.sectors_per_track == 17);
    g = vpc::vpc_geometry_for(2097152); // 1 GiB
    CHECK(g.cylinders == 2080);
    CHECK(g.heads == 16);
    CHECK(g.sectors_per_track == 63);
    g = vpc::vpc_geometry_for(65535ull * 16 * 63); // 31.5 GiB: 255 sectors from here
    CHECK(g.sectors_per_track == 255);
    g = vpc::vpc_geometry_for(~0ull); // capped
    CHECK(g.sectors() == vpc::VHD_MAX_GEOMETRY);

    std::uint64_t sectors = 0;
    REQUIRE(vpc::vpc_rounded_size(1u << 20, false, &g, &sectors));
    CHECK(sectors == 2108); // 31 x 4 x 17, qemu-img's 1 MiB disk
    REQUIRE(vpc::vpc_rounded_size(1ull << 30, false, &g, &sectors));
    CHECK(sectors * 512 == 1073995776);
    REQUIRE(vpc::vpc_rounded_size(127ull << 30, false, &g, &sectors));
    CHECK(sectors * 512 == 136365219840);
    REQUIRE(vpc::vpc_rounded_size(0, false, &g, &sectors));
    CHECK(sectors == 0);
    CHECK(g.sectors() == 0);
    REQUIRE(vpc::vpc_rounded_size(1ull << 40, false, &g, &sectors)); // past CHS: the size itself
    CHECK(sectors == (1ull << 40) / 512);
    CHECK(g.sectors() == vpc::VHD_MAX_GEOMETRY);
    REQUIRE(vpc::vpc_rounded_size(2040ull << 30, true, &g, &sectors));
    CHECK(!vpc::vpc_rounded_size((2040ull << 30) + 512, true, &g, &sectors));
    CHECK(!vpc::vpc_rounded_size((2040ull << 30) + 512, false, &g, &sectors));
}

TEST_CASE("geometry: every rounded size is its own rounding (qemu's create re-checks it)") {
    vpc::VpcGeometry g{};
    std::uint64_t sectors = 0, again = 0;
    for (std::uint64_t s = 0; s < 70000000; s += 997) {
        REQUIRE(vpc::vpc_rounded_size(s * 512, false, &g, &sectors));
        REQUIRE(sectors >= s);
        REQUIRE(vpc::vpc_rounded_size(sectors * 512, false, &g, &again));
        REQUIRE(again == sectors);
    }
}

TEST_CASE("create: dynamic disk, qemu's layout") {
    auto c = make(1ull << 30);
    REQUIRE(c.status == Status::Ok);
    const std::uint64_t size = 1073995776; // 1 GiB rounded up to 2081 x 16 x 63
    const std::uint32_t entries = 513;
    REQUIRE(c.bytes.size() == 1536 + 2560 + 512);
    check_footer(c.bytes, 0, 512, "qemu", size, 3);
    CHECK(be(c.bytes, 56, 2) == 2081);
    CHECK(c.bytes[58] == 16);
    CHECK(c.bytes[59] == 63);
    CHECK(Bytes(c.bytes.begin(), c.bytes.begin() + 512) == Bytes(c.bytes.end() - 512, c.bytes.end()));
    Bytes h(c.bytes.begin() + 512, c.bytes.begin() + 1536);
    CHECK(str(h, 0, 8) == "cxsparse");
    CHECK(be(h, 8, 8) == ~0ull);
    CHECK(be(h, 16, 8) == 1536);
    CHECK(be(h, 24, 4) == 0x10000);
    CHECK(be(h, 28, 4) == entries);
    CHECK(be(h, 32, 4) == (2u << 20));
    CHECK(be(h, 36, 4) == header_checksum(h));
    for (std::size_t i = 40; i < 1024; ++i)
        REQUIRE(h[i] == 0);
    for (std::size_t i = 1536; i < 1536 + 2560; ++i)
        REQUIRE(c.bytes[i] == 0xFF);
    CHECK(c.unit == (2u << 20));
    CHECK(c.fills.empty());

    auto r = info_of(c.bytes);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == size);
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(2u << 20));
    CHECK(r.info.files.empty());
}

TEST_CASE("create: empty dynamic disk") {
    auto c = make(0);
    REQUIRE(c.status == Status::Ok);
    CHECK(c.bytes.size() == 2048);
    auto r = info_of(c.bytes);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == 0);
}

TEST_CASE("create: fixed disk is a hole and a footer") {
    auto c = make(1u << 20, {{"subformat", "fixed"}});
    REQUIRE(c.status == Status::Ok);
    const std::uint64_t size = 1079296;
    REQUIRE(c.bytes.size() == size + 512);
    check_footer(c.bytes, size, ~0ull, "qemu", size, 2);
    CHECK(be(c.bytes, size + 56, 2) == 31);
    CHECK(c.bytes[size + 58] == 4);
    CHECK(c.bytes[size + 59] == 17);
    REQUIRE(c.fills.size() == 1);
    CHECK(c.fills[0] == guest::Prealloc::Off);
    CHECK(c.unit == 0);
    auto r = info_of(c.bytes);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == size);
    CHECK(!r.info.cluster_size);
}

TEST_CASE("create: force_size keeps the size (in whole sectors) and marks it qem2") {
    auto c = make(1000, {{"force_size", "on"}});
    REQUIRE(c.status == Status::Ok);
    check_footer(c.bytes, 0, 512, "qem2", 1024, 3);
    CHECK(be(c.bytes, 56, 2) == 65535);
    CHECK(c.bytes[58] == 16);
    CHECK(c.bytes[59] == 255);
    CHECK(info_of(c.bytes).info.virtual_size == 1024);
    c = make(1u << 20, {{"force_size", "on"}, {"subformat", "fixed"}});
    REQUIRE(c.status == Status::Ok);
    CHECK(c.bytes.size() == (1u << 20) + 512);
    CHECK(info_of(c.bytes).info.virtual_size == (1u << 20));
    c = make(1u << 20, {{"force_size", "off"}, {"subformat", "dynamic"}});
    REQUIRE(c.status == Status::Ok);
    CHECK(info_of(c.bytes).info.virtual_size == 1079296);
}

TEST_CASE("create: qemu's errors") {
    auto c = make(1u << 20, {{"subformat", "foo"}});
    CHECK(c.status == Status::Invalid);
    CHECK(c.reason == "Parameter 'subformat' does not accept value 'foo'");
    c = make(1u << 20, {{"subformat", "Fixed"}});
    CHECK(c.reason == "Parameter 'subformat' does not accept value 'Fixed'");
    for (const char* force : {"on", "off"}) {
        c = make((2040ull << 30) + 1, {{"force_size", force}});
        CHECK(c.status == Status::TooLarge);
        CHECK(c.reason == "The image size is too large for file format 'vpc'");
        c = make(~0ull, {{"force_size", force}});
        CHECK(c.status == Status::TooLarge);
    }
    c = make(3ull << 40, {{"subformat", "fixed"}});
    CHECK(c.reason == "The image size is too large for file format 'vpc'");
}

TEST_CASE("create: the largest disk is written with bounded memory") {
    hosted::CreateParams p;
    p.memory_budget = 80u << 10; // one 64 KiB BAT chunk and change
    auto c = make(2040ull << 30, {}, p);
    REQUIRE(c.status == Status::Ok);
    const std::uint64_t entries = (2040ull << 30) / (2u << 20);
    CHECK(c.bytes.size() == 1536 + entries * 4 + 512);
    auto r = info_of(c.bytes);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (2040ull << 30));

    p.memory_budget = 1024; // too small for the BAT chunk: a clean failure
    c = make(1u << 20, {}, p);
    CHECK(c.status == Status::NoMemory);
}

TEST_CASE("create: differencing disk records its parent") {
    auto parent = make(64u << 20);
    REQUIRE(parent.status == Status::Ok);
    hosted::MemoryDevice parent_dev(parent.bytes);
    hosted::CreateParams p;
    p.backing_file = "base.vhd";
    p.backing_fmt = "vpc";
    p.backing = &parent_dev;
    p.backing_size = 67125248;
    p.random[0] = 0xAA; // the child's own id differs from the parent's
    auto c = make(67125248, {}, p);
    REQUIRE(c.status == Status::Ok);
    const std::size_t bat_end = 1536 + 512;
    REQUIRE(c.bytes.size() == bat_end + 512 + 512);
    CHECK(be(c.bytes, 60, 4) == 4);
    CHECK(c.bytes[68] == 0xAA);
    Bytes h(c.bytes.begin() + 512, c.bytes.begin() + 1536);
    CHECK(be(h, 36, 4) == header_checksum(h));
    CHECK(Bytes(h.begin() + 40, h.begin() + 56) == Bytes(parent.bytes.begin() + 68, parent.bytes.begin() + 84));
    CHECK(be(h, 56, 4) == 1700000000 - 946684800);
    CHECK(Bytes(h.begin() + 64, h.begin() + 80) == vpc_test::utf16("base.vhd", true));
    CHECK(h[80] == 0);
    CHECK(str(h, 576, 4) == "W2ru");
    CHECK(be(h, 580, 4) == 512);
    CHECK(be(h, 584, 4) == 16);
    CHECK(be(h, 592, 8) == bat_end);
    for (std::size_t i = 600; i < 1024; ++i)
        REQUIRE(h[i] == 0);
    CHECK(Bytes(c.bytes.begin() + bat_end, c.bytes.begin() + bat_end + 16) == vpc_test::utf16("base.vhd", false));
    CHECK(Bytes(c.bytes.begin(), c.bytes.begin() + 512) == Bytes(c.bytes.end() - 512, c.bytes.end()));

    auto r = info_of(c.bytes);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == 67125248);
    REQUIRE(r.info.files.size() == 1);
    CHECK(r.info.files[0].role == guest::FileRole::Backing);
    CHECK(r.info.files[0].name == "base.vhd");
}

TEST_CASE("create: differencing disk with an absolute or non-ASCII parent path") {
    auto parent = make(4u << 20, {{"subformat", "fixed"}}); // a fixed parent: footer at the end
    REQUIRE(parent.status == Status::Ok);
    hosted::MemoryDevice parent_dev(parent.bytes);
    hosted::CreateParams p;
    p.backing = &parent_dev;
    p.backing_file = "/srv/images/b\xc3\xa4se \xf0\x9f\x92\xbe.vhd";
    auto c = make(4u << 20, {}, p);
    REQUIRE(c.status == Status::Ok);
    Bytes h(c.bytes.begin() + 512, c.bytes.begin() + 1536);
    CHECK(str(h, 576, 4) == "W2ku");
    CHECK(be(h, 584, 4) == 2 * 23); // 22 code points, one outside the BMP
    CHECK(Bytes(h.begin() + 40, h.begin() + 56) ==
          Bytes(parent.bytes.end() - 512 + 68, parent.bytes.end() - 512 + 84));
    CHECK(h[64] == 0);
    CHECK(h[65] == 'b');
    CHECK(h[66] == 0);
    CHECK(h[67] == 0xE4); // U+00E4 in UTF-16BE
    auto r = info_of(c.bytes);
    REQUIRE(r.status == Status::Ok);
    REQUIRE(r.info.files.size() == 1);
    CHECK(r.info.files[0].name == p.backing_file);
}

TEST_CASE("create: a long parent name fills the name field; the locator keeps the whole path") {
    hosted::CreateParams p;
    p.backing_file = "dir/" + std::string(300, 'n') + ".vhd";
    auto c = make(1u << 20, {}, p);
    REQUIRE(c.status == Status::Ok);
    Bytes h(c.bytes.begin() + 512, c.bytes.begin() + 1536);
    for (std::size_t i = 64; i < 64 + 512; i += 2) {
        REQUIRE(h[i] == 0);
        REQUIRE(h[i + 1] == 'n');
    }
    CHECK(be(h, 584, 4) == 2 * p.backing_file.size());
    CHECK(be(h, 580, 4) == 1024);
    CHECK(c.bytes.size() == 1536 + 512 + 1024 + 512);
    CHECK(info_of(c.bytes).info.files.at(0).name == p.backing_file);
}

TEST_CASE("create: differencing disk refusals") {
    Bytes junk(4096, 0x5A);
    hosted::MemoryDevice junk_dev(junk);
    hosted::CreateParams p;
    p.backing_file = "base.img";
    p.backing = &junk_dev;
    auto c = make(1u << 20, {}, p);
    CHECK(c.status == Status::Invalid);
    CHECK(c.reason == "The backing file is not a VHD image: a differencing VHD needs a VHD parent");

    p.backing_fmt = "qcow2";
    c = make(1u << 20, {}, p);
    CHECK(c.reason == "A differencing VHD needs a backing file in format 'vpc'");

    p.backing_fmt.clear();
    p.backing = nullptr; // -u: nothing to check, the parent id stays zero
    c = make(1u << 20, {}, p);
    REQUIRE(c.status == Status::Ok);
    for (std::size_t i = 512 + 40; i < 512 + 60; ++i)
        REQUIRE(c.bytes[i] == 0);
    CHECK(info_of(c.bytes).info.files.at(0).name == "base.img");

    c = make(1u << 20, {{"subformat", "fixed"}}, p);
    CHECK(c.status == Status::Invalid);
    CHECK(c.reason == "Backing file not supported for subformat 'fixed': a differencing VHD is dynamic");

    p.backing_file = "bad\xff.vhd";
    c = make(1u << 20, {}, p);
    CHECK(c.reason == "The backing file name is not valid UTF-8");

    p.backing_file = std::string(5000, 'a');
    c = make(1u << 20, {}, p);
    CHECK(c.reason == "The backing file name is too long for a VHD parent locator");
}
