// Tests of VHD probe and info on whole hand-built images, including hostile ones.
#include "vpc_test_images.h"

#include "hosted_support.h"
#include "vpc_format.h"

#include <doctest/doctest.h>

using namespace instar;
using instar::guest::Status;
using vpc_test::Bytes;

namespace {

hosted::HostedInfo run(const Bytes& b, std::size_t budget = 1 << 20) {
    hosted::MemoryDevice dev(b);
    return hosted::run_info(&vpc::info, dev, {}, budget);
}

bool probes(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    bool m = true;
    REQUIRE(vpc::probe(dev, &m) == Status::Ok);
    return m;
}

} // namespace

TEST_CASE("info: dynamic disk, current size creator") {
    auto r = run(vpc_test::dynamic_image(100 << 20));
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.format == "vpc");
    CHECK(r.info.virtual_size == (100u << 20));
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(2u << 20));
    CHECK(r.info.dirty == std::optional<bool>(false));
    CHECK(r.info.files.empty());
    CHECK(!r.info.specific_type);
}

TEST_CASE("info: CHS geometry for qemu/vpc creators, current size when maxed out") {
    auto img = vpc_test::dynamic_image(100 << 20, 3, "qemu");
    Bytes f = vpc_test::footer(3, "qemu", 100 << 20, 203, 16, 63, 512);
    std::memcpy(img.data(), f.data(), 512);
    auto r = run(img);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == 203ull * 16 * 63 * 512);
    f = vpc_test::footer(3, "vpc ", 100 << 20, 65535, 16, 255, 512);
    std::memcpy(img.data(), f.data(), 512);
    r = run(img);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (100u << 20));
}

TEST_CASE("info: fixed disk: footer at the end only, no cluster size") {
    Bytes img(1 << 20, 0);
    Bytes f = vpc_test::footer(2, "qem2", 1 << 20, 0, 0, 0, ~std::uint64_t{0});
    img.insert(img.end(), f.begin(), f.end());
    CHECK(probes(img));
    auto r = run(img);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (1u << 20));
    CHECK(!r.info.cluster_size);
    // A footer at the end that is not a fixed disk's is not a VHD (qemu: "invalid VPC image").
    f = vpc_test::footer(3, "qem2", 1 << 20, 0, 0, 0, ~std::uint64_t{0});
    std::memcpy(img.data() + img.size() - 512, f.data(), 512);
    CHECK(!probes(img));
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("info: differencing disk reports its parent (W2ru, then W2ku, then the name)") {
    auto img = vpc_test::dynamic_image(4 << 20, 4);
    const std::size_t hdr = 512;
    auto name = vpc_test::utf16("base-name.vhd", true);
    std::memcpy(img.data() + hdr + 64, name.data(), name.size());
    CHECK(run(img).info.files.at(0).name == "base-name.vhd");
    auto abs = vpc_test::utf16("C:\\images\\base.vhd", false);
    auto rel = vpc_test::utf16(".\\base.vhd", false);
    const std::size_t abs_at = img.size(), rel_at = abs_at + 512;
    img.resize(img.size() + 1024, 0);
    std::memcpy(img.data() + abs_at, abs.data(), abs.size());
    std::memcpy(img.data() + rel_at, rel.data(), rel.size());
    std::memcpy(img.data() + hdr + 576, "W2ku", 4);
    vpc_test::be(img, hdr + 576 + 8, abs.size(), 4);
    vpc_test::be(img, hdr + 576 + 16, abs_at, 8);
    auto r = run(img);
    REQUIRE(r.status == Status::Ok);
    REQUIRE(r.info.files.size() == 1);
    CHECK(r.info.files[0].role == guest::FileRole::Backing);
    CHECK(r.info.files[0].name == "C:\\images\\base.vhd");
    std::memcpy(img.data() + hdr + 600, "W2ru", 4);
    vpc_test::be(img, hdr + 600 + 8, rel.size(), 4);
    vpc_test::be(img, hdr + 600 + 16, rel_at, 8);
    r = run(img);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.files.at(0).name == ".\\base.vhd");
    // A locator past the end of the file is Corrupt; a huge one is skipped.
    vpc_test::be(img, hdr + 600 + 16, img.size(), 8);
    CHECK(run(img).status == Status::Corrupt);
    vpc_test::be(img, hdr + 600 + 8, 0xFFFFFFFF, 4);
    CHECK(run(img).info.files.at(0).name == "C:\\images\\base.vhd");
}

TEST_CASE("info: a locator a block was written over is skipped (qemu writes the disk as a dynamic one)") {
    auto img = vpc_test::dynamic_image(4 << 20, 4, "qem2", 4096);
    const std::size_t hdr = 512;
    auto name = vpc_test::utf16("base-name.vhd", true);
    std::memcpy(img.data() + hdr + 64, name.data(), name.size());
    auto rel = vpc_test::utf16(".\\base.vhd", false);
    const std::size_t rel_at = img.size();
    img.resize(img.size() + 512, 0);
    std::memcpy(img.data() + rel_at, rel.data(), rel.size());
    std::memcpy(img.data() + hdr + 576, "W2ru", 4);
    vpc_test::be(img, hdr + 576 + 8, rel.size(), 4);
    vpc_test::be(img, hdr + 576 + 16, rel_at, 8);
    CHECK(run(img).info.files.at(0).name == ".\\base.vhd");
    // Block 3 at the locator's sector: its bitmap (512 bytes of 0xFF) and data now hold the bytes.
    img.resize(rel_at + 512 + 4096, 0xFF);
    vpc_test::be(img, 1536 + 3 * 4, rel_at / 512, 4);
    auto r = run(img);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.files.at(0).name == "base-name.vhd");
    // A block elsewhere leaves the locator alone.
    vpc_test::be(img, 1536 + 3 * 4, 0xFFFFFFFF, 4);
    vpc_test::be(img, 1536 + 5 * 4, rel_at / 512 + 1, 4);
    img.resize(rel_at + 512 + 512 + 4096, 0xFF);
    CHECK(run(img).info.files.at(0).name == ".\\base.vhd");
}

TEST_CASE("hostile: truncation at every structure boundary is a clean error") {
    auto img = vpc_test::dynamic_image(8 << 20);
    for (std::size_t n : {0ul, 1ul, 511ul, 512ul, 1000ul, 1535ul, 1536ul, 1540ul}) {
        Bytes t(img.begin(), img.begin() + static_cast<long>(n));
        auto r = run(t);
        CHECK(r.status != Status::Ok);
        probes(t);
    }
    // Without its last byte the footer at the end is gone, but qemu reads only the copy at 0.
    Bytes t(img.begin(), img.end() - 1);
    CHECK(run(t).status == Status::Ok);
}

TEST_CASE("hostile: huge and inconsistent tables") {
    const std::size_t hdr = 512;
    auto img = vpc_test::dynamic_image(8 << 20);
    auto set_entries = [&](std::uint32_t n) { vpc_test::be(img, hdr + 28, n, 4); };
    set_entries(0x7fffffff);
    CHECK(run(img).status == Status::Corrupt); // over qemu's INT_MAX / 4
    set_entries(1u << 28);
    CHECK(run(img).status == Status::TooLarge);
    set_entries((1u << 24) - 1);
    CHECK(run(img).status == Status::Corrupt); // BAT past the end of the file
    set_entries(1);
    CHECK(run(img).status == Status::Corrupt); // page table too small for the disk
    set_entries(4);
    vpc_test::be(img, 1536, 0x7fffffff, 4); // a block far past the end of the file
    CHECK(run(img).status == Status::Corrupt);
    vpc_test::be(img, 1536, 0xffffffff, 4);
    vpc_test::be(img, hdr + 16, ~std::uint64_t{0} - 3, 8); // table offset overflow
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("hostile: 1 PiB disk in a tiny file, data offset past the end") {
    auto img = vpc_test::dynamic_image(8 << 20);
    Bytes f = vpc_test::footer(3, "qem2", 1ull << 50, 0, 0, 0, 512);
    std::memcpy(img.data(), f.data(), 512);
    CHECK(run(img).status == Status::TooLarge);
    f = vpc_test::footer(3, "qem2", 8 << 20, 0, 0, 0, ~std::uint64_t{0} - 100);
    std::memcpy(img.data(), f.data(), 512);
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("hostile: no memory is NoMemory, not a crash") {
    auto img = vpc_test::dynamic_image(8 << 20);
    CHECK(run(img, 16).status == Status::NoMemory);
}

TEST_CASE("probe: garbage and tiny files are not VHD") {
    CHECK(!probes(Bytes{}));
    CHECK(!probes(Bytes(100, 0x41)));
    CHECK(!probes(Bytes(4096, 0)));
    CHECK(probes(vpc_test::dynamic_image(1 << 20)));
}
