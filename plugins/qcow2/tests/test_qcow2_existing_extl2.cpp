// The existing-image writer on qcow2 images with extended L2 entries (qcow2_subcluster.h,
// qcow2_existing_write.cpp): qemu's copy-on-write bounds, subclusters written, completed and zeroed,
// the block layer's fallback to zero data, and hostile bitmaps refused before anything is written.
// Against qemu-img itself: tests/commit, tests/convert and tests/rebase (extended L2 cases).
#include <doctest/doctest.h>

#include "existing_writer_fixture.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_check_fixture.h"
#include "qcow2_read.h"
#include "qcow2_subcluster.h"

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using instar::guest::Status;
using qcow2::Qcow2Cow;
using qcow2::qcow2_cow_bounds;
using qcow2::test::be64;
using qcow2::test::Opened;
using qcow2::test::put64;
using qcow2::test::read_disk;

namespace {

constexpr std::uint64_t CS = 16384; // 512-byte subclusters
constexpr std::uint64_t SC = CS / 32;
constexpr std::uint64_t SIZE = 1u << 20;
constexpr std::uint64_t OFFSET_MASK = 0x00fffffffffffe00ull;
constexpr std::uint64_t ALL_ZEROES = qcow2::QCOW2_L2_BITMAP_ALL_ZEROES;

// 1 MiB, 16 KiB clusters with extended L2 entries: 0xab over [CS, CS + 4 SC) (subclusters 0-3 of
// cluster 1 allocated), 0x5a over cluster 8 stored compressed.
std::vector<std::uint8_t> ext_image() {
    const std::vector<guest::CreateOption> opts{{"cluster_size", "16384"}, {"extended_l2", "on"}};
    return qcow2::test::made_image_with(SIZE, opts, [](guest::ImageWriter& w) {
        const std::vector<std::uint8_t> ab(4 * SC, 0xab), z(CS, 0x5a);
        REQUIRE(w.write(CS, ab.data(), ab.size()) == Status::Ok);
        REQUIRE(w.write_compressed(8 * CS, z.data(), z.size()) == Status::Ok);
    });
}

// The L2 entry and bitmap of guest cluster `c` (0, 0 without a table).
struct Entry {
    std::uint64_t at, e, bm;
};
Entry entry(const std::vector<std::uint8_t>& img, std::uint64_t c) {
    const std::uint64_t l1 = be64(img, 40), per_table = CS / 16;
    const std::uint64_t l2 = be64(img, l1 + 8 * (c / per_table)) & OFFSET_MASK;
    if (l2 == 0)
        return {0, 0, 0};
    const std::uint64_t at = l2 + 16 * (c % per_table);
    return {at, be64(img, at), be64(img, at + 8)};
}


// qemu-img check's verdict: no corruption, no leak.
void check_clean(const std::vector<std::uint8_t>& img) {
    std::string err;
    const guest::CheckResult r = qcow2::test::check_image(img, &err);
    CHECK(err == "");
    CHECK(r.corruptions == 0);
    CHECK(r.leaks == 0);
}

std::uint64_t bits(std::uint64_t first, std::uint64_t last) { return qcow2::qcow2_sc_range(first, last); }

} // namespace

TEST_CASE("qcow2 subclusters: calculate_l2_meta's copy-on-write bounds") {
    Qcow2Cow c{};
    const std::uint32_t scb = 9;
    // In place, the partial subclusters unallocated: completed to their boundaries.
    REQUIRE(qcow2_cow_bounds(false, true, bits(0, 3), 3000, 100, true, scb, CS, &c));
    CHECK(c.from == 5 * SC);
    CHECK(c.to == 7 * SC);
    // In place over allocated subclusters: only the request.
    REQUIRE(qcow2_cow_bounds(false, true, bits(0, 31), 3000, 100, true, scb, CS, &c));
    CHECK(c.from == 3000);
    CHECK(c.to == 3100);
    // A new cluster for an unallocated one: the partial subclusters only.
    REQUIRE(qcow2_cow_bounds(false, false, 0, 1000, 100, false, scb, CS, &c));
    CHECK(c.from == 1 * SC);
    CHECK(c.to == 3 * SC);
    // A new cluster for a shared one: from its first to its last allocated subcluster.
    REQUIRE(qcow2_cow_bounds(false, true, bits(2, 4) | bits(20, 21), 3000, 100, false, scb, CS, &c));
    CHECK(c.from == 2 * SC);
    CHECK(c.to == 22 * SC);
    // ... and the request's subclusters when they reach further.
    REQUIRE(qcow2_cow_bounds(false, true, bits(10, 11), 100, 100, false, scb, CS, &c));
    CHECK(c.from == 0);
    CHECK(c.to == 12 * SC);
    // A compressed cluster: all of it.
    REQUIRE(qcow2_cow_bounds(true, false, 0, 3000, 100, false, scb, CS, &c));
    CHECK(c.from == 0);
    CHECK(c.to == CS);
    // Invalid subclusters: refused.
    CHECK_FALSE(qcow2_cow_bounds(false, true, bits(5, 5) | (bits(5, 5) << 32), 3000, 100, true, scb, CS, &c));
    CHECK_FALSE(qcow2_cow_bounds(false, false, bits(5, 5), 3000, 100, false, scb, CS, &c));
    CHECK(qcow2::qcow2_sc_written(bits(1, 1) << 32, 0, 2) == bits(0, 2));
    CHECK(qcow2::qcow2_sc_zeroed(bits(0, 3), 1, 2) == ((bits(0, 3) & ~bits(1, 2)) | (bits(1, 2) << 32)));
}

TEST_CASE("qcow2 existing writer, extended L2: subclusters written, completed and zeroed as qemu's") {
    const auto base = ext_image();
    REQUIRE(entry(base, 1).bm == bits(0, 3));
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.w->subcluster_size() == SC);
    std::vector<std::uint8_t> want = read_disk(base);
    auto put = [&](std::uint64_t at, std::uint64_t n, std::uint8_t v) {
        const std::vector<std::uint8_t> d(n, v);
        REQUIRE(o.w->write(at, d.data(), d.size()) == Status::Ok);
        std::memset(want.data() + at, v, n);
    };
    auto zero = [&](std::uint64_t at, std::uint64_t n, bool unmap) {
        REQUIRE(o.w->write_zeroes(at, n, unmap) == Status::Ok);
        std::memset(want.data() + at, 0, n);
    };
    // In place: subclusters 5 and 6 completed (zeros: no backing file), their bits set.
    put(CS + 3000, 100, 0xcd);
    // A new cluster for cluster 4: subclusters 1 and 2 only; the file ends where they do.
    put(4 * CS + 1000, 100, 0xef);
    // Whole subcluster 1 of cluster 1 zeroed: its zero bit set, its allocation bit cleared.
    zero(CS + SC, SC, true);
    // Part of allocated subcluster 0: -ENOTSUP, zeros written as data (the bitmap keeps it).
    zero(CS + 10, 10, true);
    // A whole unallocated cluster: an all-zero bitmap, no host cluster.
    zero(2 * CS, CS, true);
    // Part of the compressed cluster 8: -ENOTSUP, zeros written as data: copied on write whole.
    zero(8 * CS + SC, SC, true);
    const std::vector<std::uint8_t>& img = o.bytes();
    CHECK(entry(img, 1).bm == (((bits(0, 3) | bits(5, 6)) & ~bits(1, 1)) | (bits(1, 1) << 32)));
    const Entry c4 = entry(img, 4);
    CHECK(c4.bm == bits(1, 2));
    CHECK(entry(img, 2).e == 0);
    CHECK(entry(img, 2).bm == ALL_ZEROES);
    const Entry c8 = entry(img, 8);
    CHECK((c8.e >> 62 & 1) == 0);
    CHECK(c8.bm == qcow2::QCOW2_L2_BITMAP_ALL_ALLOC);
    CHECK(read_disk(img) == want);
    check_clean(img);
    // Cluster 4 was the last allocation but cluster 8's copy came after it: the file ends with
    // the copy, whole; cluster 4 holds 3 subclusters' worth of written bytes at most.
    CHECK(img.size() == (c8.e & OFFSET_MASK) + CS);
}

TEST_CASE("qcow2 existing writer, extended L2: the file ends where the last subcluster written does") {
    const auto base = ext_image();
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    const std::vector<std::uint8_t> d(100, 0x11);
    REQUIRE(o.w->write(20 * CS + 1000, d.data(), d.size()) == Status::Ok);
    const Entry c = entry(o.bytes(), 20);
    CHECK(c.bm == bits(1, 2));
    CHECK(o.bytes().size() == (c.e & OFFSET_MASK) + 3 * SC);
    // The next write into it lands in place (the cluster starts inside the file).
    REQUIRE(o.w->write(20 * CS + 10 * SC, d.data(), d.size()) == Status::Ok);
    const Entry c2 = entry(o.bytes(), 20);
    CHECK(c2.e == c.e);
    CHECK(c2.bm == (bits(1, 2) | bits(10, 10)));
    check_clean(o.bytes());
}

TEST_CASE("qcow2 existing writer, extended L2: invalid subcluster bitmaps are refused, nothing written") {
    const auto base = ext_image();
    const std::vector<std::uint8_t> d(100, 0x22);
    auto both = base; // subcluster 2 of cluster 1 allocated and zero
    put64(both, entry(base, 1).at + 8, bits(0, 3) | (bits(2, 2) << 32));
    {
        Opened o(both);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write(CS + 3000, d.data(), d.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("Invalid subcluster bitmap") != std::string::npos);
        CHECK(o.bytes() == both);
    }
    auto alloc_unmapped = base; // an allocation bit on an entry that maps nothing (cluster 2)
    put64(alloc_unmapped, entry(base, 1).at + 16 + 8, bits(0, 0));
    {
        Opened o(alloc_unmapped);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write_zeroes(2 * CS, CS, true) == Status::Corrupt);
        CHECK(o.bytes() == alloc_unmapped);
    }
}
