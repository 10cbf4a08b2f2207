// Tests of vmdk create_writer: grain allocation and both grain tables, partial grains, zeroed
// grains, streamOptimized grain markers, extent splitting, the CID rewrite and the table cache.
#include "vmdk_bytes.h"
#include "vmdk_create.h"
#include "vmdk_create_extent.h"
#include "vmdk_sparse_header.h"
#include "vmdk_write.h"
#include "vmdk_write_cid.h"

#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <doctest/doctest.h>

#include <zlib.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace instar;
using guest::Status;

namespace {

constexpr std::uint64_t GRAIN = 64u << 10;

// One create_writer run into memory; the request's strings and the arena live as long as it does.
struct Run {
    hosted::MemoryTarget target{512u << 20};
    hosted::BudgetAllocator alloc{64u << 20};
    std::vector<std::pair<std::string, std::string>> kv;
    std::vector<guest::CreateOption> opts;
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};
    guest::ImageWriter* w = nullptr;
    Status status = Status::Ok;

    Run(std::uint64_t size, std::vector<std::pair<std::string, std::string>> options,
        guest::BlockDevice* backing = nullptr, std::uint64_t backing_size = 0)
        : kv(std::move(options)) {
        for (const auto& [k, v] : kv)
            opts.push_back({k.c_str(), v.c_str()});
        guest::CreateRequest req{};
        req.size = size;
        req.options = opts.data();
        req.option_count = static_cast<std::uint32_t>(opts.size());
        req.file_name = "w.vmdk";
        req.unix_time = 1700000000;
        req.random = random;
        req.qemu_version = 100000;
        req.allocator = &alloc;
        req.codecs = &hosted::host_codecs();
        if (backing != nullptr) {
            req.backing_file = "base.vmdk";
            req.backing = backing;
            req.backing_size = backing_size;
        }
        status = vmdk::create_writer(req, target, &w);
    }
    ~Run() {
        if (w != nullptr)
            w->close();
    }
    hosted::MemoryOutput& image() { return target.image_output(); }
    hosted::MemoryOutput& file(std::size_t i) { return *target.files().at(i).second; }
};

std::uint32_t le32_at(hosted::MemoryOutput& o, std::uint64_t offset) {
    std::uint8_t b[4];
    REQUIRE(o.read(offset, b, 4) == Status::Ok);
    return vmdk::load_le32(b);
}

std::vector<std::uint8_t> bytes_at(hosted::MemoryOutput& o, std::uint64_t offset, std::size_t n) {
    std::vector<std::uint8_t> b(n);
    REQUIRE(o.read(offset, b.data(), n) == Status::Ok);
    return b;
}

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> b(n);
    for (std::size_t i = 0; i < n; ++i)
        b[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
    return b;
}

// The primary and redundant grain table entries of grain `g` in an extent of `bytes`.
std::pair<std::uint32_t, std::uint32_t> gte(hosted::MemoryOutput& o, std::uint64_t bytes, std::uint64_t g,
                                            bool compress = false, bool zeroed = false) {
    const vmdk::SparseLayout l = vmdk::sparse_layout(bytes, compress, zeroed);
    const std::uint64_t table = l.gd_sectors + (g / 512) * l.gt_sectors;
    return {le32_at(o, (l.header.gd_offset + table) * 512 + (g % 512) * 4),
            le32_at(o, (l.header.rgd_offset + table) * 512 + (g % 512) * 4)};
}

std::string descriptor(hosted::MemoryOutput& o, std::uint64_t at) {
    const auto b = bytes_at(o, at, std::min<std::uint64_t>(o.length() - at, 10240));
    return std::string(reinterpret_cast<const char*>(b.data()), strnlen(reinterpret_cast<const char*>(b.data()), b.size()));
}

} // namespace

TEST_CASE("write: monolithicSparse allocates grains at the end and updates both tables") {
    Run r(4u << 20, {});
    REQUIRE(r.status == Status::Ok);
    CHECK(r.w->cluster_size() == GRAIN);
    CHECK(r.w->zero_init());
    CHECK(r.image().length() == 128 * 512); // create's grain_offset: 128 sectors
    const auto a = pattern(GRAIN, 1);
    const auto b = pattern(2 * GRAIN, 2);
    REQUIRE(r.w->write(3 * GRAIN, a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->write(GRAIN, b.data(), b.size()) == Status::Ok); // grains 1 and 2, after grain 3
    REQUIRE(r.w->finish() == Status::Ok);
    CHECK(gte(r.image(), 4u << 20, 3) == std::make_pair(128u, 128u));
    CHECK(gte(r.image(), 4u << 20, 1) == std::make_pair(256u, 256u));
    CHECK(gte(r.image(), 4u << 20, 2) == std::make_pair(384u, 384u));
    CHECK(gte(r.image(), 4u << 20, 0) == std::make_pair(0u, 0u));
    CHECK(r.image().length() == 512 * 512);
    CHECK(bytes_at(r.image(), 128 * 512, GRAIN) == a);
    CHECK(bytes_at(r.image(), 256 * 512, 2 * GRAIN) == b);
    // The first write gave the descriptor qemu's new CID (random bytes 4..7).
    CHECK(descriptor(r.image(), 512).find("\nCID=8070605\nparentCID=ffffffff\n") != std::string::npos);
}

TEST_CASE("write: a partial grain is zero-filled; later pieces land in place") {
    Run r(1u << 20, {});
    REQUIRE(r.status == Status::Ok);
    const auto a = pattern(4096, 3);
    const auto b = pattern(512, 4);
    REQUIRE(r.w->write(5 * GRAIN + 8192, a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->write(5 * GRAIN + 60 * 1024, b.data(), b.size()) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    CHECK(gte(r.image(), 1u << 20, 5).first == 128);
    CHECK(r.image().length() == 256 * 512); // one grain
    auto want = std::vector<std::uint8_t>(GRAIN, 0);
    std::memcpy(want.data() + 8192, a.data(), a.size());
    std::memcpy(want.data() + 60 * 1024, b.data(), b.size());
    CHECK(bytes_at(r.image(), 128 * 512, GRAIN) == want);
}

TEST_CASE("write: the disk's last, shorter grain is a whole grain in the file") {
    Run r(GRAIN + 1536, {});
    REQUIRE(r.status == Status::Ok);
    const auto a = pattern(1536, 5);
    REQUIRE(r.w->write(GRAIN, a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    CHECK(r.image().length() == 256 * 512);
    CHECK(r.w->write(GRAIN, a.data(), a.size() + 512) == Status::Invalid); // past the end
}

TEST_CASE("write: zeroed_grain write_zeroes marks whole grains, writes zeros around them") {
    Run r(1u << 20, {{"zeroed_grain", "on"}});
    REQUIRE(r.status == Status::Ok);
    const auto a = pattern(GRAIN, 6);
    REQUIRE(r.w->write(0, a.data(), a.size()) == Status::Ok);
    // [4 KiB, 3 grains + 4 KiB): grain 0's tail written with zeros in place, grains 1 and 2 marked,
    // grain 3's head allocated and zero-filled.
    REQUIRE(r.w->write_zeroes(4096, 3 * GRAIN, true) == Status::Ok);
    REQUIRE(r.w->write_zeroes(GRAIN * 4, GRAIN, false) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    const std::uint64_t size = 1u << 20;
    CHECK(gte(r.image(), size, 0, false, true).first == 128);
    CHECK(gte(r.image(), size, 1, false, true) == std::make_pair(1u, 1u));
    CHECK(gte(r.image(), size, 2, false, true) == std::make_pair(1u, 1u));
    CHECK(gte(r.image(), size, 3, false, true).first == 256);
    CHECK(gte(r.image(), size, 4, false, true).first == 1);
    auto want = a;
    std::memset(want.data() + 4096, 0, GRAIN - 4096);
    CHECK(bytes_at(r.image(), 128 * 512, GRAIN) == want);
    CHECK(bytes_at(r.image(), 256 * 512, GRAIN) == std::vector<std::uint8_t>(GRAIN, 0));
    // An allocated grain becomes a zeroed grain too; qemu leaks its data grain.
    REQUIRE(r.w->write_zeroes(0, GRAIN, false) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    CHECK(gte(r.image(), size, 0, false, true) == std::make_pair(1u, 1u));
    CHECK(bytes_at(r.image(), 128 * 512, GRAIN) == want);
    // Writing into a zeroed grain allocates a new one.
    Run r2(1u << 20, {{"zeroed_grain", "on"}});
    REQUIRE(r2.w->write_zeroes(0, GRAIN, false) == Status::Ok);
    REQUIRE(r2.w->write(512, a.data(), 512) == Status::Ok);
    REQUIRE(r2.w->finish() == Status::Ok);
    CHECK(gte(r2.image(), size, 0, false, true).first == 128);
}

TEST_CASE("write: without zeroed_grain write_zeroes allocates grains of zeros") {
    Run r(1u << 20, {});
    REQUIRE(r.w->write_zeroes(GRAIN, 2 * GRAIN, true) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    CHECK(gte(r.image(), 1u << 20, 1).first == 128);
    CHECK(gte(r.image(), 1u << 20, 2).first == 256);
    CHECK(r.image().length() == 384 * 512);
}

TEST_CASE("write: streamOptimized grains are zlib streams behind grain markers") {
    const std::uint64_t size = 4 * GRAIN + 1024;
    Run r(size, {{"subformat", "streamOptimized"}});
    REQUIRE(r.status == Status::Ok);
    const auto a = pattern(GRAIN, 7);
    REQUIRE(r.w->write(GRAIN, a.data(), a.size()) == Status::Ok);
    // Pieces of grain 3 gather into one grain; the last, 1 KiB grain goes out whole.
    const auto b = pattern(4096, 8);
    REQUIRE(r.w->write(3 * GRAIN + 8192, b.data(), b.size()) == Status::Ok);
    REQUIRE(r.w->write(3 * GRAIN + 32768, b.data(), b.size()) == Status::Ok);
    const auto c = pattern(1024, 9);
    REQUIRE(r.w->write(4 * GRAIN, c.data(), c.size()) == Status::Ok);
    // A grain already written cannot be written again (qemu's -EIO).
    CHECK(r.w->write(GRAIN, a.data(), a.size()) == Status::IoError);
    REQUIRE(r.w->finish() == Status::Ok);

    std::vector<std::uint8_t> g3(GRAIN, 0);
    std::memcpy(g3.data() + 8192, b.data(), b.size());
    std::memcpy(g3.data() + 32768, b.data(), b.size());
    const std::vector<std::pair<std::uint64_t, std::vector<std::uint8_t>>> grains = {{1, a}, {3, g3}, {4, c}};
    std::uint64_t expect_at = 128;
    std::uint64_t end = 0;
    for (const auto& [g, data] : grains) {
        const std::uint32_t at = gte(r.image(), size, g, true).first;
        CHECK(gte(r.image(), size, g, true).second == at);
        CHECK(at == expect_at);
        const auto marker = bytes_at(r.image(), at * 512ull, 12);
        CHECK(vmdk::load_le64(marker.data()) == g * GRAIN / 512);
        const std::uint32_t n = vmdk::load_le32(marker.data() + 8);
        const auto packed = bytes_at(r.image(), at * 512ull + 12, n);
        std::vector<std::uint8_t> out(GRAIN);
        uLongf out_len = out.size();
        REQUIRE(uncompress(out.data(), &out_len, packed.data(), n) == Z_OK);
        out.resize(out_len);
        CHECK(out == data);
        // compress(): deflateInit's level 6, window 15, memLevel 8.
        std::vector<std::uint8_t> ref(compressBound(data.size()));
        uLongf ref_len = ref.size();
        REQUIRE(compress(ref.data(), &ref_len, data.data(), data.size()) == Z_OK);
        ref.resize(ref_len);
        CHECK(packed == ref);
        expect_at = (at * 512ull + 12 + n + 511) / 512;
        end = at * 512ull + GRAIN; // each grain was zero-filled whole before its data went in
    }
    CHECK(gte(r.image(), size, 0, true).first == 0);
    CHECK(gte(r.image(), size, 2, true).first == 0);
    CHECK(r.image().length() == end);
}

TEST_CASE("write: streamOptimized compressed writes must be whole grains; finish rounds the file up") {
    Run r(2 * GRAIN, {{"subformat", "streamOptimized"}});
    const auto a = pattern(GRAIN, 10);
    CHECK(r.w->write_compressed(512, a.data(), 4096) == Status::Invalid);
    // Incompressible data: the grain marker and data run past the zero-filled grain, unaligned.
    std::vector<std::uint8_t> noise(GRAIN);
    std::uint32_t x = 12345;
    for (auto& v : noise) {
        x = x * 1103515245 + 12345;
        v = static_cast<std::uint8_t>(x >> 24);
    }
    REQUIRE(r.w->write_compressed(GRAIN, noise.data(), noise.size()) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    const std::uint32_t n = le32_at(r.image(), 128 * 512 + 8);
    CHECK(n > GRAIN);
    CHECK(r.image().length() == (128 * 512 + 12 + n + 511) / 512 * 512);
}

TEST_CASE("write: -c on monolithicSparse stores data uncompressed") {
    Run r(1u << 20, {});
    const auto a = pattern(GRAIN, 11);
    REQUIRE(r.w->write_compressed(0, a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    CHECK(bytes_at(r.image(), 128 * 512, GRAIN) == a);
}

TEST_CASE("write: twoGbMaxExtentSparse splits a write at the 2 GiB extent boundary") {
    const std::uint64_t size = (2ull << 30) + 3 * GRAIN;
    Run r(size, {{"subformat", "twoGbMaxExtentSparse"}});
    REQUIRE(r.status == Status::Ok);
    REQUIRE(r.target.files().size() == 2);
    const auto a = pattern(2 * GRAIN, 12);
    REQUIRE(r.w->write((2ull << 30) - GRAIN, a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    const vmdk::SparseLayout l0 = vmdk::sparse_layout(2ull << 30, false, false);
    const vmdk::SparseLayout l1 = vmdk::sparse_layout(3 * GRAIN, false, false);
    CHECK(gte(r.file(0), 2ull << 30, 32767).first == l0.header.grain_offset);
    CHECK(gte(r.file(1), 3 * GRAIN, 0).first == l1.header.grain_offset);
    CHECK(bytes_at(r.file(0), l0.header.grain_offset * 512, GRAIN) ==
          std::vector<std::uint8_t>(a.begin(), a.begin() + GRAIN));
    CHECK(bytes_at(r.file(1), l1.header.grain_offset * 512, GRAIN) ==
          std::vector<std::uint8_t>(a.begin() + GRAIN, a.end()));
    // The descriptor file was rewritten with the new CID and padded to a sector, as qemu leaves it.
    CHECK(r.image().length() == 512);
    CHECK(descriptor(r.image(), 0).find("\nCID=8070605\n") != std::string::npos);
}

TEST_CASE("write: monolithicFlat writes in place and reports no cluster size") {
    Run r(3 * GRAIN, {{"subformat", "monolithicFlat"}});
    REQUIRE(r.status == Status::Ok);
    CHECK(r.w->cluster_size() == 0);
    const auto a = pattern(GRAIN + 512, 13);
    REQUIRE(r.w->write(GRAIN - 512, a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->write_zeroes(GRAIN, 512, true) == Status::Ok);
    REQUIRE(r.w->finish() == Status::Ok);
    auto want = a;
    std::memset(want.data() + 512, 0, 512);
    CHECK(bytes_at(r.file(0), GRAIN - 512, a.size()) == want);
    CHECK(r.file(0).length() == 3 * GRAIN);
}

TEST_CASE("write: the grain table cache writes back evicted tables and reloads them") {
    // 24 tables (32 MiB each): more than the cache holds.
    const std::uint64_t size = 24ull * 32 << 20;
    Run r(size, {});
    const auto a = pattern(512, 14);
    for (std::uint64_t t = 0; t < 24; ++t)
        REQUIRE(r.w->write(t * (32u << 20), a.data(), a.size()) == Status::Ok);
    REQUIRE(r.w->write(512, a.data(), a.size()) == Status::Ok); // table 0 again, same grain
    REQUIRE(r.w->write(GRAIN, a.data(), a.size()) == Status::Ok); // table 0, a new grain
    REQUIRE(r.w->finish() == Status::Ok);
    const vmdk::SparseLayout l = vmdk::sparse_layout(size, false, false);
    for (std::uint64_t t = 0; t < 24; ++t)
        CHECK(gte(r.image(), size, t * 512).first == l.header.grain_offset + t * 128);
    CHECK(gte(r.image(), size, 1).first == l.header.grain_offset + 24 * 128);
}

TEST_CASE("write: streamOptimized without a deflate codec is refused before creating anything") {
    hosted::MemoryTarget t;
    hosted::BudgetAllocator alloc(8u << 20);
    const guest::CreateOption o{"subformat", "streamOptimized"};
    const std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {};
    guest::CreateRequest req{};
    req.size = 1u << 20;
    req.options = &o;
    req.option_count = 1;
    req.file_name = "s.vmdk";
    req.random = random;
    req.allocator = &alloc;
    guest::ImageWriter* w = nullptr;
    CHECK(vmdk::create_writer(req, t, &w) == Status::Unsupported);
    CHECK(t.image_output().length() == 0);
}

TEST_CASE("rewrite_cid: qemu's vmdk_write_cid, leftovers and all") {
    std::vector<std::uint8_t> win(10240, 0), tmp(10240);
    const std::string text = "# Disk DescriptorFile\nversion=1\nCID=fedcba98\nparentCID=ffffffff\ncreateType=\"x\"\n";
    std::memcpy(win.data(), text.data(), text.size());
    REQUIRE(vmdk::rewrite_cid(win.data(), tmp.data(), 0x12345));
    const std::string want = "# Disk DescriptorFile\nversion=1\nCID=12345\nparentCID=ffffffff\ncreateType=\"x\"\n";
    CHECK(std::string(reinterpret_cast<const char*>(win.data())) == want);
    // Three characters shorter: the NUL, then the old text's last two bytes stay.
    CHECK(win[want.size()] == 0);
    CHECK(std::string(reinterpret_cast<const char*>(win.data()) + want.size() + 1, 2) == "\"\n");
    CHECK(win[want.size() + 3] == 0);
    // Longer again.
    REQUIRE(vmdk::rewrite_cid(win.data(), tmp.data(), 0xdeadbeef));
    CHECK(std::string(reinterpret_cast<const char*>(win.data())).find("\nCID=deadbeef\nparentCID=ffffffff\n") !=
          std::string::npos);
    std::vector<std::uint8_t> bad(10240, 0);
    std::memcpy(bad.data(), "CID=1\n", 6);
    CHECK_FALSE(vmdk::rewrite_cid(bad.data(), tmp.data(), 1));
    CHECK(vmdk::cid_write_bytes(0, 337) == 512);
    CHECK(vmdk::cid_write_bytes(0, 826) == 1024);
    CHECK(vmdk::cid_write_bytes(0, 1u << 20) == 10240);
    CHECK(vmdk::cid_write_bytes(512, 65536) == 10240);
}

TEST_CASE("write: over a backing file, a new grain must be written whole before finish") {
    hosted::CreateParams bp;
    bp.size = 1u << 20;
    bp.file_name = "base.vmdk";
    hosted::MemoryTarget bt;
    REQUIRE(hosted::run_create(&vmdk::create, bp, bt) == Status::Ok);
    hosted::MemoryDevice base(bt.image_output().bytes());
    const auto a = pattern(4096, 15);
    {
        // Covered in two requests (data, then zeros): qemu's copy from the backing is overwritten.
        Run r(1u << 20, {}, &base, 1u << 20);
        REQUIRE(r.status == Status::Ok);
        REQUIRE(r.w->write(0, a.data(), a.size()) == Status::Ok);
        REQUIRE(r.w->write_zeroes(4096, GRAIN - 4096, true) == Status::Ok);
        CHECK(r.w->finish() == Status::Ok);
        CHECK(descriptor(r.image(), 512).find("parentFileNameHint=\"base.vmdk\"") != std::string::npos);
    }
    {
        // Left half-written: the rest would be the backing file's bytes, which the writer lacks.
        Run r(1u << 20, {}, &base, 1u << 20);
        REQUIRE(r.w->write(GRAIN, a.data(), a.size()) == Status::Ok);
        CHECK(r.w->finish() == Status::Unsupported);
    }
    {
        // The disk's last grain past a backing file that ends with the disk: zeros there.
        Run r((1u << 20) + 1024, {}, &base, 1u << 20);
        REQUIRE(r.w->write(1u << 20, a.data(), 1024) == Status::Ok);
        CHECK(r.w->finish() == Status::Ok);
        // A larger backing file would have data there.
        Run r2((1u << 20) + 1024, {}, &base, 2u << 20);
        REQUIRE(r2.w->write(1u << 20, a.data(), 1024) == Status::Ok);
        CHECK(r2.w->finish() == Status::Unsupported);
    }
    {
        // streamOptimized keeps what qemu read from the backing file after each grain.
        Run r(1u << 20, {{"subformat", "streamOptimized"}}, &base, 1u << 20);
        const auto g = pattern(GRAIN, 16);
        CHECK(r.w->write(0, g.data(), g.size()) == Status::Unsupported);
    }
}
