// Tests of the VMDK reader on hand-built images: every structure, exact runs and bytes, and hostile
// tables, markers and sizes.
#include "vmdk_test_images.h"

#include "hosted_read.h"
#include "hosted_support.h"
#include "vmdk_read.h"

#include <doctest/doctest.h>

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using vmdk_test::Bytes;
using vmdk_test::le;

namespace {

constexpr std::uint64_t GRAIN = 65536;

// Counts what is outstanding, so tests can see that close() and failed opens give everything back.
struct CountingAllocator final : guest::Allocator {
    std::size_t budget;
    std::size_t used = 0, peak = 0;
    int blocks = 0;
    explicit CountingAllocator(std::size_t b) : budget(b) {}
    void* allocate(std::size_t size, std::size_t align) override {
        if (size > budget - used)
            return nullptr;
        void* p = std::aligned_alloc(align < 8 ? 8 : align, (size + align - 1) / align * align);
        used += size;
        peak = used > peak ? used : peak;
        ++blocks;
        return p;
    }
    void deallocate(void* p, std::size_t size) override {
        std::free(p);
        used -= size;
        --blocks;
    }
};

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override {
        if (text.empty())
            text.assign(t, n);
    }
};

struct Run {
    std::uint64_t start, length;
    Allocation allocation;
    std::uint32_t flags, device;
    std::uint64_t offset;
    bool operator==(const Run&) const = default;
};

[[maybe_unused]] std::ostream& operator<<(std::ostream& os, const Run& r) {
    return os << (std::to_string(r.start) + "+" + std::to_string(r.length) + " a" +
            std::to_string(static_cast<int>(r.allocation)) + " f" + std::to_string(r.flags) + " d" +
            std::to_string(r.device) + " @" + std::to_string(r.offset));
}

struct Opened {
    std::unique_ptr<hosted::MemoryDevice> image;
    std::vector<std::unique_ptr<hosted::MemoryDevice>> files;
    std::vector<guest::BlockDevice*> ptrs;
    CountingAllocator alloc;
    Reasons reasons;
    Status status = Status::Invalid;
    guest::ImageReader* reader = nullptr;
    int calls = 0; // status() calls made by runs()

    Opened(const Bytes& img, const std::vector<Bytes>& fs, std::size_t budget, const char* snapshot)
        : image(std::make_unique<hosted::MemoryDevice>(img)), alloc(budget) {
        for (const auto& f : fs) {
            files.push_back(std::make_unique<hosted::MemoryDevice>(f));
            ptrs.push_back(files.back().get());
        }
        guest::OpenRequest req{image.get(), ptrs.data(), static_cast<std::uint32_t>(ptrs.size()), &alloc,
                               &hosted::host_codecs(), &reasons, snapshot, 100000};
        status = vmdk::open(req, &reader);
    }
    ~Opened() {
        if (reader)
            reader->close();
    }
    // status() over the whole disk, merged as the hosted dump merges.
    std::vector<Run> runs() {
        std::vector<Run> out;
        const std::uint64_t size = reader->virtual_size();
        for (std::uint64_t off = 0; off < size;) {
            guest::Extent e{};
            REQUIRE(reader->status(off, size - off, &e) == Status::Ok);
            ++calls;
            REQUIRE(e.length > 0);
            REQUIRE(e.length <= size - off);
            Run r{off, e.length, e.allocation, e.flags, e.device, e.offset};
            if (!(e.flags & guest::EXTENT_OFFSET_VALID))
                r.device = 0, r.offset = 0;
            if (!out.empty()) {
                Run& b = out.back();
                if (b.allocation == r.allocation && b.flags == r.flags && b.device == r.device &&
                    (!(r.flags & guest::EXTENT_OFFSET_VALID) || b.offset + b.length == r.offset)) {
                    b.length += r.length;
                    off += e.length;
                    continue;
                }
            }
            out.push_back(r);
            off += e.length;
        }
        return out;
    }
    Bytes bytes(std::uint64_t off, std::size_t n) {
        Bytes b(n, 0xee);
        REQUIRE(reader->read(off, b.data(), n) == Status::Ok);
        return b;
    }
};

std::unique_ptr<Opened> open(const Bytes& img, const std::vector<Bytes>& files = {}, std::size_t budget = 8 << 20,
                             const char* snapshot = nullptr) {
    return std::make_unique<Opened>(img, files, budget, snapshot);
}

// A monolithicSparse image: capacity in sectors, grain directory at sector 21, embedded
// descriptor at sector 1; grain tables and grains are appended as they are set.
struct SparseImage {
    Bytes b;
    explicit SparseImage(std::uint64_t capacity, std::uint32_t flags = 3, std::uint16_t compress = 0,
                         std::uint32_t version = 1) {
        vmdk_test::Sparse o;
        o.capacity = capacity;
        o.version = version;
        o.compress = compress;
        const std::uint64_t entries = (capacity + 128 * 512 - 1) / (128 * 512);
        o.grain_offset = (21 + (4 * entries + 511) / 512 + 127) / 128 * 128;
        o.embedded = vmdk_test::descriptor("monolithicSparse", "RW " + std::to_string(capacity) + " SPARSE \"m.vmdk\"");
        b = vmdk_test::sparse(o);
        le(b, 8, flags, 4);
    }
    std::uint64_t append(std::size_t n, std::uint8_t fill) {
        const std::uint64_t at = (b.size() + 511) / 512 * 512;
        b.resize(at, 0);
        b.resize(at + n, fill);
        return at;
    }
    void gte(std::uint64_t grain, std::uint32_t value) {
        const std::uint64_t l1 = grain / 512;
        std::uint64_t gt = 0;
        for (int i = 0; i < 4; ++i)
            gt |= std::uint64_t{b[21 * 512 + 4 * l1 + i]} << (8 * i);
        if (gt == 0) {
            gt = append(2048, 0) / 512;
            le(b, 21 * 512 + 4 * l1, gt, 4);
        }
        le(b, gt * 512 + 4 * (grain % 512), value, 4);
    }
    // A data grain appended at the end of the file, filled with `fill`; returns its sector.
    std::uint32_t grain(std::uint64_t index, std::uint8_t fill) {
        gte(index, 0); // the table first, so a grain follows its table
        const std::uint64_t at = append(GRAIN, fill);
        gte(index, static_cast<std::uint32_t>(at / 512));
        return static_cast<std::uint32_t>(at / 512);
    }
};

Bytes zlib(const Bytes& in) {
    uLongf n = compressBound(in.size());
    Bytes out(n);
    REQUIRE(compress(out.data(), &n, in.data(), in.size()) == Z_OK);
    out.resize(n);
    return out;
}

// A compressed grain {lba, size, data} appended at the end of the image.
void compressed_grain(SparseImage& s, std::uint64_t index, const Bytes& data, std::int64_t size_field = -1) {
    s.gte(index, 0);
    const std::uint64_t at = (s.b.size() + 511) / 512 * 512;
    const Bytes z = zlib(data);
    s.b.resize(at + 12 + z.size(), 0);
    le(s.b, at, index * 128, 8);
    le(s.b, at + 8, size_field < 0 ? z.size() : static_cast<std::uint64_t>(size_field), 4);
    std::memcpy(s.b.data() + at + 12, z.data(), z.size());
    s.b.resize((s.b.size() + 511) / 512 * 512, 0);
    s.gte(index, static_cast<std::uint32_t>(at / 512));
}

constexpr std::uint32_t OFFSET = guest::EXTENT_OFFSET_VALID;

} // namespace

TEST_CASE("read: monolithicSparse grains, unallocated ranges and contiguous runs") {
    SparseImage s(64 * 128); // 64 grains, one grain table
    const std::uint32_t a = s.grain(0, 0x11);
    const std::uint32_t b = s.grain(5, 0x22);
    s.grain(6, 0x33); // right after grain 5 in the file: one run
    auto o = open(s.b);
    REQUIRE(o->status == Status::Ok);
    CHECK(o->reader->virtual_size() == 64 * GRAIN);
    const std::vector<Run> want = {{0, GRAIN, Allocation::Data, OFFSET, 0, a * 512ull},
                                   {GRAIN, 4 * GRAIN, Allocation::Unallocated, 0, 0, 0},
                                   {5 * GRAIN, 2 * GRAIN, Allocation::Data, OFFSET, 0, b * 512ull},
                                   {7 * GRAIN, 57 * GRAIN, Allocation::Unallocated, 0, 0, 0}};
    CHECK(o->runs() == want);
    // A read across data, a hole and two grains.
    const Bytes got = o->bytes(GRAIN - 100, 200);
    CHECK(got == [] { Bytes x(200, 0); std::fill(x.begin(), x.begin() + 100, 0x11); return x; }());
    const Bytes two = o->bytes(6 * GRAIN - 1, 2);
    CHECK(two == Bytes{0x22, 0x33});
    // status() asked for less answers with less; an offset inside a grain keeps its place.
    guest::Extent e{};
    REQUIRE(o->reader->status(5 * GRAIN + 4096, 10, &e) == Status::Ok);
    CHECK(e.length == 10);
    CHECK(e.offset == b * 512ull + 4096);
    CHECK(o->reader->status(64 * GRAIN, 1, &e) == Status::Invalid);
    CHECK(o->reader->status(0, 64 * GRAIN + 1, &e) == Status::Invalid);
}

TEST_CASE("read: zeroed grains (GTE 1) only with VMDK4_FLAG_ZERO_GRAIN") {
    SparseImage z(16 * 128, 3 | 4, 0, 2);
    z.gte(2, 1);
    z.gte(3, 1);
    auto o = open(z.b);
    REQUIRE(o->status == Status::Ok);
    const std::vector<Run> want = {{0, 2 * GRAIN, Allocation::Unallocated, 0, 0, 0},
                                   {2 * GRAIN, 2 * GRAIN, Allocation::Zero, 0, 0, 0},
                                   {4 * GRAIN, 12 * GRAIN, Allocation::Unallocated, 0, 0, 0}};
    CHECK(o->runs() == want);
    CHECK(o->bytes(2 * GRAIN, 8) == Bytes(8, 0));

    SparseImage d(16 * 128); // no flag: GTE 1 is data at sector 1 (the descriptor), as in qemu
    d.gte(2, 1);
    auto p = open(d.b);
    REQUIRE(p->status == Status::Ok);
    guest::Extent e{};
    REQUIRE(p->reader->status(2 * GRAIN, GRAIN, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.offset == 512);
    CHECK(p->bytes(2 * GRAIN, 21) == vmdk_test::bytes("# Disk DescriptorFile"));
}

TEST_CASE("read: a 1 GiB unallocated image answers in one status call; many tables through the cache") {
    SparseImage s(2u << 20); // 1 GiB, 32 directory entries, all 0
    auto o = open(s.b);
    REQUIRE(o->status == Status::Ok);
    CHECK(o->runs() == std::vector<Run>{{0, 1ull << 30, Allocation::Unallocated, 0, 0, 0}});
    CHECK(o->calls == 1);

    // 40 tables (more than the cache holds), one data grain in each, read twice.
    SparseImage m(40u * 512 * 128);
    for (std::uint32_t t = 0; t < 40; ++t)
        m.grain(t * 512 + 7, static_cast<std::uint8_t>(t + 1));
    auto p = open(m.b);
    REQUIRE(p->status == Status::Ok);
    for (int pass = 0; pass < 2; ++pass)
        for (std::uint32_t t = 0; t < 40; ++t)
            CHECK(p->bytes((t * 512 + 7) * GRAIN + 3, 1)[0] == t + 1);
    CHECK(p->runs().size() == 81);
}

TEST_CASE("read: memory stays bounded with a 256 KiB grain directory") {
    SparseImage s(std::uint64_t{1} << 32); // 2 TiB: 65536 directory entries
    auto o = open(s.b, {}, 160 << 10);
    REQUIRE(o->status == Status::Ok);
    CHECK(o->alloc.peak < (160u << 10));
    guest::Extent e{};
    REQUIRE(o->reader->status(0, o->reader->virtual_size(), &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == o->reader->virtual_size());
}

TEST_CASE("read: streamOptimized grains are inflated, bounded by the grain size") {
    SparseImage s(8 * 128, 3 | (1u << 16) | (1u << 17), 1, 3);
    Bytes g0(GRAIN), g3(GRAIN);
    for (std::size_t i = 0; i < GRAIN; ++i)
        g0[i] = static_cast<std::uint8_t>(i * 7), g3[i] = static_cast<std::uint8_t>(i >> 8);
    compressed_grain(s, 0, g0);
    compressed_grain(s, 3, g3);
    compressed_grain(s, 4, g3);
    auto o = open(s.b);
    REQUIRE(o->status == Status::Ok);
    const std::uint32_t C = guest::EXTENT_COMPRESSED;
    const std::vector<Run> want = {{0, GRAIN, Allocation::Data, C, 0, 0},
                                   {GRAIN, 2 * GRAIN, Allocation::Unallocated, 0, 0, 0},
                                   {3 * GRAIN, 2 * GRAIN, Allocation::Data, C, 0, 0},
                                   {5 * GRAIN, 3 * GRAIN, Allocation::Unallocated, 0, 0, 0}};
    CHECK(o->runs() == want);
    CHECK(o->bytes(0, GRAIN) == g0);
    const Bytes across = o->bytes(4 * GRAIN - 10, 20);
    CHECK(Bytes(across.begin(), across.begin() + 10) == Bytes(g3.end() - 10, g3.end()));
    CHECK(Bytes(across.begin() + 10, across.end()) == Bytes(g3.begin(), g3.begin() + 10));

    SUBCASE("a bomb stops at the grain size") {
        SparseImage b(8 * 128, 3 | (1u << 16) | (1u << 17), 1, 3);
        compressed_grain(b, 1, Bytes(16 * GRAIN, 0));
        auto p = open(b.b);
        REQUIRE(p->status == Status::Ok);
        Bytes buf(GRAIN);
        CHECK(p->reader->read(GRAIN, buf.data(), buf.size()) == Status::Corrupt);
        CHECK(p->reasons.text == "Compressed grain inflates past the grain size");
    }
    SUBCASE("marker sizes 0 and past two grains, garbage data, a short grain") {
        for (std::int64_t size : {std::int64_t{0}, std::int64_t{2 * GRAIN}}) {
            SparseImage b(8 * 128, 3 | (1u << 16) | (1u << 17), 1, 3);
            compressed_grain(b, 0, g0, size);
            auto p = open(b.b);
            REQUIRE(p->status == Status::Ok);
            Bytes buf(512);
            CHECK(p->reader->read(0, buf.data(), buf.size()) == Status::Corrupt);
            CHECK(p->reasons.text == "Invalid compressed grain size");
        }
        SparseImage c(8 * 128, 3 | (1u << 16) | (1u << 17), 1, 3);
        compressed_grain(c, 0, g0);
        std::uint64_t marker = 0;
        for (int i = 0; i < 4; ++i)
            marker |= std::uint64_t{c.b[21 * 512 + i]} << (8 * i); // the grain table's sector
        marker = (marker * 512 + 2048 + 511) / 512 * 512;         // the grain follows its table
        for (int i = 0; i < 40; ++i)
            c.b[marker + 12 + 2 + i] ^= 0x5a;
        auto p = open(c.b);
        REQUIRE(p->status == Status::Ok);
        Bytes buf(512);
        CHECK(p->reader->read(0, buf.data(), buf.size()) == Status::Corrupt);
        SparseImage d(8 * 128, 3 | (1u << 16) | (1u << 17), 1, 3);
        compressed_grain(d, 0, Bytes(1000, 9)); // holds 1000 bytes, the grain is 64 KiB
        auto q = open(d.b);
        REQUIRE(q->status == Status::Ok);
        CHECK(q->bytes(0, 1000) == Bytes(1000, 9));
        Bytes big(2000);
        CHECK(q->reader->read(0, big.data(), big.size()) == Status::Corrupt);
    }
}

TEST_CASE("read: hostile sparse tables are refused with a reason") {
    SUBCASE("grain table past EOF") {
        SparseImage s(64 * 128);
        le(s.b, 21 * 512, 0x10000000, 4);
        auto o = open(s.b);
        REQUIRE(o->status == Status::Ok);
        guest::Extent e{};
        CHECK(o->reader->status(0, GRAIN, &e) == Status::Corrupt);
        CHECK(o->reasons.text == "Grain table lies past the end of the extent file");
        Bytes buf(512);
        CHECK(o->reader->read(0, buf.data(), 512) == Status::Corrupt);
        // Corrupt is terminal: even a range the table does not cover is refused now.
        CHECK(o->reader->status(63 * GRAIN, GRAIN, &e) == Status::Corrupt);
    }
    SUBCASE("grain past EOF") {
        SparseImage s(64 * 128);
        s.gte(3, 0xfffffff0);
        auto o = open(s.b);
        REQUIRE(o->status == Status::Ok);
        guest::Extent e{};
        CHECK(o->reader->status(3 * GRAIN, GRAIN, &e) == Status::Corrupt);
        CHECK(o->reasons.text == "Grain lies past the end of the extent file");
        // Every later call gives the reason again (a read made ahead may have had it dropped).
        o->reasons.text.clear();
        Bytes later(512);
        CHECK(o->reader->read(0, later.data(), 512) == Status::Corrupt);
        CHECK(o->reasons.text == "Grain lies past the end of the extent file");
        CHECK(o->reader->reads_ahead_safe());
        // A run of data stops before such a grain instead of reporting it.
        s.grain(2, 1);
        s.gte(3, static_cast<std::uint32_t>(s.b.size() / 512));
        auto p = open(s.b);
        REQUIRE(p->reader->status(2 * GRAIN, 2 * GRAIN, &e) == Status::Ok);
        CHECK(e.length == GRAIN);
    }
    SUBCASE("grain directory past EOF") {
        SparseImage s(64 * 128);
        le(s.b, 56, 1u << 20, 8);
        auto o = open(s.b);
        CHECK(o->status == Status::Corrupt);
        CHECK(o->reasons.text == "Grain directory lies past the end of the file");
        CHECK(o->alloc.blocks == 0);
    }
    SUBCASE("a directory whose 32-bit size wrapped fails where it is too small, as qemu's reads do") {
        SparseImage s(64 * 128);
        le(s.b, 12, (std::uint64_t{1} << 32) + 8, 8); // capacity: 2^32 + 8 sectors
        le(s.b, 20, 1, 8);                             // 1-sector grains
        le(s.b, 44, 1, 4);                             // 1 entry per table: l1 = 2^32 + 8 -> 8
        auto o = open(s.b);
        REQUIRE(o->status == Status::Ok);
        guest::Extent e{};
        CHECK(o->reader->status(0, 512, &e) == Status::Ok);
        CHECK(o->reader->status(8 * 512, 512, &e) == Status::Corrupt);
        CHECK(o->reasons.text == "Grain directory too small for the extent");
    }
    SUBCASE("huge directories and grains, qemu's words") {
        SparseImage s(64 * 128);
        le(s.b, 12, (std::uint64_t{1} << 33) + (1u << 26), 8);
        le(s.b, 20, 1, 8);
        le(s.b, 44, 1, 4); // 2^33 + 2^26 entries, 2^26 in qemu's 32 bits: over 32 Mi
        auto l = open(s.b);
        CHECK(l->status == Status::TooLarge);
        CHECK(l->reasons.text == "L1 size too big");
        SparseImage g(64 * 128);
        le(g.b, 20, 0x400000, 8);
        auto o = open(g.b);
        CHECK(o->status == Status::TooLarge);
        CHECK(o->reasons.text == "Invalid granularity, image may be corrupt");
        SparseImage t(64 * 128);
        le(t.b, 44, 513, 4);
        auto p = open(t.b);
        CHECK(p->status == Status::Corrupt);
        CHECK(p->reasons.text == "L2 table size too big");
        SparseImage v(64 * 128);
        le(v.b, 4, 4, 4);
        auto q = open(v.b);
        CHECK(q->status == Status::Unsupported);
        CHECK(q->reasons.text == "Unsupported VMDK version 4");
        SparseImage c(64 * 128, 3 | (1u << 16) | (1u << 17), 1, 3);
        le(c.b, 20, 8192, 8); // 4 MiB compressed grains
        le(c.b, 64, 8192, 8);
        c.b.resize(8192 * 512);
        auto r = open(c.b);
        CHECK(r->status == Status::TooLarge);
    }
    SUBCASE("streamOptimized without a valid footer") {
        SparseImage s(64 * 128);
        le(s.b, 56, ~std::uint64_t{0}, 8);
        auto o = open(s.b);
        CHECK(o->status == Status::Corrupt);
        CHECK(o->reasons.text == "Invalid footer");
    }
    SUBCASE("no CID, a snapshot, too small, allocator exhausted") {
        Bytes nocid = SparseImage(64 * 128).b;
        std::memset(nocid.data() + 512, 0, 512 * 20);
        auto n = open(nocid);
        CHECK(n->status == Status::Corrupt);
        CHECK(n->reasons.text == "Could not open '{image}': Invalid argument");
        auto snap = open(SparseImage(64 * 128).b, {}, 8 << 20, "s1");
        CHECK(snap->status == Status::Unsupported);
        CHECK(open(Bytes{'K', 'D'})->status == Status::Corrupt);
        // Budgets that run out at different steps of the open (the extent table is sized by the
        // files given, so a single-extent image needs little).
        for (std::size_t budget : {0u, 100u, 1000u, 3000u}) {
            auto o = open(SparseImage(64 * 128).b, {}, budget);
            CHECK(o->status == Status::NoMemory);
            CHECK(o->alloc.blocks == 0);
        }
    }
}

TEST_CASE("read: descriptor extents in order, flat offsets, ZERO lines skipped, holes as zeros") {
    Bytes a(1 << 20);
    for (std::size_t i = 0; i < a.size(); ++i)
        a[i] = static_cast<std::uint8_t>(i * 13 + 1);
    SparseImage s(4 * 128);
    const std::uint64_t g1 = s.grain(1, 0x77);
    const std::string desc = vmdk_test::descriptor(
        "monolithicFlat", "RW 2048 FLAT \"a.bin\" 0\nRW 4096 ZERO\nRW 1024 FLAT \"a.bin\" 1536\n"
                          "RW 512 SPARSE \"s.vmdk\"\nRW 8 VMFS \"a.bin\"\n");
    auto o = open(vmdk_test::bytes(desc), {a, a, s.b, a});
    REQUIRE(o->status == Status::Ok);
    const std::uint64_t M = 1 << 20;
    CHECK(o->reader->virtual_size() == M + M / 2 + 4 * GRAIN + 4096);
    const auto runs = o->runs();
    const std::vector<Run> want = {
        {0, M, Allocation::Data, OFFSET, 1, 0},
        {M, M / 4, Allocation::Data, OFFSET, 2, 768 * 1024},
        {M + M / 4, M / 4, Allocation::Zero, OFFSET, 2, M}, // past the end of a.bin
        {M + M / 2, GRAIN, Allocation::Unallocated, 0, 0, 0},
        {M + M / 2 + GRAIN, GRAIN, Allocation::Data, OFFSET, 3, g1 * 512},
        {M + M / 2 + 2 * GRAIN, 2 * GRAIN, Allocation::Unallocated, 0, 0, 0},
        {M + M / 2 + 4 * GRAIN, 4096, Allocation::Data, OFFSET, 4, 0}};
    CHECK(runs == want);
    const Bytes x = o->bytes(M - 4, 8); // across the first two extents
    CHECK(x == Bytes{a[M - 4], a[M - 3], a[M - 2], a[M - 1], a[768 * 1024], a[768 * 1024 + 1], a[768 * 1024 + 2],
                     a[768 * 1024 + 3]});
    CHECK(o->bytes(M + M / 4 + 5, 3) == Bytes(3, 0));
    CHECK(o->bytes(M + M / 2 + GRAIN, 2) == Bytes(2, 0x77));

    SUBCASE("the wrong number of files, a missing file") {
        auto p = open(vmdk_test::bytes(desc), {a, a});
        CHECK(p->status == Status::Invalid);
        CHECK(p->alloc.blocks == 0);
    }
    SUBCASE("a sparse extent that is not one") {
        auto p = open(vmdk_test::bytes(desc), {a, a, a, a});
        CHECK(p->status == Status::Corrupt);
        CHECK(p->reasons.text == "Image not in VMDK format");
    }
    SUBCASE("huge flat offsets and SESPARSE") {
        auto p = open(vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", "RW 8 FLAT \"a\" 999999999999999\n")),
                      {a});
        CHECK(p->status == Status::TooLarge);
        auto q = open(vmdk_test::bytes(vmdk_test::descriptor("seSparse", "RW 8 SESPARSE \"a\"\n")), {a});
        CHECK(q->status == Status::Corrupt); // seSparse is read now; `a` has no seSparse header
        CHECK(q->reasons.text.rfind("Bad const header magic: 0x", 0) == 0);
        auto r = open(vmdk_test::bytes(vmdk_test::descriptor("streamOptimized", "RW 8 FLAT \"a\" 0\n")), {a});
        CHECK(r->status == Status::Unsupported);
        CHECK(r->reasons.text == "Unsupported image type 'streamOptimized'");
    }
}

TEST_CASE("read: a KDMV header pointing at a descriptor reads its extents") {
    vmdk_test::Sparse h;
    h.capacity = 0;
    h.embedded = vmdk_test::descriptor("monolithicFlat", "RW 16 FLAT \"f.bin\" 0\n");
    Bytes f(16 * 512, 0x42);
    auto o = open(vmdk_test::sparse(h), {f});
    REQUIRE(o->status == Status::Ok);
    CHECK(o->runs() == std::vector<Run>{{0, 8192, Allocation::Data, OFFSET, 1, 0}});
    CHECK(o->bytes(100, 4) == Bytes(4, 0x42));
}

TEST_CASE("read: a child reads through its parent only while its parentCID is the parent's CID") {
    SparseImage parent(16 * 128); // CID=12345678
    SparseImage child(16 * 128);
    const std::string stale = "parentCID=ffffffff", fresh = "parentCID=12345678";
    const auto at = std::search(child.b.begin(), child.b.end(), stale.begin(), stale.end());
    REQUIRE(at != child.b.end());
    std::copy(fresh.begin(), fresh.end(), at);
    auto p = open(parent.b);
    auto c = open(child.b);
    REQUIRE(p->status == Status::Ok);
    REQUIRE(c->status == Status::Ok);
    std::uint32_t cid = 0;
    REQUIRE(p->reader->content_id(vmdk::VMDK_CID_KIND, &cid));
    CHECK(cid == 0x12345678u);
    CHECK_FALSE(p->reader->content_id(vmdk::VMDK_CID_KIND + 1, &cid)); // another format's kind
    CHECK(c->reader->backing_valid(*p->reader));
    // The parent written since (a new CID), or not a vmdk at all: refused, as qemu's vmdk_is_cid_valid.
    CHECK_FALSE(p->reader->backing_valid(*c->reader)); // the parent's parentCID is ffffffff
    struct Raw final : guest::ImageReader {
        std::uint64_t virtual_size() const override { return 16 * 128 * 512; }
        Status status(std::uint64_t, std::uint64_t, guest::Extent*) override { return Status::Invalid; }
        Status read(std::uint64_t, void*, std::size_t) override { return Status::Invalid; }
        void close() override {}
    } raw;
    CHECK_FALSE(c->reader->backing_valid(raw));
}
