// The qcow2 convert writer: exact placement of data, L2 tables and compressed clusters for small
// request sequences (the sequences qemu-img convert issues), zero flags, refused requests, and
// bounded memory. Byte identity with qemu is checked by qcow2_convert_differential.py.
#include <doctest/doctest.h>

#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_bytes.h"
#include "qcow2_write.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace instar;
using instar::guest::Status;

namespace {

constexpr std::uint64_t COPIED = std::uint64_t{1} << 63;
constexpr std::uint64_t COMPRESSED = std::uint64_t{1} << 62;

struct Writer {
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc;
    std::vector<std::pair<std::string, std::string>> opts;
    std::vector<guest::CreateOption> copts;
    guest::ImageWriter* w = nullptr;
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {};

    Writer(std::uint64_t size, std::vector<std::pair<std::string, std::string>> options, const char* backing = nullptr,
           std::size_t budget = 16u << 20)
        : alloc(budget), opts(std::move(options)) {
        for (const auto& [k, v] : opts)
            copts.push_back({k.c_str(), v.c_str()});
        guest::CreateRequest req{};
        req.size = size;
        req.options = copts.data();
        req.option_count = static_cast<std::uint32_t>(copts.size());
        req.file_name = "t.qcow2";
        req.backing_file = backing;
        req.backing_fmt = backing != nullptr ? "raw" : nullptr;
        req.random = random;
        req.qemu_version = 100000;
        req.allocator = &alloc;
        req.codecs = &hosted::host_codecs();
        REQUIRE(qcow2::create_writer(req, target, &w) == Status::Ok);
    }
    ~Writer() {
        if (w != nullptr)
            w->close();
    }
    std::vector<std::uint8_t> finish() {
        REQUIRE(w->finish() == Status::Ok);
        return target.image_output().bytes();
    }
};

std::uint64_t be64(const std::vector<std::uint8_t>& b, std::size_t off) { return qcow2::load_be64(b.data() + off); }
std::uint16_t be16(const std::vector<std::uint8_t>& b, std::size_t off) { return qcow2::load_be16(b.data() + off); }

std::vector<std::uint8_t> filled(std::size_t n, std::uint8_t v) { return std::vector<std::uint8_t>(n, v); }

} // namespace

TEST_CASE("qcow2 writer: a data cluster after create's layout, its L2 table before it") {
    Writer x(1 << 20, {});
    CHECK(x.w->cluster_size() == 65536);
    CHECK(x.w->zero_init());
    const auto data = filled(65536, 0xab);
    REQUIRE(x.w->write(65536, data.data(), data.size()) == Status::Ok);
    const auto img = x.finish();
    // header, refcount table, refcount block, L1 (create); L2 at 0x40000, data at 0x50000.
    REQUIRE(img.size() == 0x60000);
    CHECK(be64(img, 0x30000) == (0x40000 | COPIED));
    CHECK(be64(img, 0x40000) == 0);
    CHECK(be64(img, 0x40008) == (0x50000 | COPIED));
    CHECK(std::memcmp(img.data() + 0x50000, data.data(), data.size()) == 0);
    for (int c = 0; c < 6; ++c)
        CHECK(be16(img, 0x20000 + 2 * c) == 1);
    CHECK(be16(img, 0x20000 + 12) == 0);
}

TEST_CASE("qcow2 writer: a partial cluster is completed with zeros (copy-on-write of a new image)") {
    Writer x(1 << 20, {{"cluster_size", "4096"}});
    const auto data = filled(1024, 0x5a);
    REQUIRE(x.w->write(512, data.data(), data.size()) == Status::Ok);
    const auto img = x.finish();
    // 4 KiB clusters: header, reftable, refblock, L1, L2 at 0x4000, data at 0x5000.
    REQUIRE(img.size() == 0x6000);
    CHECK(be64(img, 0x4000) == (0x5000 | COPIED));
    CHECK(std::all_of(img.begin() + 0x5000, img.begin() + 0x5200, [](std::uint8_t b) { return b == 0; }));
    CHECK(std::memcmp(img.data() + 0x5200, data.data(), data.size()) == 0);
    CHECK(std::all_of(img.begin() + 0x5600, img.end(), [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("qcow2 writer: compressed clusters share a host cluster, refcount 2") {
    Writer x(1 << 20, {{"cluster_size", "4096"}});
    const auto a = filled(4096, 1);
    const auto b = filled(4096, 2);
    REQUIRE(x.w->write_compressed(0, a.data(), a.size()) == Status::Ok);
    REQUIRE(x.w->write_compressed(4096, b.data(), b.size()) == Status::Ok);
    REQUIRE(x.w->write_compressed(0, nullptr, 0) == Status::Ok);
    const auto img = x.finish();
    // csize_shift = 62 - (12 - 8) = 58; both in host cluster 5 (0x5000), the second right after.
    const std::uint64_t e0 = be64(img, 0x4000);
    const std::uint64_t e1 = be64(img, 0x4008);
    CHECK((e0 & COMPRESSED) != 0);
    CHECK((e0 & COPIED) == 0);
    const std::uint64_t mask = (std::uint64_t{1} << 58) - 1;
    CHECK((e0 & mask) == 0x5000);
    CHECK((e1 & mask) > 0x5000);
    CHECK((e1 & mask) < 0x5100);
    CHECK(be16(img, 0x2000 + 2 * 5) == 2);
    CHECK(img.size() % 512 == 0);
    // A compressed write over an allocated cluster is refused, as qemu's -EIO: at once, or (batched
    // compression, Codecs::compress_batch) when the batch is placed, at the end-of-data call.
    Writer y(1 << 20, {{"cluster_size", "4096"}});
    REQUIRE(y.w->write(0, a.data(), a.size()) == Status::Ok);
    const Status queued = y.w->write_compressed(0, b.data(), b.size());
    CHECK((queued == Status::IoError || y.w->write_compressed(0, nullptr, 0) == Status::IoError));
}

TEST_CASE("qcow2 writer: refcount_bits=1 never shares a host cluster") {
    Writer x(1 << 20, {{"cluster_size", "4096"}, {"refcount_bits", "1"}});
    const auto a = filled(4096, 1);
    REQUIRE(x.w->write_compressed(0, a.data(), a.size()) == Status::Ok);
    REQUIRE(x.w->write_compressed(4096, a.data(), a.size()) == Status::Ok);
    const auto img = x.finish();
    const std::uint64_t mask = (std::uint64_t{1} << 58) - 1;
    CHECK((be64(img, 0x4000) & mask) == 0x5000);
    CHECK((be64(img, 0x4008) & mask) == 0x6000);
}

TEST_CASE("qcow2 writer: write_zeroes sets zero flags (v3) without allocating data") {
    Writer x(1 << 20, {}, "base.raw");
    REQUIRE(x.w->write_zeroes(0, 3 * 65536, true) == Status::Ok);
    const auto img = x.finish();
    // The L2 table is allocated (qemu's zero_in_l2_slice looks it up); no data clusters.
    const std::uint64_t l2 = be64(img, 0x30000) & ~COPIED;
    REQUIRE(l2 != 0);
    CHECK(be64(img, l2) == 1);
    CHECK(be64(img, l2 + 8) == 1);
    CHECK(be64(img, l2 + 16) == 1);
    CHECK(be64(img, l2 + 24) == 0);
    CHECK(img.size() == l2 + 65536);
}

TEST_CASE("qcow2 writer: requests outside the disk are refused") {
    Writer x(1 << 20, {});
    const auto a = filled(512, 1);
    CHECK(x.w->write((1 << 20) - 256, a.data(), a.size()) == Status::Invalid);
    CHECK(x.w->write_zeroes(1 << 20, 512, true) == Status::Invalid);
    CHECK(x.w->write_compressed(512, a.data(), a.size()) == Status::Invalid); // not cluster-aligned
}

TEST_CASE("qcow2 writer: memory stays bounded over many L2 tables") {
    // 512-byte clusters: every 32 KiB of data needs a new L2 table, and 8 MiB grows the refcount
    // table; the writer holds two tables and the refcount table whatever the size.
    Writer x(16 << 20, {{"cluster_size", "512"}}, nullptr, 1u << 20);
    const auto chunk = filled(64 * 1024, 0x77);
    for (std::uint64_t off = 0; off < (16u << 20); off += chunk.size())
        REQUIRE(x.w->write(off, chunk.data(), chunk.size()) == Status::Ok);
    REQUIRE(x.w->finish() == Status::Ok);
    CHECK(x.alloc.peak() < (256u << 10));
}
