// Tests of VHDX probe and info on whole hand-built images, including hostile ones.
#include "vhdx_test_images.h"

#include "hosted_support.h"
#include "vhdx_format.h"
#include "vhdx_log.h"

#include <doctest/doctest.h>

using namespace instar;
using instar::guest::Status;
using vhdx_test::Bytes;

namespace {

hosted::HostedInfo run(const Bytes& b, std::size_t budget = 1 << 20) {
    hosted::MemoryDevice dev(b);
    return hosted::run_info(&vhdx::info, dev, {}, budget);
}

// Writes one valid log entry (header sector only) at log sector `sector`.
void add_log_entry(Bytes& img, std::size_t sector) {
    for (std::size_t h : {64 * 1024, 128 * 1024}) {
        img[h + 48] = 0xAB; // log GUID
        vhdx_test::seal(img, h, 4096);
    }
    const std::size_t e = vhdx_test::LOG_OFFSET + sector * 4096;
    std::memcpy(img.data() + e, "loge", 4);
    vhdx_test::le(img, e + 8, 4096, 4);
    vhdx_test::le(img, e + 16, 9, 8);
    img[e + 32] = 0xAB;
    vhdx_test::seal(img, e, 4096);
}

} // namespace

TEST_CASE("info: a dynamic disk") {
    auto r = run(vhdx_test::image());
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.format == "vhdx");
    CHECK(r.info.virtual_size == 64u << 20);
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(8u << 20));
    CHECK(r.info.dirty == std::optional<bool>(false));
    CHECK(r.info.files.empty());
    CHECK(!r.info.specific_type);
}

TEST_CASE("info: a present block inside the file is fine; past the end is Corrupt") {
    auto img = vhdx_test::image();
    vhdx_test::le(img, vhdx_test::BAT_OFFSET, (4ull << 20) | 6, 8);
    img.resize(12 << 20);
    CHECK(run(img).status == Status::Ok);
    img.resize(10 << 20);
    CHECK(run(img).status == Status::Corrupt);
    vhdx_test::le(img, vhdx_test::BAT_OFFSET, vhdx_test::LOG_OFFSET | 6, 8); // block over the log
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("info: differencing disk reports its parent") {
    vhdx_test::Options o;
    o.data_bits = 2;
    o.parent_relative = "parent.vhdx";
    auto r = run(vhdx_test::image(o));
    REQUIRE(r.status == Status::Ok);
    REQUIRE(r.info.files.size() == 1);
    CHECK(r.info.files[0].role == guest::FileRole::Backing);
    CHECK(r.info.files[0].name == "parent.vhdx");
}

TEST_CASE("info: a log that needs replay is refused; a stale entry is ignored") {
    auto img = vhdx_test::image();
    add_log_entry(img, 17);
    const auto refused = run(img);
    CHECK(refused.status == Status::Unsupported);
    CHECK(refused.info.reason.rfind("VHDX image file '{image}' opened read-only, but contains a log", 0) == 0);
    img[vhdx_test::LOG_OFFSET + 17 * 4096 + 200] ^= 1; // checksum no longer matches
    CHECK(run(img).status == Status::Ok);
    for (std::size_t h : {64 * 1024, 128 * 1024}) {
        vhdx_test::le(img, h + 72, 3 * 1024 * 1024 / 2, 8); // log offset not 1 MiB aligned
        vhdx_test::seal(img, h, 4096);
    }
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("info: an entry with a valid header and a bad descriptor fails the open, as qemu's search does") {
    auto img = vhdx_test::image();
    add_log_entry(img, 3);
    const std::size_t e = vhdx_test::LOG_OFFSET + 3 * 4096;
    vhdx_test::le(img, e + 24, 1, 4); // one descriptor: a zero run of one sector at 8 MiB
    std::memcpy(img.data() + e + 64, "zero", 4);
    vhdx_test::le(img, e + 72, 4096, 8);
    vhdx_test::le(img, e + 80, 8 << 20, 8);
    vhdx_test::le(img, e + 88, 9, 8);
    vhdx_test::seal(img, e, 4096);
    CHECK(run(img).status == Status::Unsupported); // a valid entry: the log needs replay
    vhdx_test::le(img, e + 80, (8 << 20) + 512, 8); // not sector-aligned: qemu's -EINVAL
    vhdx_test::seal(img, e, 4096);
    const auto r = run(img);
    CHECK(r.status == Status::Corrupt);
    CHECK(r.info.reason == "Could not open '{image}': Invalid argument");
}

TEST_CASE("hostile: a log full of entries spanning the whole log stays within the scan budget") {
    auto img = vhdx_test::image();
    for (std::size_t h : {64 * 1024, 128 * 1024}) {
        img[h + 48] = 0xAB;
        vhdx_test::le(img, h + 68, 1 << 20, 4);
        vhdx_test::seal(img, h, 4096);
    }
    for (std::size_t s = 0; s < 256; ++s) {
        const std::size_t e = vhdx_test::LOG_OFFSET + s * 4096;
        std::memcpy(img.data() + e, "loge", 4);
        vhdx_test::le(img, e + 8, 1 << 20, 4);
        vhdx_test::le(img, e + 16, 9, 8);
        img[e + 32] = 0xAB;
    }
    const auto r = run(img);
    CHECK((r.status == Status::Ok || r.status == Status::TooLarge));
}

TEST_CASE("hostile: truncations, huge sizes, BAT too small") {
    const auto img = vhdx_test::image();
    for (std::size_t n : {0ul, 7ul, 8ul, 65536ul, 69632ul, 131072ul, 196608ul, 200000ul, 1ul << 20, 2ul << 20,
                          (2ul << 20) + 65536, 3ul << 20, (3ul << 20) + 4}) {
        Bytes t(img.begin(), img.begin() + static_cast<long>(n));
        CHECK(run(t).status != Status::Ok);
    }
    vhdx_test::Options o;
    o.size = 1ull << 50; // 1 PiB
    CHECK(run(vhdx_test::image(o)).status == Status::TooLarge);
    o.size = 64ull << 40; // 64 TiB needs an 8M-entry BAT; the region holds 128K entries
    o.block_size = 1 << 20;
    CHECK(run(vhdx_test::image(o)).status == Status::Corrupt);
    o.size = 0; // qemu's uint32 arithmetic makes the entry count wrap
    CHECK(run(vhdx_test::image(o)).status == Status::Corrupt);
}

TEST_CASE("hostile: no memory is NoMemory") { CHECK(run(vhdx_test::image(), 100).status == Status::NoMemory); }

TEST_CASE("probe") {
    hosted::MemoryDevice a(vhdx_test::image());
    bool m = false;
    REQUIRE(vhdx::probe(a, &m) == Status::Ok);
    CHECK(m);
    hosted::MemoryDevice b(Bytes(7, 'v'));
    REQUIRE(vhdx::probe(b, &m) == Status::Ok);
    CHECK(!m);
}
