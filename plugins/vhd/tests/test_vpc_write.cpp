// Tests of the VHD writer: qemu's block allocation (bitmap at the old footer, footer moved, BAT
// entry), fixed disks written in place, bounds, zeros, and what it refuses.
#include "hosted_create.h"
#include "hosted_support.h"
#include "vpc_create.h"
#include "vpc_write.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Status;

namespace {

constexpr std::uint64_t MiB = 1u << 20;
constexpr std::uint64_t BLOCK = 2 * MiB;

std::uint32_t be32(const std::vector<std::uint8_t>& b, std::size_t at) {
    return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}

// A writer over a MemoryTarget, made from hosted::CreateParams as the host would.
struct Session {
    hosted::CreateParams p;
    hosted::MemoryTarget target{64 * MiB};
    hosted::BudgetAllocator alloc{8 * MiB};
    std::vector<guest::CreateOption> opts;
    guest::ImageWriter* w = nullptr;
    Status status = Status::Invalid;

    explicit Session(std::uint64_t size, std::vector<std::pair<std::string, std::string>> options = {},
                     std::string backing = {}) {
        p.size = size;
        p.options = std::move(options);
        p.backing_file = std::move(backing);
        for (const auto& [k, v] : p.options)
            opts.push_back({k.c_str(), v.c_str()});
        guest::CreateRequest req{};
        req.size = p.size;
        req.options = opts.data();
        req.option_count = static_cast<std::uint32_t>(opts.size());
        req.file_name = p.file_name.c_str();
        req.backing_file = p.backing_file.empty() ? nullptr : p.backing_file.c_str();
        req.unix_time = p.unix_time;
        req.random = p.random;
        req.qemu_version = p.qemu_version;
        req.allocator = &alloc;
        status = vpc::create_writer(req, target, &w);
    }
    ~Session() {
        if (w != nullptr)
            w->close();
    }
    std::vector<std::uint8_t> bytes() const { return target_bytes(); }
    std::vector<std::uint8_t> target_bytes() const {
        return const_cast<hosted::MemoryTarget&>(target).image_output().bytes();
    }
};

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
    return v;
}

} // namespace

TEST_CASE("vpc writer: a dynamic disk allocates blocks where the footer was, in write order") {
    Session s(10 * MiB); // 10 MiB rounds up by CHS to a little more: 6 BAT entries, one BAT sector
    REQUIRE(s.status == Status::Ok);
    CHECK(s.w->cluster_size() == BLOCK);
    CHECK(s.w->zero_init());
    const auto before = s.bytes();
    const std::uint64_t footer0 = 1536 + 512; // header at 512, BAT sector at 1536
    REQUIRE(before.size() == footer0 + 512);

    const auto a = pattern(4096, 1);
    REQUIRE(s.w->write(3 * MiB, a.data(), a.size()) == Status::Ok); // block 1 first
    const auto b = pattern(1024, 9);
    REQUIRE(s.w->write(512, b.data(), b.size()) == Status::Ok); // then block 0
    REQUIRE(s.w->write(3 * MiB + 4096, b.data(), b.size()) == Status::Ok); // block 1 again: no new block
    REQUIRE(s.w->finish() == Status::Ok);
    const auto img = s.bytes();

    const std::uint64_t block1 = footer0, block0 = footer0 + 512 + BLOCK, footer = block0 + 512 + BLOCK;
    REQUIRE(img.size() == footer + 512);
    CHECK(be32(img, 1536) == block0 / 512);
    CHECK(be32(img, 1540) == block1 / 512);
    CHECK(be32(img, 1544) == 0xFFFFFFFFu);
    for (std::uint64_t bm : {block1, block0})
        for (std::size_t i = 0; i < 512; ++i)
            REQUIRE(img[bm + i] == 0xFF);
    CHECK(std::memcmp(img.data() + block1 + 512 + MiB, a.data(), a.size()) == 0);
    CHECK(std::memcmp(img.data() + block1 + 512 + MiB + 4096, b.data(), b.size()) == 0);
    CHECK(std::memcmp(img.data() + block0 + 512 + 512, b.data(), b.size()) == 0);
    // The footer moved to the end, byte for byte the copy at 0; the header is untouched.
    CHECK(std::memcmp(img.data() + footer, img.data(), 512) == 0);
    CHECK(std::memcmp(img.data(), before.data(), 1536) == 0);
}

TEST_CASE("vpc writer: a write crossing a block boundary allocates both blocks") {
    Session s(8 * MiB);
    REQUIRE(s.status == Status::Ok);
    const auto a = pattern(8192, 3);
    REQUIRE(s.w->write(BLOCK - 4096, a.data(), a.size()) == Status::Ok);
    const auto img = s.bytes();
    const std::uint64_t first = 1536 + 512;
    CHECK(be32(img, 1536) == first / 512);
    CHECK(be32(img, 1540) == (first + 512 + BLOCK) / 512);
    CHECK(std::memcmp(img.data() + first + 512 + BLOCK - 4096, a.data(), 4096) == 0);
    CHECK(std::memcmp(img.data() + first + 512 + BLOCK + 512, a.data() + 4096, 4096) == 0);
}

TEST_CASE("vpc writer: write_zeroes writes zeros as data, allocating the block (qemu has no zero write)") {
    Session s(8 * MiB);
    REQUIRE(s.status == Status::Ok);
    REQUIRE(s.w->write_zeroes(2 * BLOCK, 100 * 1024, true) == Status::Ok);
    const auto img = s.bytes();
    CHECK(be32(img, 1536 + 8) == (1536 + 512) / 512);
    CHECK(img.size() == 1536 + 512 + 512 + BLOCK + 512);
}

TEST_CASE("vpc writer: a fixed disk is written in place") {
    Session s(4 * MiB, {{"subformat", "fixed"}});
    REQUIRE(s.status == Status::Ok);
    CHECK(s.w->cluster_size() == 0);
    CHECK(s.w->zero_init());
    const auto before = s.bytes();
    const auto a = pattern(65536, 5);
    REQUIRE(s.w->write(MiB, a.data(), a.size()) == Status::Ok);
    const auto img = s.bytes();
    REQUIRE(img.size() == before.size());
    CHECK(std::memcmp(img.data() + MiB, a.data(), a.size()) == 0);
    CHECK(std::memcmp(img.data() + img.size() - 512, before.data() + before.size() - 512, 512) == 0);
}

TEST_CASE("vpc writer: bounds, compression and differencing disks are refused") {
    Session s(4 * MiB, {{"force_size", "on"}});
    REQUIRE(s.status == Status::Ok);
    std::uint8_t buf[512] = {};
    CHECK(s.w->write(4 * MiB, buf, sizeof buf) == Status::Invalid);
    CHECK(s.w->write(UINT64_MAX - 100, buf, sizeof buf) == Status::Invalid);
    CHECK(s.w->write_zeroes(4 * MiB - 512, 1024, false) == Status::Invalid);
    CHECK(s.w->write_compressed(0, buf, sizeof buf) == Status::Unsupported);
    CHECK(s.w->write(4 * MiB - 512, buf, sizeof buf) == Status::Ok);

    Session d(4 * MiB, {}, "base.vhd");
    CHECK(d.status == Status::Unsupported);
    CHECK(d.target.reason_text() == "Backing file not supported for file format 'vpc'");

    Session bad(4 * MiB, {{"subformat", "nope"}});
    CHECK(bad.status == Status::Invalid);
    CHECK(bad.w == nullptr);
}

TEST_CASE("vpc writer: before any write the image is create's, byte for byte") {
    for (const auto& opts : std::vector<std::vector<std::pair<std::string, std::string>>>{
             {}, {{"subformat", "fixed"}}, {{"force_size", "on"}}}) {
        Session s(5 * MiB + 1000, opts);
        REQUIRE(s.status == Status::Ok);
        hosted::MemoryTarget t(64 * MiB);
        REQUIRE(hosted::run_create(vpc::create, s.p, t) == Status::Ok);
        CHECK(s.bytes() == t.image_output().bytes());
    }
}
