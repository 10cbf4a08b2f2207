// Unit tests of the shared in-place layer (qcow2_inplace.h): refcounts of every width, first-fit
// allocation as qemu's qcow2_alloc_clusters, new refcount blocks, refcount table growth, freeing,
// overflow refusal and hostile refcount block offsets; each result verified with instar's own
// qcow2 check (qemu's rules: no corruption, the expected leaks).
#include <doctest/doctest.h>

#include "hosted_create.h"
#include "hosted_support.h"
#include "qcow2_check_fixture.h"
#include "qcow2_inplace.h"
#include "qcow2_test_image.h"

#include <string>
#include <vector>

using namespace instar;
using guest::Status;
using qcow2::test::put_be;

namespace {

constexpr std::uint64_t COPIED = 1ull << 63;
constexpr std::uint64_t CS = 512;

// Cluster 0 header, 1 refcount table, 2 refblock, 3 L1, 4 L2, 5 and 6 data.
std::vector<std::uint8_t> image(std::uint32_t refcount_order = 4) {
    std::vector<std::uint8_t> b(7 * CS, 0);
    put_be(b, 0, 0x514649fb, 4);
    put_be(b, 4, 3, 4);
    put_be(b, 20, 9, 4);
    put_be(b, 24, 64 * CS, 8);
    put_be(b, 36, 1, 4);
    put_be(b, 40, 3 * CS, 8);
    put_be(b, 48, 1 * CS, 8);
    put_be(b, 56, 1, 4);
    put_be(b, 96, refcount_order, 4);
    put_be(b, 100, 112, 4);
    put_be(b, CS, 2 * CS, 8);
    put_be(b, 3 * CS, COPIED | 4 * CS, 8);
    put_be(b, 4 * CS, COPIED | 5 * CS, 8);
    put_be(b, 4 * CS + 8, COPIED | 6 * CS, 8);
    const std::uint32_t w = 1u << refcount_order;
    for (std::uint64_t c = 0; c < 7; ++c) {
        if (w < 8)
            b[2 * CS + c * w / 8] |= static_cast<std::uint8_t>(1u << (c % (8 / w) * w));
        else
            put_be(b, 2 * CS + c * (w / 8) + (w / 8 - 1), 1, 1);
    }
    return b;
}

// A growable file: an output device over the image bytes.
struct File {
    hosted::MemoryOutput out{256u << 20};
    explicit File(const std::vector<std::uint8_t>& b) { REQUIRE(out.write(0, b.data(), b.size()) == Status::Ok); }
};

using qcow2::test::check_image;

} // namespace

TEST_CASE("qcow2 inplace: refcounts, first-fit allocation and freeing") {
    File f(image());
    hosted::BudgetAllocator alloc(16u << 20);
    qcow2::Qcow2Inplace ip;
    REQUIRE(ip.open(f.out, f.out.length(), alloc, nullptr) == Status::Ok);
    std::uint64_t rc = 0;
    CHECK(ip.get_refcount(0, &rc) == Status::Ok);
    CHECK(rc == 1);
    CHECK(ip.get_refcount(7, &rc) == Status::Ok);
    CHECK(rc == 0);
    std::uint64_t at = 0;
    REQUIRE(ip.alloc_clusters(2 * CS, &at) == Status::Ok);
    CHECK(at == 7 * CS); // the first free cluster, as qemu
    REQUIRE(ip.free_clusters(6 * CS, CS) == Status::Ok); // data cluster 6 dropped
    REQUIRE(ip.alloc_clusters(CS, &at) == Status::Ok);
    CHECK(at == 6 * CS); // reused: the free index went back
    REQUIRE(ip.alloc_clusters(CS, &at) == Status::Ok);
    CHECK(at == 9 * CS);
    CHECK(ip.update_refcount(5 * CS, CS, 1, false) == Status::Ok);
    CHECK(ip.get_refcount(5, &rc) == Status::Ok);
    CHECK(rc == 2);
    CHECK(ip.update_refcount(5 * CS, CS, 1, true) == Status::Ok);
    CHECK(ip.update_refcount(20 * CS, CS, 1, true) == Status::Invalid); // underflow refused
    // Write the new clusters so they lie in the file, then sync.
    std::vector<std::uint8_t> zero(3 * CS, 0);
    REQUIRE(ip.write(7 * CS, zero.data(), zero.size()) == Status::Ok);
    REQUIRE(ip.sync() == Status::Ok);
    ip.close();
    const auto r = check_image(f.out.bytes());
    CHECK(r.corruptions == 0);
    CHECK(r.check_errors == 0);
    CHECK(r.leaks == 3); // clusters 7, 8 and 9 (6 is still referenced by L2: refcount 1)
}

TEST_CASE("qcow2 inplace: every refcount width, and overflow is refused") {
    for (std::uint32_t order = 0; order <= 6; ++order) {
        CAPTURE(order);
        File f(image(order));
        hosted::BudgetAllocator alloc(16u << 20);
        qcow2::Qcow2Inplace ip;
        REQUIRE(ip.open(f.out, f.out.length(), alloc, nullptr) == Status::Ok);
        CHECK(ip.refcount_max() == (order == 6 ? ~0ull : (1ull << (1u << order)) - 1));
        std::uint64_t rc = 0;
        for (std::uint64_t c = 0; c < 7; ++c) {
            REQUIRE(ip.get_refcount(c, &rc) == Status::Ok);
            CHECK(rc == 1);
        }
        std::uint64_t at = 0;
        REQUIRE(ip.alloc_clusters(CS, &at) == Status::Ok);
        CHECK(at == 7 * CS);
        if (order == 0)
            CHECK(ip.update_refcount(5 * CS, CS, 1, false) == Status::Invalid);
        else
            CHECK(ip.update_refcount(5 * CS, CS, 1, false) == Status::Ok);
        REQUIRE(ip.get_refcount(6, &rc) == Status::Ok);
        CHECK(rc == 1); // a neighbour untouched
        std::vector<std::uint8_t> zero(CS, 0);
        REQUIRE(ip.write(7 * CS, zero.data(), zero.size()) == Status::Ok);
        REQUIRE(ip.sync() == Status::Ok);
        ip.close();
        const auto r = check_image(f.out.bytes());
        CHECK(r.check_errors == 0);
        // Cluster 5's refcount 2 with one reference: a leak, and its OFLAG_COPIED is now wrong.
        CHECK(r.leaks == (order == 0 ? 1u : 2u));
        CHECK(r.corruptions == (order == 0 ? 0u : 1u));
    }
}

TEST_CASE("qcow2 inplace: new refcount blocks and a grown refcount table") {
    File f(image());
    hosted::BudgetAllocator alloc(64u << 20);
    qcow2::Qcow2Inplace ip;
    REQUIRE(ip.open(f.out, f.out.length(), alloc, nullptr) == Status::Ok);
    // 256 refcounts per 512-byte block, 64 blocks per table cluster: 20000 clusters need a second
    // table cluster, so the table grows (qcow2_refcount_area) past the covered area.
    constexpr std::uint64_t N = 20000;
    std::vector<std::uint8_t> zero(CS, 0);
    std::uint64_t last = 0;
    for (std::uint64_t i = 0; i < N; ++i) {
        std::uint64_t at = 0;
        REQUIRE(ip.alloc_clusters(CS, &at) == Status::Ok);
        CHECK((at > last || at == CS)); // the old table's cluster comes free once
        last = at;
        REQUIRE(ip.write(at, zero.data(), zero.size()) == Status::Ok);
    }
    REQUIRE(ip.sync() == Status::Ok);
    CHECK(ip.header().refcount_table_offset != CS);
    CHECK(ip.header().refcount_table_clusters >= 2);
    ip.close();
    std::string err;
    const auto r = check_image(f.out.bytes(), &err);
    CHECK(r.corruptions == 0);
    CHECK(r.check_errors == 0);
    CHECK(r.leaks == N);
    INFO(err);
    // Reopened: the first free cluster is past everything (the old table's was reused).
    qcow2::Qcow2Inplace again;
    REQUIRE(again.open(f.out, f.out.length(), alloc, nullptr) == Status::Ok);
    std::uint64_t at = 0;
    REQUIRE(again.alloc_clusters(CS, &at) == Status::Ok);
    CHECK(at > 16640 * CS);
    again.close();
}

TEST_CASE("qcow2 inplace: a hostile refcount block offset is refused before any write") {
    auto b = image();
    put_be(b, CS, 100 * CS, 8); // past the end
    File f(b);
    hosted::BudgetAllocator alloc(16u << 20);
    qcow2::Qcow2Inplace ip;
    REQUIRE(ip.open(f.out, f.out.length(), alloc, nullptr) == Status::Ok);
    std::uint64_t at = 0;
    CHECK(ip.alloc_clusters(CS, &at) == Status::Corrupt);
    ip.close();
    CHECK(f.out.bytes() == b);
    auto c = image();
    put_be(c, CS, 100 * CS, 8); // past the end
    File g(c);
    REQUIRE(ip.open(g.out, g.out.length(), alloc, nullptr) == Status::Ok);
    std::uint64_t rc = 0;
    CHECK(ip.get_refcount(0, &rc) == Status::Corrupt);
    ip.close();
}

TEST_CASE("qcow2 inplace: header updates") {
    File f(image());
    hosted::BudgetAllocator alloc(16u << 20);
    qcow2::Qcow2Inplace ip;
    REQUIRE(ip.open(f.out, f.out.length(), alloc, nullptr) == Status::Ok);
    REQUIRE(ip.set_snapshots(3, 0x1234 * CS) == Status::Ok);
    CHECK(ip.header().nb_snapshots == 3);
    CHECK(ip.header().snapshots_offset == 0x1234 * CS);
    REQUIRE(ip.set_l1(5 * CS, 2) == Status::Ok);
    CHECK(ip.header().l1_table_offset == 5 * CS);
    CHECK(ip.header().l1_size == 2);
    ip.close();
}

namespace {

// An output that records discards (and zeroes what they cover).
struct DiscardingFile final : guest::BlockDevice {
    hosted::MemoryOutput out{64u << 20};
    std::vector<std::pair<std::uint64_t, std::uint64_t>> discards;
    explicit DiscardingFile(const std::vector<std::uint8_t>& b) { REQUIRE(out.write(0, b.data(), b.size()) == Status::Ok); }
    std::uint64_t size() const override { return out.size(); }
    Status read(std::uint64_t o, void* b, std::size_t n) override { return out.read(o, b, n); }
    Status write(std::uint64_t o, const void* b, std::size_t n) override { return out.write(o, b, n); }
    Status discard(std::uint64_t o, std::uint64_t n) override {
        discards.emplace_back(o, n);
        const std::vector<std::uint8_t> z(n, 0);
        return out.write(o, z.data(), z.size());
    }
};

} // namespace

TEST_CASE("qcow2 inplace: freed clusters are discarded in merged runs, before they are handed out again") {
    auto b = image();
    b.resize(12 * CS, 0x77);
    for (std::uint64_t c = 7; c < 12; ++c)
        put_be(b, 2 * CS + 2 * c, 1, 2); // clusters 7..11 in use (leaked)
    DiscardingFile f(b);
    hosted::BudgetAllocator alloc(16u << 20);
    qcow2::Qcow2Inplace ip;
    REQUIRE(ip.open(f, f.out.length(), alloc, nullptr) == Status::Ok);
    REQUIRE(ip.free_clusters(8 * CS, CS, true) == Status::Ok);
    REQUIRE(ip.free_clusters(9 * CS, 2 * CS, true) == Status::Ok);
    REQUIRE(ip.free_clusters(7 * CS, CS, false) == Status::Ok); // not discarded
    CHECK(f.discards.empty()); // queued
    std::uint64_t at = 0;
    REQUIRE(ip.alloc_clusters(CS, &at) == Status::Ok); // the queue goes out first
    CHECK(at == 7 * CS);
    REQUIRE(f.discards.size() == 1);
    CHECK(f.discards[0] == std::make_pair(8 * CS, 3 * CS));
    REQUIRE(ip.alloc_clusters(CS, &at) == Status::Ok);
    CHECK(at == 8 * CS);
    REQUIRE(ip.sync() == Status::Ok);
    CHECK(f.discards.size() == 1);
    ip.close();
}
