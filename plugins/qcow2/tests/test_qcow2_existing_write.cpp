// convert -n into an existing qcow2 image (qcow2_existing_write.h): data in place, clusters and L2
// tables appended with their refcounts, zero flags, and hostile metadata refused before any write
// lands on it. Content against qemu-img is checked by tests/convert (suite convert).
#include <doctest/doctest.h>

#include "existing_writer_fixture.h"
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_existing.h"
#include "hosted_support.h"
#include "qcow2_bytes.h"
#include "qcow2_existing_write.h"
#include "qcow2_read.h"
#include "qcow2_write.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

using namespace instar;
using instar::guest::Status;

namespace {

constexpr std::uint64_t COPIED = std::uint64_t{1} << 63;
constexpr std::uint64_t CS = 65536;

using hosted::ExistingFile;
using qcow2::test::be64;
using qcow2::test::made_image;
using qcow2::test::Opened;
using qcow2::test::put64;
using qcow2::test::read_disk;

// A fresh 4 MiB image with 0xab in cluster 1.
std::vector<std::uint8_t> base_image(std::uint64_t size = 4u << 20, const char* cluster_size = nullptr) {
    return made_image(size, cluster_size, [&](guest::ImageWriter& w) {
        const std::vector<std::uint8_t> data(CS, 0xab);
        REQUIRE(w.write(CS, data.data(), std::min<std::size_t>(data.size(), size - CS)) == Status::Ok);
    });
}



} // namespace

TEST_CASE("qcow2 existing writer: in place, appended clusters with refcounts, zero flags") {
    const auto base = base_image();
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    CHECK_FALSE(o.w->zero_init());
    const std::uint64_t end = base.size();
    const std::vector<std::uint8_t> cd(CS, 0xcd), ef(1024, 0xef);
    REQUIRE(o.w->write(2 * CS + 512, cd.data(), 4096) == Status::Ok); // unallocated: appended, rest zeros
    REQUIRE(o.w->write(CS + 512, ef.data(), ef.size()) == Status::Ok); // allocated: in place
    REQUIRE(o.w->write_zeroes(0, 512, true) == Status::Ok);            // unallocated: nothing to do
    REQUIRE(o.w->finish() == Status::Ok);
    const auto img = o.bytes();
    CHECK(img.size() == end + CS); // one data cluster appended (the L2 table existed)
    const auto disk = read_disk(img);
    std::vector<std::uint8_t> expect(4u << 20, 0);
    std::memset(expect.data() + CS, 0xab, CS);
    std::memset(expect.data() + CS + 512, 0xef, 1024);
    std::memset(expect.data() + 2 * CS + 512, 0xcd, 4096);
    CHECK(disk == expect);
    // The appended cluster's refcount (16-bit entries in the block at 0x20000) is 1.
    CHECK(qcow2::load_be16(img.data() + 0x20000 + 2 * (end / CS)) == 1);

    // Zeroing the whole allocated cluster without may_unmap sets the zero flag and keeps the
    // allocation; with it (qemu's unmap), the entry is a plain zero cluster and the host cluster free.
    Opened k(img);
    REQUIRE(k.status == Status::Ok);
    REQUIRE(k.w->write_zeroes(CS, CS, false) == Status::Ok);
    const auto kimg = k.bytes();
    const std::uint64_t l1_off = be64(kimg, 40);
    const std::uint64_t l2_off = be64(kimg, l1_off) & 0x00fffffffffffe00ull;
    CHECK((be64(kimg, l2_off + 8) & 1) == 1);
    CHECK((be64(kimg, l2_off + 8) & COPIED) != 0);
    const std::uint64_t host = be64(img, l2_off + 8) & 0x00fffffffffffe00ull;
    Opened z(img);
    REQUIRE(z.status == Status::Ok);
    REQUIRE(z.w->write_zeroes(CS, CS, true) == Status::Ok);
    const auto zimg = z.bytes();
    CHECK(be64(zimg, l2_off + 8) == 1);
    CHECK(qcow2::load_be16(zimg.data() + 0x20000 + 2 * (host / CS)) == 0);
    std::memset(expect.data() + CS, 0, CS);
    CHECK(read_disk(kimg) == expect);
    CHECK(read_disk(zimg) == expect);
}

TEST_CASE("qcow2 existing writer: a missing L2 table and refcount block are appended") {
    auto base = base_image();
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    // 4 MiB disk, 64 KiB clusters: one L2 table covers it all; it exists. Write far into the disk
    // anyway and check the file grows by whole clusters and reads back.
    const std::vector<std::uint8_t> d(CS, 0x11);
    REQUIRE(o.w->write(3u << 20, d.data(), d.size()) == Status::Ok);
    const auto img = o.bytes();
    CHECK(img.size() % CS == 0);
    const auto disk = read_disk(img);
    CHECK(disk[3u << 20] == 0x11);
    CHECK(disk[(3u << 20) + CS - 1] == 0x11);
    CHECK(disk[(3u << 20) + CS] == 0);
}

TEST_CASE("qcow2 existing writer: hostile metadata is refused before anything lands on it") {
    const auto base = base_image();
    const std::uint64_t l1_off = be64(base, 40);
    const std::uint64_t l2_off = be64(base, l1_off) & 0x00fffffffffffe00ull;
    const std::vector<std::uint8_t> d(512, 0x77);

    auto into_header = base; // a COPIED data cluster that is the header
    put64(into_header, l2_off + 8, 0 | COPIED);
    {
        Opened o(into_header); // offset 0 reads as unallocated: a new cluster is appended instead
        REQUIRE(o.status == Status::Ok);
        REQUIRE(o.w->write(CS, d.data(), d.size()) == Status::Ok);
        CHECK(be64(o.bytes(), 0) == be64(base, 0));
    }
    auto onto_l1 = base; // a data cluster on the L1 table
    put64(onto_l1, l2_off + 8, l1_off | COPIED);
    {
        Opened o(onto_l1);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write(CS, d.data(), d.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("on metadata") != std::string::npos);
        CHECK(o.bytes() == onto_l1);
    }
    auto past_eof = base;
    put64(past_eof, l2_off + 8, (base.size() + 16 * CS) | COPIED);
    {
        Opened o(past_eof);
        CHECK(o.w->write(CS, d.data(), d.size()) == Status::Corrupt);
    }
    auto l2_unaligned = base;
    put64(l2_unaligned, l1_off, (l2_off + 512) | COPIED);
    {
        Opened o(l2_unaligned);
        CHECK(o.w->write(CS, d.data(), d.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("L2 table offset") != std::string::npos);
    }
    auto reftable_past = base;
    put64(reftable_past, 48, base.size() + CS); // refcount table past the end of the file
    {
        Opened o(reftable_past);
        CHECK(o.status == Status::Corrupt);
    }
    // Internal snapshots: their table and L1 tables are metadata too (qemu's overlap check).
    const std::uint64_t data_off = be64(base, l2_off + 8) & 0x00fffffffffffe00ull;
    auto snapshots = base; // one snapshot whose L1 table is the active data cluster at CS
    snapshots.resize(base.size() + CS, 0);
    qcow2::store_be32(snapshots.data() + 60, 1);
    put64(snapshots, 64, base.size());
    put64(snapshots, base.size(), data_off);
    qcow2::store_be32(snapshots.data() + base.size() + 8, 1); // l1_size
    {
        Opened o(snapshots);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write(CS, d.data(), d.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("on metadata") != std::string::npos);
        CHECK(o.bytes() == snapshots);
    }
    auto big_extra = snapshots; // an entry with more extra data than qemu keeps
    qcow2::store_be32(big_extra.data() + base.size() + 36, 5000);
    {
        Opened o(big_extra);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reasons.text.find("Snapshot table entry 0") != std::string::npos);
    }
}

// The file grows as the writer appends: a pointer the image held before the run that names a
// cluster just past the old end must stay refused after appends have reached it (else it would
// name a cluster the writer allocated: writes of one guest cluster landing in another's data).
TEST_CASE("qcow2 existing writer: pointers past the old end of the file stay refused after appends") {
    const auto base = base_image();
    const std::uint64_t l1_off = be64(base, 40);
    const std::uint64_t l2_off = be64(base, l1_off) & 0x00fffffffffffe00ull;
    const std::uint64_t next = (base.size() + CS - 1) / CS * CS; // the writer's first append
    const std::vector<std::uint8_t> d(CS, 0x5c);

    auto entry_ahead = base; // guest cluster 2 named at the cluster guest cluster 3's write appends
    put64(entry_ahead, l2_off + 2 * 8, next | COPIED);
    {
        Opened o(entry_ahead);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write(3 * CS, d.data(), d.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("past the end of the image file (L2 offset") != std::string::npos);
        CHECK(o.bytes() == entry_ahead);
    }
    const auto big = base_image(1u << 30); // two L1 entries
    const std::uint64_t big_next = (big.size() + CS - 1) / CS * CS;
    auto table_ahead = big; // L1 entry 1 names, as its L2 table, the cluster the first append takes
    put64(table_ahead, be64(big, 40) + 8, big_next | COPIED);
    {
        Opened o(table_ahead);
        REQUIRE(o.status == Status::Ok);
        REQUIRE(o.w->write(3 * CS, d.data(), d.size()) == Status::Ok); // appended at big_next
        CHECK(o.w->write(std::uint64_t{512} << 20, d.data(), 512) == Status::Corrupt);
        CHECK(o.reasons.text.find("L2 table offset") != std::string::npos);
        const auto after = o.bytes();
        REQUIRE(after.size() >= big_next + CS);
        CHECK(std::all_of(after.begin() + static_cast<std::ptrdiff_t>(big_next),
                          after.begin() + static_cast<std::ptrdiff_t>(big_next + CS),
                          [](std::uint8_t b) { return b == 0x5c; })); // the data, never taken for a table
    }

    // 512-byte clusters: a refcount block covers 128 KiB, so appends soon need refcount-table entry 1;
    // the image names one where the writer's appends will have reached.
    const auto small = base_image(4u << 20, "512");
    const std::uint64_t small_next = (small.size() + 511) / 512 * 512;
    auto block_ahead = small;
    put64(block_ahead, be64(small, 48) + 8, small_next + 64 * 512);
    {
        Opened o(block_ahead);
        REQUIRE(o.status == Status::Ok);
        const std::vector<std::uint8_t> big(256u << 10, 0x3d);
        CHECK(o.w->write(1u << 20, big.data(), big.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("Refblock offset") != std::string::npos);
    }
}

namespace {
// The 16-bit refcount entry of the host cluster at `host` (instar's create writer's layout).
std::uint64_t refcount_at(const std::vector<std::uint8_t>& img, std::uint64_t host) {
    const std::uint64_t block = be64(img, be64(img, 48));
    return block + 2 * (host / CS);
}
std::uint16_t refcount(const std::vector<std::uint8_t>& img, std::uint64_t host) {
    const std::uint64_t at = refcount_at(img, host);
    return static_cast<std::uint16_t>(img[at] << 8 | img[at + 1]);
}
void set_refcount(std::vector<std::uint8_t>& img, std::uint64_t host, std::uint16_t v) {
    const std::uint64_t at = refcount_at(img, host);
    img[at] = static_cast<std::uint8_t>(v >> 8);
    img[at + 1] = static_cast<std::uint8_t>(v);
}
} // namespace

TEST_CASE("qcow2 existing writer: tables and clusters a snapshot shares are copied on write") {
    const auto base = base_image();
    const std::uint64_t l1_off = be64(base, 40);
    const std::uint64_t l2_off = be64(base, l1_off) & 0x00fffffffffffe00ull;
    const std::uint64_t data_off = be64(base, l2_off + 8) & 0x00fffffffffffe00ull;
    // As a snapshot leaves them: refcount 2, OFLAG_COPIED clear in the L1 and L2 entries.
    auto shared = base;
    put64(shared, l1_off, l2_off);
    put64(shared, l2_off + 8, data_off);
    set_refcount(shared, l2_off, 2);
    set_refcount(shared, data_off, 2);
    const std::vector<std::uint8_t> d(512, 0x77);
    Opened o(shared);
    REQUIRE(o.status == Status::Ok);
    REQUIRE(o.w->write(CS + 4096, d.data(), d.size()) == Status::Ok);
    const auto img = o.bytes();
    // The L2 table was copied (flags kept) and the old one lost a reference, unchanged.
    const std::uint64_t new_l2 = be64(img, l1_off) & 0x00fffffffffffe00ull;
    CHECK((be64(img, l1_off) & COPIED) != 0);
    CHECK(new_l2 != l2_off);
    CHECK(refcount(img, l2_off) == 1);
    CHECK(refcount(img, new_l2) == 1);
    CHECK(std::equal(img.begin() + l2_off, img.begin() + l2_off + CS, shared.begin() + l2_off));
    // The data cluster was copied on write; the old one keeps the snapshot's bytes.
    const std::uint64_t e = be64(img, new_l2 + 8);
    const std::uint64_t new_data = e & 0x00fffffffffffe00ull;
    CHECK((e & COPIED) != 0);
    CHECK(new_data != data_off);
    CHECK(refcount(img, data_off) == 1);
    CHECK(refcount(img, new_data) == 1);
    CHECK(std::equal(img.begin() + data_off, img.begin() + data_off + CS, shared.begin() + data_off));
    const auto disk = read_disk(img);
    CHECK(disk[CS] == 0xab);
    CHECK(disk[CS + 4096] == 0x77);
    CHECK(disk[CS + 4096 + 511] == 0x77);
    CHECK(disk[CS + 4096 + 512] == 0xab);

    // Whole zeros with unmap over a shared cluster: a zero entry, one reference dropped, no discard.
    auto zeroed = shared;
    Opened z(zeroed);
    REQUIRE(z.status == Status::Ok);
    REQUIRE(z.w->write_zeroes(CS, CS, true) == Status::Ok);
    const auto zimg = z.bytes();
    CHECK(refcount(zimg, data_off) == 1);
    CHECK(std::equal(zimg.begin() + data_off, zimg.begin() + data_off + CS, shared.begin() + data_off));
    CHECK(read_disk(zimg)[CS] == 0);

    // A shared cluster whose refcount is already 0: corruption, reported.
    auto zero_ref = shared;
    set_refcount(zero_ref, data_off, 0);
    Opened c(zero_ref);
    REQUIRE(c.status == Status::Ok);
    CHECK(c.w->write(CS, d.data(), d.size()) == Status::Corrupt);
    CHECK(c.reasons.text.find("has refcount 0") != std::string::npos);
}

TEST_CASE("qcow2 existing writer: a full refcount table is grown, the old one freed") {
    // 512-byte clusters: one refcount table cluster names 64 blocks of 256 clusters, 8 MiB of file.
    const auto base = base_image(16u << 20, "512");
    const std::uint64_t old_table = be64(base, 48);
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    std::vector<std::uint8_t> d(1u << 20);
    for (std::size_t i = 0; i < d.size(); ++i)
        d[i] = static_cast<std::uint8_t>(i * 7 + 1);
    for (std::uint64_t at = 0; at < (12u << 20); at += d.size())
        REQUIRE(o.w->write(at, d.data(), d.size()) == Status::Ok);
    REQUIRE(o.w->finish() == Status::Ok);
    const auto img = o.bytes();
    CHECK(img.size() > (12u << 20));
    const std::uint64_t table = be64(img, 48);
    CHECK(table != old_table);
    CHECK(qcow2::load_be32(img.data() + 56) >= 2);
    const auto disk = read_disk(img);
    for (std::uint64_t at = 0; at < (12u << 20); at += d.size())
        CHECK(std::memcmp(disk.data() + at, d.data(), d.size()) == 0);
}

TEST_CASE("qcow2 existing writer: whole unallocated clusters are appended as one run") {
    const auto base = base_image();
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    const std::uint64_t end = base.size();
    // Clusters 2..6 unallocated, cluster 1 allocated: a run over 2..6, then one over 0..2 that
    // meets the allocated cluster 1 (cluster by cluster).
    std::vector<std::uint8_t> data(5 * CS);
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<std::uint8_t>(i / CS + 1);
    REQUIRE(o.w->write(2 * CS, data.data(), data.size()) == Status::Ok);
    const std::vector<std::uint8_t> ee(2 * CS, 0xee);
    REQUIRE(o.w->write(0, ee.data(), ee.size()) == Status::Ok);
    REQUIRE(o.w->finish() == Status::Ok);
    const auto img = o.bytes();
    CHECK(img.size() == end + 6 * CS); // five clusters in one run, then cluster 0
    std::vector<std::uint8_t> expect(4u << 20, 0);
    std::memset(expect.data(), 0xee, 2 * CS);
    std::memcpy(expect.data() + 2 * CS, data.data(), data.size());
    CHECK(read_disk(img) == expect);
    // The run's clusters lie in order, each counted once.
    const std::uint64_t l1_off = be64(img, 40);
    const std::uint64_t l2_off = be64(img, l1_off) & 0x00fffffffffffe00ull;
    for (std::uint64_t c = 0; c < 5; ++c) {
        CHECK(be64(img, l2_off + (2 + c) * 8) == ((end + c * CS) | COPIED));
        CHECK(qcow2::load_be16(img.data() + 0x20000 + 2 * (end / CS + c)) == 1);
    }
}

namespace {

// A fixed pattern as a backing chain.
class PatternReader final : public guest::ImageReader {
public:
    explicit PatternReader(std::uint64_t size) : size_(size) {}
    std::uint64_t virtual_size() const override { return size_; }
    Status status(std::uint64_t, std::uint64_t length, guest::Extent* out) override {
        *out = guest::Extent{length, guest::Allocation::Data, 0, 0, 0, 0};
        return Status::Ok;
    }
    Status read(std::uint64_t, void* buf, std::size_t len) override {
        std::memset(buf, 0x5a, len);
        return Status::Ok;
    }
    void close() override {}

private:
    std::uint64_t size_;
};

} // namespace

TEST_CASE("qcow2 existing writer: an overlay is written only with its backing chain") {
    // Give the image a backing file name (the writer never reads it: the chain comes from the caller).
    auto img = base_image();
    const char name[] = "b.qcow2";
    std::memcpy(img.data() + 0x200, name, sizeof name - 1);
    put64(img, 8, 0x200);
    qcow2::store_be32(img.data() + 16, sizeof name - 1);
    const std::vector<std::uint8_t> cd(4096, 0xcd);
    {
        Opened o(img); // convert -n: no chain, so no write
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write(2 * CS, cd.data(), cd.size()) == Status::Unsupported);
        CHECK(o.reasons.text.find("with a backing file") != std::string::npos);
    }
    Opened o(img);
    REQUIRE(o.status == Status::Ok);
    PatternReader chain(4u << 20);
    o.w->set_backing(&chain);
    REQUIRE(o.w->write(2 * CS + 512, cd.data(), cd.size()) == Status::Ok); // partial: the rest from the chain
    // zeros over the chain: a zero cluster (v3), as qemu's write_zeroes into an overlay (commit's base)
    REQUIRE(o.w->write_zeroes(3 * CS, CS, true) == Status::Ok);
    const auto out = o.bytes();
    const std::uint64_t l1_off = be64(out, 40);
    const std::uint64_t l2_off = be64(out, l1_off) & 0x00fffffffffffe00ull;
    const std::uint64_t host = be64(out, l2_off + 2 * 8) & 0x00fffffffffffe00ull;
    REQUIRE(host != 0);
    CHECK(out[host] == 0x5a);
    CHECK(out[host + 511] == 0x5a);
    CHECK(out[host + 512] == 0xcd);
    CHECK(out[host + 512 + 4095] == 0xcd);
    CHECK(out[host + 512 + 4096] == 0x5a);
    CHECK(out[host + CS - 1] == 0x5a);
    CHECK((be64(out, l2_off + 3 * 8) & 1) == 1); // QCOW_OFLAG_ZERO
}

TEST_CASE("qcow2 existing writer: compressed clusters are copied on write and their clusters freed") {
    // Cluster 3 stored compressed by instar's create writer (convert -c's).
    const auto base = made_image(4u << 20, nullptr, [](guest::ImageWriter& w) {
        const std::vector<std::uint8_t> c5(CS, 0xc5);
        REQUIRE(w.write_compressed(3 * CS, c5.data(), CS) == Status::Ok);
    });
    const std::uint64_t l1_off = be64(base, 40);
    const std::uint64_t l2_off = be64(base, l1_off) & 0x00fffffffffffe00ull;
    const std::uint64_t entry = be64(base, l2_off + 3 * 8);
    REQUIRE((entry & (std::uint64_t{1} << 62)) != 0);
    const std::uint64_t chost = (entry & ((std::uint64_t{1} << 54) - 1)) & ~(CS - 1);
    REQUIRE(qcow2::load_be16(base.data() + 0x20000 + 2 * (chost / CS)) == 1);

    // A partial write: the new cluster holds the inflated bytes with the new ones over them.
    const std::vector<std::uint8_t> d(512, 0x77);
    Opened o(base);
    REQUIRE(o.status == Status::Ok);
    REQUIRE(o.w->write(3 * CS + 1024, d.data(), d.size()) == Status::Ok);
    const auto img = o.bytes();
    const std::uint64_t now = be64(img, l2_off + 3 * 8);
    CHECK((now & (std::uint64_t{1} << 62)) == 0);
    CHECK((now & COPIED) != 0);
    CHECK(qcow2::load_be16(img.data() + 0x20000 + 2 * (chost / CS)) == 0); // the old bytes' cluster freed
    std::vector<std::uint8_t> expect(4u << 20, 0);
    std::memset(expect.data() + 3 * CS, 0xc5, CS);
    std::memset(expect.data() + 3 * CS + 1024, 0x77, 512);
    CHECK(read_disk(img) == expect);

    // Whole zeros: a plain zero cluster (v3), the old bytes' cluster freed.
    Opened z(base);
    REQUIRE(z.status == Status::Ok);
    REQUIRE(z.w->write_zeroes(3 * CS, CS, false) == Status::Ok);
    const auto zimg = z.bytes();
    CHECK(be64(zimg, l2_off + 3 * 8) == 1);
    CHECK(qcow2::load_be16(zimg.data() + 0x20000 + 2 * (chost / CS)) == 0);
    CHECK(read_disk(zimg) == std::vector<std::uint8_t>(4u << 20, 0));

    // Hostile: compressed bytes past the end of the file, or on the L1 table: refused, nothing written.
    for (const std::uint64_t where : {std::uint64_t{base.size()} + 16 * CS, l1_off}) {
        auto bad = base;
        put64(bad, l2_off + 3 * 8, (std::uint64_t{1} << 62) | where);
        Opened h(bad);
        REQUIRE(h.status == Status::Ok);
        CHECK(h.w->write(3 * CS, d.data(), d.size()) == Status::Corrupt);
        CHECK(h.reasons.text.find("Compressed cluster data") != std::string::npos);
        CHECK(h.bytes() == bad);
    }
}

