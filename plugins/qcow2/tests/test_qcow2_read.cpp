// Unit tests of the qcow2 reader on synthetic images: each L2 entry kind, extended L2 subclusters,
// compressed clusters (zlib and zstd, bombs and short streams), the data file, snapshots, and
// hostile tables (unaligned, past the end of the file, invalid bitmaps), with exact results.
#include <doctest/doctest.h>

#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_read.h"
#include "qcow2_read_compressed.h"
#include "qcow2_read_map.h"
#include "qcow2_test_image.h"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Extent;
using guest::Status;
using qcow2::test::append_be;
using qcow2::test::append_str;
using qcow2::test::put_be;

namespace {

constexpr std::uint64_t COPIED = 1ull << 63;
constexpr std::uint64_t COMPRESSED = 1ull << 62;

// A qcow2 image laid out cluster by cluster: header, refcount table, L1 table, then whatever the
// test adds (L2 tables, data). Refcounts are not read by the reader and stay empty.
struct Image {
    std::uint32_t cb;
    std::uint32_t version;
    bool extl2;
    std::uint64_t size;
    std::vector<std::uint8_t> b;
    std::uint64_t l1_off;
    std::uint32_t l1_size;
    std::uint64_t incompat = 0;
    std::uint64_t autoclear = 0;
    std::uint32_t crypt = 0;
    std::uint8_t compression = 0;
    std::uint32_t nb_snapshots = 0;
    std::uint64_t snapshots_offset = 0;

    Image(std::uint32_t cluster_bits, std::uint64_t disk_size, std::uint32_t ver = 3, bool ext = false)
        : cb(cluster_bits), version(ver), extl2(ext), size(disk_size) {
        const std::uint64_t span = std::uint64_t{1} << (cb + cb - (ext ? 4 : 3));
        l1_size = static_cast<std::uint32_t>((size + span - 1) / span);
        b.assign(2 * cs(), 0);
        l1_off = alloc((l1_size * 8 + cs() - 1) / cs());
        if (ext)
            incompat |= 16;
    }
    std::uint64_t cs() const { return std::uint64_t{1} << cb; }
    std::uint64_t alloc(std::uint64_t clusters = 1) {
        const std::uint64_t off = b.size();
        b.resize(off + std::max<std::uint64_t>(clusters, 1) * cs(), 0);
        return off;
    }
    std::uint64_t entry_bytes() const { return extl2 ? 16 : 8; }
    void l1(std::uint32_t i, std::uint64_t v) { put_be(b, l1_off + 8 * i, v, 8); }
    void l2(std::uint64_t table, std::uint64_t i, std::uint64_t v, std::uint64_t bitmap = 0) {
        put_be(b, table + entry_bytes() * i, v, 8);
        if (extl2)
            put_be(b, table + entry_bytes() * i + 8, bitmap, 8);
    }
    // A data cluster filled with `fill`.
    std::uint64_t data(std::uint8_t fill) {
        const std::uint64_t off = alloc();
        std::memset(b.data() + off, fill, cs());
        return off;
    }
    std::vector<std::uint8_t> bytes() {
        std::vector<std::uint8_t> out = b;
        put_be(out, 0, 0x514649fb, 4);
        put_be(out, 4, version, 4);
        put_be(out, 20, cb, 4);
        put_be(out, 24, size, 8);
        put_be(out, 32, crypt, 4);
        put_be(out, 36, l1_size, 4);
        put_be(out, 40, l1_off, 8);
        put_be(out, 48, cs(), 8); // refcount table: cluster 1
        put_be(out, 56, 1, 4);
        put_be(out, 60, nb_snapshots, 4);
        put_be(out, 64, snapshots_offset, 8);
        if (version == 3) {
            put_be(out, 72, incompat | (compression ? 8 : 0), 8);
            put_be(out, 88, autoclear, 8);
            put_be(out, 96, 4, 4);
            put_be(out, 100, 112, 4);
            out[104] = compression;
        }
        return out;
    }
};

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t len) override { text.assign(t, len); }
};

// An opened reader over an in-memory image, with its devices and allocator kept alive.
struct Opened {
    hosted::MemoryDevice dev;
    std::vector<std::unique_ptr<hosted::MemoryDevice>> files;
    std::vector<guest::BlockDevice*> file_ptrs;
    hosted::BudgetAllocator alloc;
    Reasons reasons;
    guest::Codecs codecs = hosted::host_codecs();
    guest::ImageReader* reader = nullptr;
    Status status = Status::Invalid;

    explicit Opened(std::vector<std::uint8_t> img, std::vector<std::vector<std::uint8_t>> extra = {},
                    const char* snapshot = nullptr, std::size_t budget = 64u << 20, bool zstd = true)
        : dev(std::move(img)), alloc(budget) {
        for (auto& f : extra) {
            files.push_back(std::make_unique<hosted::MemoryDevice>(std::move(f)));
            file_ptrs.push_back(files.back().get());
        }
        if (!zstd)
            codecs.zstd_decompress = nullptr;
        guest::OpenRequest req{&dev, file_ptrs.data(), static_cast<std::uint32_t>(file_ptrs.size()), &alloc, &codecs,
                               &reasons, snapshot, 100000};
        status = qcow2::open(req, &reader);
    }
    ~Opened() {
        if (reader != nullptr)
            reader->close();
    }
    Extent status_at(std::uint64_t off, std::uint64_t len = 0) {
        Extent e{};
        if (len == 0)
            len = reader->virtual_size() - off;
        REQUIRE(reader->status(off, len, &e) == Status::Ok);
        return e;
    }
    std::vector<std::uint8_t> read(std::uint64_t off, std::size_t len, Status want = Status::Ok) {
        std::vector<std::uint8_t> buf(len, 0xee);
        CHECK(reader->read(off, buf.data(), len) == want);
        return buf;
    }
};

bool all(const std::vector<std::uint8_t>& v, std::uint8_t x, std::size_t from = 0, std::size_t to = SIZE_MAX) {
    to = std::min(to, v.size());
    for (std::size_t i = from; i < to; ++i)
        if (v[i] != x)
            return false;
    return true;
}

std::vector<std::uint8_t> raw_deflate(const std::vector<std::uint8_t>& in) {
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    std::vector<std::uint8_t> out(in.size() + 1024);
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

std::vector<std::uint8_t> zstd_frame(const std::vector<std::uint8_t>& in) {
    std::vector<std::uint8_t> out(ZSTD_compressBound(in.size()));
    const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
    REQUIRE(!ZSTD_isError(n));
    out.resize(n);
    return out;
}

// Stores `payload` at a new place in the image (sector-padded) and returns the L2 descriptor.
std::uint64_t put_compressed(Image& img, const std::vector<std::uint8_t>& payload, std::uint64_t shift = 0) {
    const std::uint64_t off = img.alloc((payload.size() + shift + img.cs() - 1) / img.cs()) + shift;
    std::memcpy(img.b.data() + off, payload.data(), payload.size());
    const std::uint64_t sectors = (off % 512 + payload.size() + 511) / 512; // sectors touched
    const std::uint32_t csize_shift = 62 - (img.cb - 8);
    return COMPRESSED | ((sectors - 1) << csize_shift) | off;
}

std::vector<std::uint8_t> pattern(std::size_t n, std::uint32_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::uint8_t>((i * 7 + seed) ^ (i >> 9));
    return v;
}

} // namespace

TEST_CASE("qcow2 read: standard L2 entries") {
    Image img(16, 4u << 20);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2 | COPIED);
    const std::uint64_t d0 = img.data(0x11);
    const std::uint64_t d1 = img.data(0x22); // contiguous with d0
    img.l2(l2, 0, d0 | COPIED);
    img.l2(l2, 1, d1 | COPIED);
    img.l2(l2, 3, 1);                        // zero, plain
    const std::uint64_t d4 = img.data(0x44);
    img.l2(l2, 4, d4 | COPIED | 1);          // zero, preallocated
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    CHECK(o.reader->virtual_size() == 4u << 20);

    Extent e = o.status_at(0);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 0x20000);
    CHECK(e.flags == guest::EXTENT_OFFSET_VALID);
    CHECK(e.device == 0);
    CHECK(e.offset == d0);
    e = o.status_at(0x8000, 0x100);
    CHECK(e.length == 0x100);
    CHECK(e.offset == d0 + 0x8000);
    e = o.status_at(0x20000);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == 0x10000);
    e = o.status_at(0x30000);
    CHECK(e.allocation == Allocation::Zero);
    CHECK(e.flags == 0);
    CHECK(e.length == 0x10000);
    e = o.status_at(0x40000);
    CHECK(e.allocation == Allocation::Zero);
    CHECK(e.flags == guest::EXTENT_OFFSET_VALID);
    CHECK(e.offset == d4);
    e = o.status_at(0x50000);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == (4u << 20) - 0x50000);

    auto buf = o.read(0xff00, 0x50100);
    CHECK(all(buf, 0x11, 0, 0x100));
    CHECK(all(buf, 0x22, 0x100, 0x10100));
    CHECK(all(buf, 0, 0x10100)); // unallocated, zero, zero-alloc (whose cluster holds 0x44)
}

TEST_CASE("qcow2 read: v2 images refuse the zero flag with qemu's message") {
    Image img(16, 1u << 20, 2);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    img.l2(l2, 2, 1);
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    Extent e{};
    CHECK(o.reader->status(0, 1u << 20, &e) == Status::Ok); // the unallocated run stops before it
    CHECK(e.length == 0x20000);
    CHECK(o.reader->status(0x20000, 0x10000, &e) == Status::Corrupt);
    CHECK(o.reasons.text == "Zero cluster entry found in pre-v3 image (L2 offset: 0x30000, L2 index: 0x2)");
    // Corrupt concerns that entry only (qemu's non-fatal corruption on a read-only image): the
    // valid range before it still answers.
    CHECK(o.reader->status(0, 0x10000, &e) == Status::Ok);
    std::vector<std::uint8_t> buf(512);
    CHECK(o.reader->read(0, buf.data(), buf.size()) == Status::Ok);
    CHECK(o.reader->read(0x20000, buf.data(), buf.size()) == Status::Corrupt);
}

TEST_CASE("qcow2 read: unaligned and out-of-file offsets are Corrupt") {
    Image img(12, 1u << 20);
    const std::uint64_t l2 = img.alloc();
    const std::uint64_t d = img.data(1);
    SUBCASE("L2 table unaligned") {
        img.l1(0, (l2 + 0x200) | COPIED);
        Opened o(img.bytes());
        Extent e{};
        CHECK(o.reader->status(0, 4096, &e) == Status::Corrupt);
        CHECK(o.reasons.text == "L2 table offset 0x3200 unaligned (L1 index: 0)");
    }
    SUBCASE("data cluster unaligned") {
        img.l1(0, l2);
        img.l2(l2, 1, (d + 0x400) | COPIED);
        Opened o(img.bytes());
        std::vector<std::uint8_t> buf(8192);
        CHECK(o.reader->read(0, buf.data(), buf.size()) == Status::Corrupt);
        CHECK(o.reasons.text == "Cluster allocation offset 0x4400 unaligned (L2 offset: 0x3000, L2 index: 0x1)");
    }
    SUBCASE("L2 table past the end of the file") {
        img.l1(0, 0x100000);
        Opened o(img.bytes());
        Extent e{};
        CHECK(o.reader->status(0, 4096, &e) == Status::Corrupt);
        CHECK(o.reasons.text == "L2 table offset 0x100000 is past the end of the image file (L1 index: 0)");
    }
    SUBCASE("data cluster past the end of the file") {
        img.l1(0, l2);
        img.l2(l2, 0, 0x200000);
        Opened o(img.bytes());
        Extent e{};
        CHECK(o.reader->status(0, 4096, &e) == Status::Corrupt);
        CHECK(o.reasons.text ==
              "Data cluster offset 0x200000 is past the end of the image file (L2 offset: 0x3000, L2 index: 0)");
    }
    SUBCASE("the last cluster may be partly in the file, the rest reads zeros") {
        img.l1(0, l2);
        img.l2(l2, 0, d);
        auto bytes = img.bytes();
        bytes.resize(d + 100);
        Opened o(bytes);
        REQUIRE(o.status == Status::Ok);
        auto buf = o.read(0, 4096);
        CHECK(all(buf, 1, 0, 100));
        CHECK(all(buf, 0, 100));
    }
    SUBCASE("L1 table past the end of the file") {
        auto bytes = img.bytes();
        put_be(bytes, 40, 0x100000, 8);
        Opened o(bytes);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reasons.text == "L1 table at offset 0x100000 is past the end of the image file");
    }
}

TEST_CASE("qcow2 read: extended L2 subclusters") {
    Image img(14, 1u << 20, 3, true); // 16 KiB clusters, 512-byte subclusters
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2 | COPIED);
    const std::uint64_t d = img.data(0x5a);
    // subclusters 0-1 allocated, 2-3 zero, 4 unallocated (data cluster), 5..31 allocated
    const std::uint64_t alloc = 0xffffffe3ull;
    const std::uint64_t zero = 0x0000000cull;
    img.l2(l2, 0, d | COPIED, (zero << 32) | alloc);
    img.l2(l2, 1, 0, zero << 32); // unallocated cluster with zero subclusters 2-3
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    Extent e = o.status_at(0);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 1024);
    CHECK(e.offset == d);
    e = o.status_at(1024);
    CHECK(e.allocation == Allocation::Zero);
    CHECK(e.flags == guest::EXTENT_OFFSET_VALID);
    CHECK(e.length == 1024);
    e = o.status_at(2048);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == 512);
    e = o.status_at(2560);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 16384 - 2560);
    CHECK(e.offset == d + 2560);
    e = o.status_at(16384);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == 1024);
    e = o.status_at(16384 + 1024);
    CHECK(e.allocation == Allocation::Zero);
    CHECK(e.flags == 0);
    CHECK(e.length == 1024);
    auto buf = o.read(0, 16384);
    CHECK(all(buf, 0x5a, 0, 1024));
    CHECK(all(buf, 0, 1024, 2560));
    CHECK(all(buf, 0x5a, 2560));
}

TEST_CASE("qcow2 read: invalid subcluster bitmaps") {
    Image img(14, 1u << 20, 3, true);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    const std::uint64_t d = img.data(1);
    SUBCASE("allocated and zero at once") { img.l2(l2, 0, d, (1ull << 32) | 1); }
    SUBCASE("allocation bits on an unallocated cluster") { img.l2(l2, 0, 0, 1); }
    Opened o(img.bytes());
    Extent e{};
    CHECK(o.reader->status(0, 512, &e) == Status::Corrupt);
    CHECK(o.reasons.text == "Invalid cluster entry found  (L2 offset: 0xc000, L2 index: 0)");
}

TEST_CASE("qcow2 read: runs continue across L2 tables, empty L1 ranges are one extent") {
    Image img(9, 1u << 30); // 512-byte clusters: an L2 table maps 32 KiB; 32768 L1 entries
    const std::uint64_t t0 = img.alloc();
    const std::uint64_t t1 = img.alloc();
    img.l1(0, t0);
    img.l1(1, t1);
    const std::uint64_t d = img.alloc(4);
    img.l2(t0, 62, d);
    img.l2(t0, 63, d + 512);
    img.l2(t1, 0, d + 1024);
    img.l2(t1, 1, d + 1536);
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    Extent e = o.status_at(62 * 512);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 2048);
    CHECK(e.offset == d);
    e = o.status_at(32768 + 1024);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == (1u << 30) - 32768 - 1024);
    // A whole-disk walk takes a handful of calls.
    std::uint64_t calls = 0;
    for (std::uint64_t off = 0; off < o.reader->virtual_size(); ++calls)
        off += o.status_at(off).length;
    CHECK(calls <= 4);
}

TEST_CASE("qcow2 read: a walk reads each L2 table in groups of slices, not slice by slice") {
    Image img(16, 1u << 30); // 64 KiB clusters: one L2 table (16 slices of 4 KiB) maps 512 MiB
    const std::uint64_t t0 = img.alloc();
    img.l1(0, t0);
    const std::uint64_t d = img.alloc(1);
    for (std::uint32_t i = 0; i < 8192; i += 2)
        img.l2(t0, i, d); // every other cluster: a run per entry, so the walk visits every slice
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    const std::uint64_t before = o.dev.reads();
    for (std::uint64_t off = 0; off < o.reader->virtual_size();)
        off += o.status_at(off).length;
    // 16 slices in groups of QCOW2_L2_READ_SLICES: two reads (an L1 window read at most besides).
    CHECK(o.dev.reads() - before <= 16 / qcow2::QCOW2_L2_READ_SLICES + 1);
}

TEST_CASE("qcow2 read: zlib compressed clusters") {
    Image img(12, 1u << 20);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    const auto content = pattern(4096, 3);
    img.l2(l2, 0, put_compressed(img, raw_deflate(content), 100));
    // A bomb: 64 KiB of zeros; qemu accepts it and keeps the first cluster.
    img.l2(l2, 1, put_compressed(img, raw_deflate(std::vector<std::uint8_t>(65536, 7))));
    // Too short: 1000 bytes only.
    img.l2(l2, 2, put_compressed(img, raw_deflate(std::vector<std::uint8_t>(1000, 9))));
    // Garbage.
    img.l2(l2, 3, put_compressed(img, std::vector<std::uint8_t>(300, 0xff)));
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    Extent e = o.status_at(0);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.flags == guest::EXTENT_COMPRESSED);
    CHECK(e.length == 4 * 4096); // compressed clusters merge: no offset to keep contiguous
    CHECK(o.read(0, 4096) == content);
    CHECK(o.read(100, 50) == std::vector<std::uint8_t>(content.begin() + 100, content.begin() + 150));
    CHECK(all(o.read(4096, 4096), 7));
    std::vector<std::uint8_t> buf(4096);
    CHECK(o.reader->read(8192, buf.data(), 4096) == Status::Corrupt);
    CHECK(o.reasons.text == "Compressed cluster at offset 0x6000 size 0x200 does not decompress to one cluster");
    Opened garbage(img.bytes()); // a fresh reader: Corrupt is terminal
    CHECK(garbage.reader->read(12288, buf.data(), 4096) == Status::Corrupt);
    CHECK(garbage.reasons.text.find("does not decompress to one cluster") != std::string::npos);
}

TEST_CASE("qcow2 read: zstd compressed clusters") {
    Image img(12, 1u << 20);
    img.compression = 1;
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    const auto content = pattern(4096, 5);
    img.l2(l2, 0, put_compressed(img, zstd_frame(content))); // sector padding follows the frame
    // Two frames making one cluster, with a skippable frame between them.
    auto two = zstd_frame(std::vector<std::uint8_t>(content.begin(), content.begin() + 1000));
    const std::vector<std::uint8_t> skip = {0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb};
    two.insert(two.end(), skip.begin(), skip.end());
    const auto rest = zstd_frame(std::vector<std::uint8_t>(content.begin() + 1000, content.end()));
    two.insert(two.end(), rest.begin(), rest.end());
    img.l2(l2, 1, put_compressed(img, two));
    // A frame of more than a cluster, and one of less.
    img.l2(l2, 2, put_compressed(img, zstd_frame(std::vector<std::uint8_t>(8192, 1))));
    img.l2(l2, 3, put_compressed(img, zstd_frame(std::vector<std::uint8_t>(100, 1))));
    Opened o(img.bytes());
    REQUIRE(o.status == Status::Ok);
    CHECK(o.read(0, 4096) == content);
    CHECK(o.read(4096, 4096) == content);
    std::vector<std::uint8_t> buf(4096);
    CHECK(o.reader->read(8192, buf.data(), 4096) == Status::Corrupt);
    Opened short_frame(img.bytes()); // a fresh reader: Corrupt is terminal
    CHECK(short_frame.reader->read(12288, buf.data(), 4096) == Status::Corrupt);
    CHECK(short_frame.reasons.text.find("does not decompress to one cluster") != std::string::npos);

    Opened no_zstd(img.bytes(), {}, nullptr, 64u << 20, false);
    REQUIRE(no_zstd.status == Status::Ok);
    CHECK(no_zstd.reader->read(0, buf.data(), 4096) == Status::Unsupported);
    CHECK(no_zstd.reasons.text == "zstd decompression is not available");
}

TEST_CASE("qcow2 read: zstd frame lengths") {
    bool skippable = false;
    const auto f = zstd_frame(pattern(3000, 1));
    std::vector<std::uint8_t> padded = f;
    padded.resize(f.size() + 300, 0);
    CHECK(qcow2::zstd_frame_length(padded.data(), padded.size(), &skippable) == f.size());
    CHECK_FALSE(skippable);
    CHECK(qcow2::zstd_frame_length(f.data(), f.size() - 1, &skippable) == 0);
    const std::uint8_t junk[16] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(qcow2::zstd_frame_length(junk, sizeof junk, &skippable) == 0);
    // A block header claiming more than is there.
    const std::uint8_t big[12] = {0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0xff, 0xff, 0xff};
    CHECK(qcow2::zstd_frame_length(big, sizeof big, &skippable) == 0);
}

TEST_CASE("qcow2 read: compressed descriptors past the end of the file") {
    Image img(12, 1u << 20);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    const std::uint32_t csize_shift = 62 - (12 - 8);
    img.l2(l2, 0, COMPRESSED | (15ull << csize_shift) | 0x100000);
    Opened o(img.bytes());
    std::vector<std::uint8_t> buf(4096);
    CHECK(o.reader->read(0, buf.data(), 4096) == Status::Corrupt);
    CHECK(o.reasons.text ==
          "Compressed cluster at offset 0x100000 size 0x2000 exceeds the end of the file by one cluster or more");
    std::uint64_t off = 0, size = 0;
    qcow2::qcow2_compressed_extent(COMPRESSED | (15ull << csize_shift) | 0x1234, 12, &off, &size);
    CHECK(off == 0x1234);
    CHECK(size == 16 * 512 - 0x34);
}

TEST_CASE("qcow2 read: external data file") {
    Image img(12, 1u << 20);
    img.incompat |= 4;
    // The data_file extension names the file (its name is not used by the reader).
    std::vector<std::uint8_t> ext;
    append_be(ext, 0x44415441, 4);
    append_be(ext, 4, 4);
    append_str(ext, "d.rw");
    append_be(ext, 0, 8);
    std::copy(ext.begin(), ext.end(), img.b.begin() + 112);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    std::vector<std::uint8_t> data(64 << 10, 0);
    std::memset(data.data(), 0x31, 4096);
    std::memset(data.data() + 8192, 0x32, 4096);
    img.l2(l2, 0, COPIED);            // offset 0 with the copied flag: allocated in the data file
    img.l2(l2, 2, 8192 | COPIED);
    SUBCASE("reads from the data file") {
        Opened o(img.bytes(), {data});
        REQUIRE(o.status == Status::Ok);
        Extent e = o.status_at(0);
        CHECK(e.allocation == Allocation::Data);
        CHECK(e.device == 1);
        CHECK(e.offset == 0);
        CHECK(e.length == 4096);
        CHECK(o.status_at(4096).allocation == Allocation::Unallocated);
        auto buf = o.read(0, 12288);
        CHECK(all(buf, 0x31, 0, 4096));
        CHECK(all(buf, 0, 4096, 8192));
        CHECK(all(buf, 0x32, 8192));
    }
    SUBCASE("host offset must equal the guest offset") {
        img.l2(l2, 3, 8192 | COPIED);
        Opened o(img.bytes(), {data});
        Extent e{};
        CHECK(o.reader->status(12288, 4096, &e) == Status::Corrupt);
        CHECK(o.reasons.text ==
              "External data file host cluster offset 0x2000 does not match guest cluster offset: 0x3000, L2 index: 0x3)");
    }
    SUBCASE("compressed clusters are not allowed") {
        img.l2(l2, 3, COMPRESSED | 0x1000);
        Opened o(img.bytes(), {data});
        Extent e{};
        CHECK(o.reader->status(12288, 4096, &e) == Status::Corrupt);
        CHECK(o.reasons.text.rfind("Compressed cluster entry found in image with external data file", 0) == 0);
    }
    SUBCASE("the data file is required") {
        Opened o(img.bytes());
        CHECK(o.status == Status::Invalid);
        CHECK(o.reasons.text == "'data-file' is required for this image");
    }
}

namespace {

std::vector<std::uint8_t> snapshot_entry(std::uint64_t l1_off, std::uint32_t l1_size, const std::string& id,
                                         const std::string& name) {
    std::vector<std::uint8_t> b;
    append_be(b, l1_off, 8);
    append_be(b, l1_size, 4);
    append_be(b, id.size(), 2);
    append_be(b, name.size(), 2);
    append_be(b, 0, 4); // date
    append_be(b, 0, 4);
    append_be(b, 0, 8); // vm clock
    append_be(b, 0, 4); // vm state size
    append_be(b, 0, 4); // no extra data
    append_str(b, id);
    append_str(b, name);
    qcow2::test::pad8(b);
    return b;
}

// An image whose active L1 maps cluster 0 to 0xaa, with snapshots whose L1 tables map it to 0x01, 0x02.
Image snapshot_image(std::uint32_t big_l1 = 0) {
    Image img(12, 1u << 20);
    std::uint8_t fill = 0xaa;
    std::uint64_t l1s[3] = {img.l1_off, 0, 0};
    for (int i = 1; i < 3; ++i)
        l1s[i] = img.alloc();
    for (int i = 0; i < 3; ++i) {
        const std::uint64_t l2 = img.alloc();
        put_be(img.b, l1s[i], l2, 8);
        img.l2(l2, 0, img.data(i == 0 ? fill : static_cast<std::uint8_t>(i)));
    }
    std::vector<std::uint8_t> table;
    for (auto& e : {snapshot_entry(l1s[1], big_l1 ? big_l1 : 1, "1", "2"), snapshot_entry(l1s[2], 1, "2", "x"),
                    snapshot_entry(l1s[1], 1, "3", "x")})
        table.insert(table.end(), e.begin(), e.end());
    img.snapshots_offset = img.alloc();
    std::copy(table.begin(), table.end(), img.b.begin() + img.snapshots_offset);
    img.nb_snapshots = 3;
    return img;
}

} // namespace

TEST_CASE("qcow2 read: snapshots by id, then by name") {
    Image img = snapshot_image();
    auto first_byte = [&](const char* snap) {
        Opened o(img.bytes(), {}, snap);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.reader->virtual_size() == 1u << 20);
        return o.read(0, 1)[0];
    };
    CHECK(first_byte(nullptr) == 0xaa);
    CHECK(first_byte("1") == 1);
    CHECK(first_byte("2") == 2); // the id "2" wins over the name "2" of the first snapshot
    CHECK(first_byte("x") == 2); // the first snapshot named "x"
    CHECK(first_byte("3") == 1);
    Opened missing(img.bytes(), {}, "nosuch");
    CHECK(missing.status == Status::Invalid);
    CHECK(missing.reasons.text == "Failed to load snapshot: Can't find snapshot");
    Opened prefix(img.bytes(), {}, "xx");
    CHECK(prefix.status == Status::Invalid);
}

TEST_CASE("qcow2 read: a snapshot's L1 table is bounded") {
    Image img = snapshot_image(0x1000000); // 128 MiB of L1
    Opened o(img.bytes(), {}, "1");
    CHECK(o.status == Status::TooLarge);
    CHECK(o.reasons.text == "Failed to load snapshot: Snapshot L1 table too large");
}

TEST_CASE("qcow2 read: encrypted images are refused") {
    Image img(12, 1u << 20);
    img.crypt = 1;
    Opened o(img.bytes());
    CHECK(o.status == Status::Unsupported);
    CHECK(o.reasons.text == "Parameter 'encrypt.key-secret' is required for cipher");
}

TEST_CASE("qcow2 read: hostile headers are refused at open") {
    Image img(12, 1u << 20);
    auto bytes = img.bytes();
    SUBCASE("not qcow2") {
        bytes[0] = 0;
        Opened o(bytes);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reasons.text == "Image is not in qcow2 format");
    }
    SUBCASE("huge L1") {
        put_be(bytes, 36, 0xffffffff, 4);
        Opened o(bytes);
        CHECK(o.status == Status::TooLarge);
        CHECK(o.reasons.text == "Active L1 table too large");
    }
    SUBCASE("version 4") {
        put_be(bytes, 4, 4, 4);
        Opened o(bytes);
        CHECK(o.status == Status::Unsupported);
        CHECK(o.reasons.text == "Unsupported qcow2 version 4");
    }
    SUBCASE("unknown incompatible bits") {
        put_be(bytes, 72, 0x1040, 8);
        Opened o(bytes);
        CHECK(o.status == Status::Unsupported);
        CHECK(o.reasons.text == "Unsupported qcow2 feature(s): Unknown incompatible feature: 1040");
    }
    SUBCASE("empty file") {
        Opened o(std::vector<std::uint8_t>{});
        CHECK(o.status == Status::Corrupt);
    }
}

TEST_CASE("qcow2 read: memory stays bounded with 2 MiB clusters") {
    Image img(21, 64u << 20);
    const std::uint64_t l2 = img.alloc();
    img.l1(0, l2);
    const auto content = pattern(2u << 20, 9);
    img.l2(l2, 0, put_compressed(img, raw_deflate(content)));
    img.l2(l2, 1, img.data(3));
    Opened o(img.bytes(), {}, nullptr, 8u << 20);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.read(0, 2u << 20) == content);
    CHECK(all(o.read(2u << 20, 4096), 3));
    // L1 window, 32 L2 slices, 3 clusters for compressed data, and the reader itself.
    CHECK(o.alloc.peak() <= (32u << 10) + 32 * 4096 + 3 * (2u << 20) + 4096);
}

TEST_CASE("qcow2 read: region rule") {
    CHECK(qcow2::qcow2_region_in_file(1000, 0, 1000, 512));
    CHECK(qcow2::qcow2_region_in_file(1000, 511, 1000, 512)); // 511 bytes past the end
    CHECK_FALSE(qcow2::qcow2_region_in_file(1000, 512, 1000, 512));
    CHECK_FALSE(qcow2::qcow2_region_in_file(1000, ~0ull, 2, 512));
}

TEST_CASE("qcow2 read: a snapshot's smaller L1 table leaves the rest of the disk unallocated") {
    Image img(9, 1u << 20); // an L1 entry maps 32 KiB; the active table has 32 entries
    const std::uint64_t snap_l1 = img.alloc();
    const std::uint64_t l2 = img.alloc();
    put_be(img.b, snap_l1, l2, 8);
    img.l2(l2, 63, img.data(0x77)); // the last cluster the snapshot's one L1 entry maps
    const auto entry = snapshot_entry(snap_l1, 1, "1", "old");
    img.snapshots_offset = img.alloc();
    std::copy(entry.begin(), entry.end(), img.b.begin() + img.snapshots_offset);
    img.nb_snapshots = 1;
    Opened o(img.bytes(), {}, "old");
    REQUIRE(o.status == Status::Ok);
    CHECK(o.reader->virtual_size() == 1u << 20); // the image's size, as qemu-img convert -l gives
    Extent e = o.status_at(32768 - 512);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 512);
    e = o.status_at(32768);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == (1u << 20) - 32768);
    CHECK(all(o.read(32768 - 512, 1024), 0x77, 0, 512));
    CHECK(all(o.read(32768, 4096), 0));
}
