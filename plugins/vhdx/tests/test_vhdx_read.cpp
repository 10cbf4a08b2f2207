// Tests of the VHDX reader (vhdx_read.h) on hand-built images, including hostile ones.
#include "vhdx_test_images.h"

#include "hosted_read.h"
#include "hosted_support.h"
#include "vhdx_read.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using vhdx_test::Bytes;
using vhdx_test::MiB;

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
    Status walk = Status::Ok; // the first failing status() or read()
    std::string reason;
    std::uint64_t size = 0;
    std::vector<Run> runs; // status() over the whole disk, one entry per call
    Bytes bytes;           // read() of the whole disk in 300000-byte pieces (unaligned)
    std::size_t peak = 0;
};

Opened open_image(const Bytes& img, const char* snapshot = nullptr, std::size_t budget = 1 << 20) {
    Opened o;
    hosted::MemoryDevice dev(img);
    hosted::BudgetAllocator alloc(budget);
    Reasons reasons;
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), &reasons, snapshot, 100000};
    guest::ImageReader* r = nullptr;
    o.status = vhdx::open(req, &r);
    o.reason = reasons.text;
    if (o.status != Status::Ok)
        return o;
    o.size = r->virtual_size();
    for (std::uint64_t off = 0; off < o.size;) {
        guest::Extent e{};
        o.walk = r->status(off, o.size - off, &e);
        if (o.walk != Status::Ok)
            break;
        REQUIRE(e.length > 0);
        REQUIRE(e.length <= o.size - off);
        o.runs.push_back({off, e.length, e.allocation, (e.flags & guest::EXTENT_OFFSET_VALID) != 0, e.offset});
        off += e.length;
        REQUIRE(o.runs.size() < 100000);
    }
    if (o.walk == Status::Ok && o.size <= (64u << 20)) {
        o.bytes.resize(o.size);
        for (std::uint64_t off = 0; off < o.size && o.walk == Status::Ok; off += 300000) {
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(300000, o.size - off));
            o.walk = r->read(off, o.bytes.data() + off, n);
        }
    }
    r->close();
    o.peak = alloc.peak();
    return o;
}

void set_entry(Bytes& img, std::uint64_t index, std::uint64_t value) {
    vhdx_test::le(img, vhdx_test::BAT_OFFSET + 8 * index, value, 8);
}

// Appends `len` bytes of `fill` at the next 1 MiB boundary; returns their offset.
std::uint64_t append(Bytes& img, std::size_t len, std::uint8_t fill) {
    const std::size_t at = (img.size() + MiB - 1) / MiB * MiB;
    img.resize(at, 0);
    img.insert(img.end(), len, fill);
    return at;
}

// 8 MiB, 1 MiB blocks (chunk ratio 4096: payload entry b is BAT entry b, chunk 0's bitmap is 4096).
vhdx_test::Options small(bool differencing) {
    vhdx_test::Options o;
    o.size = 8 * MiB;
    o.block_size = 1 * MiB;
    if (differencing) {
        o.data_bits = 2;
        o.parent_relative = "base.vhdx";
    }
    return o;
}

} // namespace

TEST_CASE("read: dynamic disk: Data throughout (qemu has no vhdx block status); absent states read zeros") {
    auto img = vhdx_test::image(small(false));
    const std::uint64_t b0 = append(img, MiB, 0x11);
    set_entry(img, 0, b0 | 6);
    set_entry(img, 1, 2); // ZERO
    set_entry(img, 2, 1); // UNDEFINED
    set_entry(img, 3, 3); // UNMAPPED
    set_entry(img, 4, 5); // UNMAPPED (qemu's v0.95 value)
    const std::uint64_t b6 = append(img, MiB, 0x66);
    set_entry(img, 6, b6 | 6);
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.walk == Status::Ok);
    CHECK(o.size == 8 * MiB);
    CHECK(o.runs == std::vector<Run>{{0, 8 * MiB, Allocation::Data, false, 0}});
    Bytes want(8 * MiB, 0);
    std::fill(want.begin(), want.begin() + MiB, 0x11);
    std::fill(want.begin() + 6 * MiB, want.begin() + 7 * MiB, 0x66);
    CHECK(o.bytes == want);
    CHECK(o.peak <= 96 * 1024); // open's 64 KiB table buffer, then 32 KiB of BAT pages
}

TEST_CASE("read: dynamic disk: PARTIALLY_PRESENT and the reserved state 4 fail reads (qemu: EIO)") {
    for (std::uint64_t state : {4u, 7u}) {
        auto img = vhdx_test::image(small(false));
        const std::uint64_t b = append(img, MiB, 0x22);
        set_entry(img, 3, b | state);
        auto o = open_image(img);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.walk == Status::Corrupt);
    }
}

TEST_CASE("read: Corrupt is terminal: after a failed read every call fails") {
    auto img = vhdx_test::image(small(false));
    set_entry(img, 3, 4); // reserved state
    hosted::MemoryDevice dev(img);
    hosted::BudgetAllocator alloc(1 << 20);
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), nullptr, nullptr, 100000};
    guest::ImageReader* r = nullptr;
    REQUIRE(vhdx::open(req, &r) == Status::Ok);
    Bytes buf(4096);
    CHECK(r->read(0, buf.data(), buf.size()) == Status::Ok);
    CHECK(r->read(3 * MiB, buf.data(), buf.size()) == Status::Corrupt);
    CHECK(r->read(0, buf.data(), buf.size()) == Status::Corrupt);
    guest::Extent e{};
    CHECK(r->status(0, MiB, &e) == Status::Corrupt);
    r->close();
}

TEST_CASE("read: a partial last block and an odd virtual size") {
    auto opts = small(false);
    opts.size = 3 * MiB + 1000; // rounded down to 512
    auto img = vhdx_test::image(opts);
    const std::uint64_t b = append(img, 1024, 0x33); // only the disk's part of the last block is in the file
    set_entry(img, 3, b | 6);
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.size == 3 * MiB + 512);
    CHECK(o.walk == Status::Ok);
    CHECK(o.bytes[3 * MiB] == 0x33);
    CHECK(o.bytes[3 * MiB + 511] == 0x33);
}

TEST_CASE("read: differencing disk: states and sector bitmaps") {
    auto img = vhdx_test::image(small(true));
    const std::uint64_t b2 = append(img, MiB, 0xab);
    const std::uint64_t b5 = append(img, MiB, 0xcd);
    const std::uint64_t bm = append(img, MiB, 0);
    // Block 5's sectors are bits 5 * 2048 .. 6 * 2048 - 1 of chunk 0's bitmap (bit 0 of byte 0 first):
    // sectors 0..255 and 1000 present.
    std::memset(img.data() + bm + 5 * 2048 / 8, 0xff, 32);
    img[bm + (5 * 2048 + 1000) / 8] |= 1u << (1000 % 8);
    set_entry(img, 2, b2 | 6);
    set_entry(img, 5, b5 | 7);
    set_entry(img, 4096, bm | 6);
    set_entry(img, 6, 1); // UNDEFINED: the parent's
    set_entry(img, 7, 2); // ZERO
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.walk == Status::Ok);
    const std::uint64_t K = 1024;
    const std::vector<Run> want{{0, 2 * MiB, Allocation::Unallocated, false, 0},
                                {2 * MiB, MiB, Allocation::Data, true, b2},
                                {3 * MiB, 2 * MiB, Allocation::Unallocated, false, 0},
                                {5 * MiB, 128 * K, Allocation::Data, true, b5},
                                {5 * MiB + 128 * K, 1000 * 512 - 128 * K, Allocation::Unallocated, false, 0},
                                {5 * MiB + 1000 * 512, 512, Allocation::Data, true, b5 + 1000 * 512},
                                {5 * MiB + 1001 * 512, MiB - 1001 * 512, Allocation::Unallocated, false, 0},
                                {6 * MiB, MiB, Allocation::Unallocated, false, 0},
                                {7 * MiB, MiB, Allocation::Zero, false, 0}};
    CHECK(o.runs == want);
    Bytes expect(8 * MiB, 0);
    std::fill(expect.begin() + 2 * MiB, expect.begin() + 3 * MiB, 0xab);
    std::fill(expect.begin() + 5 * MiB, expect.begin() + 5 * MiB + 128 * K, 0xcd);
    std::fill(expect.begin() + 5 * MiB + 1000 * 512, expect.begin() + 5 * MiB + 1001 * 512, 0xcd);
    CHECK(o.bytes == expect);
}

TEST_CASE("read: differencing hostile cases: no bitmap, bitmap or payload past the end") {
    SUBCASE("PARTIALLY_PRESENT without a present sector bitmap block") {
        auto img = vhdx_test::image(small(true));
        const std::uint64_t b = append(img, MiB, 0xcd);
        set_entry(img, 1, b | 7);
        auto o = open_image(img);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.walk == Status::Corrupt);
    }
    SUBCASE("sector bitmap past the end of the file: refused at open (qemu checks present entries)") {
        auto img = vhdx_test::image(small(true));
        const std::uint64_t b = append(img, MiB, 0xcd);
        set_entry(img, 1, b | 7);
        set_entry(img, 4096, (64 * MiB) | 6);
        CHECK(open_image(img).status == Status::Corrupt);
    }
    SUBCASE("partially present payload past the end of the file (not checked at open, as qemu)") {
        auto img = vhdx_test::image(small(true));
        const std::uint64_t bm = append(img, MiB, 0xff);
        set_entry(img, 4096, bm | 6);
        set_entry(img, 1, (0xFFFFFFFFFFF00000ull) | 7);
        auto o = open_image(img);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.walk == Status::Corrupt);
    }
    SUBCASE("fully present payload past the end of the file: refused at open") {
        auto img = vhdx_test::image(small(true));
        set_entry(img, 1, (64 * MiB) | 6);
        CHECK(open_image(img).status == Status::Corrupt);
    }
}

TEST_CASE("read: a log that needs replay is refused with qemu-img's message") {
    auto img = vhdx_test::image(small(false));
    for (std::size_t h : {64 * 1024, 128 * 1024}) {
        img[h + 48] = 0xAB; // log GUID
        vhdx_test::seal(img, h, 4096);
    }
    const std::size_t e = vhdx_test::LOG_OFFSET + 3 * 4096;
    std::memcpy(img.data() + e, "loge", 4);
    vhdx_test::le(img, e + 8, 4096, 4);
    vhdx_test::le(img, e + 16, 9, 8);
    img[e + 32] = 0xAB;
    vhdx_test::seal(img, e, 4096);
    auto o = open_image(img);
    CHECK(o.status == Status::Unsupported);
    CHECK(o.reason ==
          "VHDX image file '{image}' opened read-only, but contains a log that needs to be replayed\n"
          "To replay the log, run:\nqemu-img check -r all '{image}'");
}

TEST_CASE("read: a 16 TiB differencing disk with an empty BAT: few status calls, bounded memory") {
    auto opts = small(true);
    opts.size = 16ull << 40;
    opts.block_size = 256 * MiB; // chunk ratio 16: 65536 payload entries + 4096 bitmap entries
    auto img = vhdx_test::image(opts);
    auto o = open_image(img);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.walk == Status::Ok);
    REQUIRE(o.runs.size() == 1);
    CHECK(o.runs[0] == Run{0, 16ull << 40, Allocation::Unallocated, false, 0});
    CHECK(o.peak <= 96 * 1024); // open's 64 KiB table buffer, then 32 KiB of BAT pages
    opts.data_bits = 0;
    opts.parent_relative.clear();
    o = open_image(vhdx_test::image(opts));
    REQUIRE(o.status == Status::Ok);
    CHECK(o.runs.size() == 1);
}

TEST_CASE("read: snapshots and allocator exhaustion") {
    auto img = vhdx_test::image(small(false));
    CHECK(open_image(img, "s").status == Status::Unsupported);
    for (std::size_t budget : {0u, 100u, 4000u, 40000u})
        CHECK(open_image(img, nullptr, budget).status == Status::NoMemory);
}
