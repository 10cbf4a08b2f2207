// Tests of the VHD reader (vpc_read.h) on hand-built images, including hostile ones.
#include "vpc_test_images.h"

#include "hosted_read.h"
#include "hosted_support.h"
#include "vpc_read.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using vpc_test::Bytes;

namespace {

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

struct Run {
    std::uint64_t start, length;
    Allocation allocation;
    bool has_offset;
    std::uint64_t offset;
    bool operator==(const Run&) const = default;
};

struct Opened {
    Status status = Status::Invalid;
    std::string reason;
    std::uint64_t size = 0;
    std::vector<Run> runs; // status() over the whole disk, one entry per call
    Bytes bytes;           // read() of the whole disk in 3000-byte pieces (unaligned)
    std::size_t peak = 0;
};

Opened open_image(const Bytes& img, const char* snapshot = nullptr, std::size_t budget = 1 << 20) {
    Opened o;
    hosted::MemoryDevice dev(img);
    hosted::BudgetAllocator alloc(budget);
    Reasons reasons;
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), &reasons, snapshot, 100000};
    guest::ImageReader* r = nullptr;
    o.status = vpc::open(req, &r);
    o.reason = reasons.text;
    if (o.status != Status::Ok)
        return o;
    o.size = r->virtual_size();
    for (std::uint64_t off = 0; off < o.size;) {
        guest::Extent e{};
        REQUIRE(r->status(off, o.size - off, &e) == Status::Ok);
        REQUIRE(e.length > 0);
        REQUIRE(e.length <= o.size - off);
        o.runs.push_back({off, e.length, e.allocation, (e.flags & guest::EXTENT_OFFSET_VALID) != 0, e.offset});
        off += e.length;
        REQUIRE(o.runs.size() < 100000);
    }
    if (o.size <= (64u << 20)) {
        o.bytes.resize(o.size);
        for (std::uint64_t off = 0; off < o.size; off += 3000) {
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(3000, o.size - off));
            REQUIRE(r->read(off, o.bytes.data() + off, n) == Status::Ok);
        }
    }
    r->close();
    o.peak = alloc.peak();
    return o;
}

// A dynamic (type 3) or differencing (type 4) disk of 4 blocks of 4 KiB: block 1 at 2048 with
// `bitmap` as its first bitmap byte and 0x5a data, block 3 after it (bitmap all ones, 0xa5 data).
Bytes small_image(std::uint32_t type, std::uint8_t bitmap) {
    const std::uint32_t bs = 4096;
    Bytes img(2048, 0xFF);
    Bytes f = vpc_test::footer(type, "qem2", 4 * bs, 0, 0, 0, 512);
    std::memcpy(img.data(), f.data(), 512);
    Bytes h = vpc_test::dynamic_header(1536, 4, bs);
    std::memcpy(img.data() + 512, h.data(), 1024);
    vpc_test::be(img, 1536 + 4, 2048 / 512, 4);
    vpc_test::be(img, 1536 + 12, (2048 + 512 + bs) / 512, 4);
    Bytes blk1(512 + bs, 0x5a);
    std::memset(blk1.data(), 0, 512);
    blk1[0] = bitmap;
    Bytes blk3(512 + bs, 0xa5);
    std::memset(blk3.data(), 0xff, 512);
    img.insert(img.end(), blk1.begin(), blk1.end());
    img.insert(img.end(), blk3.begin(), blk3.end());
    img.insert(img.end(), f.begin(), f.end());
    return img;
}

} // namespace

TEST_CASE("read: dynamic disk: whole blocks Data with offsets, unallocated blocks Zero") {
    auto o = open_image(small_image(3, 0x00)); // the bitmap is not consulted for dynamic disks (qemu)
    REQUIRE(o.status == Status::Ok);
    CHECK(o.size == 16384);
    const std::vector<Run> want{{0, 4096, Allocation::Zero, false, 0},
                                {4096, 4096, Allocation::Data, true, 2560},
                                {8192, 4096, Allocation::Zero, false, 0},
                                {12288, 4096, Allocation::Data, true, 7168}};
    CHECK(o.runs == want);
    for (std::size_t i = 0; i < o.bytes.size(); ++i) {
        const std::uint8_t expect = i < 4096 || (i >= 8192 && i < 12288) ? 0 : (i < 8192 ? 0x5a : 0xa5);
        REQUIRE(o.bytes[i] == expect);
    }
    CHECK(o.peak < 64 * 1024);
}

TEST_CASE("read: differencing disk: absent blocks and clear bitmap bits are Unallocated") {
    auto o = open_image(small_image(4, 0xc3)); // sectors 0, 1, 6, 7 of block 1 present
    REQUIRE(o.status == Status::Ok);
    const std::vector<Run> want{{0, 4096, Allocation::Unallocated, false, 0},
                                {4096, 1024, Allocation::Data, true, 2560},
                                {5120, 2048, Allocation::Unallocated, false, 0},
                                {7168, 1024, Allocation::Data, true, 5632},
                                {8192, 4096, Allocation::Unallocated, false, 0},
                                {12288, 4096, Allocation::Data, true, 7168}};
    CHECK(o.runs == want);
    for (std::size_t i = 4096; i < 8192; ++i) {
        const bool present = i < 5120 || i >= 7168;
        REQUIRE(o.bytes[i] == (present ? 0x5a : 0));
    }
    for (std::size_t i = 0; i < 4096; ++i)
        REQUIRE(o.bytes[i] == 0);
}

TEST_CASE("read: fixed disk: the file from offset 0, the CHS size, zeros past the end") {
    // 4 x 16 x 17 sectors (544 KiB) of CHS, 256 KiB of file data before the footer.
    Bytes img(256 * 1024);
    for (std::size_t i = 0; i < img.size(); ++i)
        img[i] = static_cast<std::uint8_t>(i * 7 + 1);
    Bytes f = vpc_test::footer(2, "qemu", 256 * 1024, 4, 16, 17, ~std::uint64_t{0});
    img.insert(img.end(), f.begin(), f.end());
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.size == 4u * 16 * 17 * 512);
    const std::vector<Run> want{{0, img.size(), Allocation::Data, true, 0},
                                {img.size(), o.size - img.size(), Allocation::Zero, true, img.size()}};
    CHECK(o.runs == want);
    CHECK(std::memcmp(o.bytes.data(), img.data(), img.size()) == 0); // the footer too, as qemu reads it
    for (std::size_t i = img.size(); i < o.size; ++i)
        REQUIRE(o.bytes[i] == 0);
}

TEST_CASE("read: an empty 2040 GiB dynamic disk is one Zero run in bounded memory") {
    auto o = open_image(vpc_test::dynamic_image(2040ull << 30));
    REQUIRE(o.status == Status::Ok);
    CHECK(o.size == (2040ull << 30));
    REQUIRE(o.runs.size() == 1);
    CHECK(o.runs[0].allocation == Allocation::Zero);
    CHECK(o.peak < 64 * 1024);
}

TEST_CASE("read: refusals carry qemu's words") {
    auto img = small_image(3, 0);
    SUBCASE("bad checksum") {
        img[100] ^= 1;
        auto o = open_image(img);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reason == "Incorrect header checksum");
    }
    SUBCASE("no footer") {
        Bytes junk(4096, 0x11);
        auto o = open_image(junk);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reason == "invalid VPC image");
    }
    SUBCASE("a BAT entry past the end of the file") {
        vpc_test::be(img, 1536 + 8, 0x100000, 4);
        auto o = open_image(img);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reason == "block-vpc: free_data_block_offset points after the end of file. The image has been truncated.");
    }
    SUBCASE("bad dynamic header magic") {
        img[512] = 'X';
        auto o = open_image(img);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reason == "Invalid header magic");
    }
    SUBCASE("bad block size, table too small or too large") {
        vpc_test::be(img, 512 + 32, 1000, 4);
        auto o = open_image(img);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reason == "Invalid block size 1000");
        img = small_image(3, 0);
        vpc_test::be(img, 512 + 28, 1, 4);
        CHECK(open_image(img).reason == "Page table too small");
        vpc_test::be(img, 512 + 28, 0x20000000, 4);
        CHECK(open_image(img).reason == "Max Table Entries too large (536870912)");
    }
    SUBCASE("snapshots") {
        auto o = open_image(img, "snap");
        CHECK(o.status == Status::Unsupported);
    }
    SUBCASE("allocator exhausted") {
        for (std::size_t budget : {0u, 100u, 5000u, 20000u, 33000u}) {
            auto o = open_image(img, nullptr, budget);
            CHECK(o.status == Status::NoMemory);
        }
    }
}

TEST_CASE("read: huge BAT entries do not overflow; a BAT entry pointing into the header is read as is") {
    // Entry 0xFFFFFFFE: 512 * e + bitmap + block is far past the file: refused at open.
    auto img = small_image(3, 0);
    vpc_test::be(img, 1536, 0xFFFFFFFE, 4);
    CHECK(open_image(img).status == Status::Corrupt);
    // Entry 0: the block overlaps the footer copy and header; qemu reads it, so do we.
    img = small_image(3, 0);
    vpc_test::be(img, 1536, 0, 4);
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.runs[0] == Run{0, 4096, Allocation::Data, true, 512});
    CHECK(std::memcmp(o.bytes.data(), img.data() + 512, 4096) == 0);
}

TEST_CASE("read: many BAT pages: status and read stay correct across evictions") {
    // 64 Mi blocks of 4 KiB would be large; use 20000 entries of 512-byte blocks (qemu's bitmap is 0).
    const std::uint32_t entries = 20000, bs = 512;
    const std::size_t bat_bytes = (entries * 4 + 511) & ~std::size_t{511};
    Bytes img(1536 + bat_bytes, 0xFF);
    Bytes f = vpc_test::footer(3, "qem2", std::uint64_t{entries} * bs, 0, 0, 0, 512);
    std::memcpy(img.data(), f.data(), 512);
    Bytes h = vpc_test::dynamic_header(1536, entries, bs);
    std::memcpy(img.data() + 512, h.data(), 1024);
    // Every 997th block allocated, data = its block number's low byte.
    std::vector<std::uint32_t> allocated;
    for (std::uint32_t b = 0; b < entries; b += 997) {
        vpc_test::be(img, 1536 + 4 * b, img.size() / 512, 4);
        img.insert(img.end(), bs, static_cast<std::uint8_t>(b | 1));
        allocated.push_back(b);
    }
    img.insert(img.end(), f.begin(), f.end());
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    std::size_t data_runs = 0;
    for (const auto& r : o.runs)
        if (r.allocation == Allocation::Data) {
            ++data_runs;
            CHECK(r.length == bs);
            CHECK(o.bytes[r.start] == static_cast<std::uint8_t>((r.start / bs) | 1));
        }
    CHECK(data_runs == allocated.size());
    CHECK(o.runs.size() <= 2 * allocated.size() + 1);
    CHECK(o.peak < 64 * 1024);
}
