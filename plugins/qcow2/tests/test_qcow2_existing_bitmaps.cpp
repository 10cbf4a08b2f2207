// The existing-image writer and persistent bitmaps (qcow2_bitmap_dirty.h): every write and zero
// write sets the bits of the enabled bitmaps that cover it (a table entry without a data cluster
// gets a new one, counted), disabled and IN_USE bitmaps keep theirs, and no data lands on a
// bitmap's directory, table or data. Bits against qemu-img: tests/commit, tests/rebase.
#include <doctest/doctest.h>

#include "existing_writer_fixture.h"

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using instar::guest::Status;

namespace {

constexpr std::uint64_t CS = 65536;
constexpr std::uint64_t DISK = 4u << 20;
constexpr std::uint64_t OFFSET_MASK = 0x00fffffffffffe00ull;

using qcow2::test::be64;
using qcow2::test::Opened;
using qcow2::test::put64;

// One bitmap of the fixture: its name, granularity bits, flags, and its data cluster's first byte
// (no data cluster when 0).
struct Spec {
    const char* name;
    std::uint8_t gran_bits;
    std::uint32_t flags;
    std::uint8_t first_byte;
};
constexpr std::uint32_t AUTO = 2, IN_USE = 1;

// A 4 MiB image (64 KiB clusters, instar's create) with 0xab in cluster 1, and the bitmaps of
// `specs`: the directory, one table cluster each and their data clusters appended (refcounts are
// not set: the writer never reads them for these clusters), the extension and autoclear bit added.
struct Fixture {
    std::vector<std::uint8_t> img;
    std::vector<std::uint64_t> tables;
    std::uint64_t dir = 0;

    explicit Fixture(const std::vector<Spec>& specs) {
        img = qcow2::test::made_image(DISK, nullptr, [](guest::ImageWriter& w) {
            const std::vector<std::uint8_t> data(CS, 0xab);
            REQUIRE(w.write(CS, data.data(), data.size()) == Status::Ok);
        });
        img.resize((img.size() + CS - 1) / CS * CS, 0);
        // Directory.
        dir = img.size();
        img.resize(img.size() + CS, 0);
        std::uint64_t at = dir;
        for (const Spec& s : specs) {
            const std::uint64_t table = img.size();
            img.resize(img.size() + CS, 0);
            tables.push_back(table);
            if (s.first_byte != 0) {
                const std::uint64_t cluster = img.size();
                img.resize(img.size() + CS, 0);
                img[cluster] = s.first_byte;
                put64(img, table, cluster);
            }
            put64(img, at, table);
            qcow2::store_be32(img.data() + at + 8, 1); // table size
            qcow2::store_be32(img.data() + at + 12, s.flags);
            img[at + 16] = 1; // dirty tracking
            img[at + 17] = s.gran_bits;
            const std::size_t n = std::strlen(s.name);
            qcow2::store_be16(img.data() + at + 18, static_cast<std::uint16_t>(n));
            std::memcpy(img.data() + at + 24, s.name, n);
            at += (24 + n + 7) & ~std::size_t{7};
        }
        // The extension, before the end marker of the header extensions.
        std::uint64_t ext = qcow2::load_be32(img.data() + 100);
        while (qcow2::load_be32(img.data() + ext) != 0)
            ext += 8 + ((qcow2::load_be32(img.data() + ext + 4) + 7) & ~std::uint64_t{7});
        qcow2::store_be32(img.data() + ext, 0x23852875);
        qcow2::store_be32(img.data() + ext + 4, 24);
        qcow2::store_be32(img.data() + ext + 8, static_cast<std::uint32_t>(specs.size()));
        put64(img, ext + 16, at - dir);
        put64(img, ext + 24, dir);
        std::memset(img.data() + ext + 32, 0, 8);
        put64(img, 88, be64(img, 88) | 1); // autoclear: bitmaps
    }
};

// Bit `bit` of the bitmap whose table is at `table`, read from the image's bytes.
bool bit_set(const std::vector<std::uint8_t>& img, std::uint64_t table, std::uint64_t bit) {
    const std::uint64_t e = be64(img, table + bit / (CS * 8) * 8);
    if ((e & OFFSET_MASK) == 0)
        return (e & 1) != 0;
    const std::uint64_t in = bit % (CS * 8);
    return (img[(e & OFFSET_MASK) + in / 8] >> (in % 8) & 1) != 0;
}

std::vector<std::uint64_t> set_bits(const std::vector<std::uint8_t>& img, std::uint64_t table, std::uint64_t bits) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t i = 0; i < bits; ++i)
        if (bit_set(img, table, i))
            out.push_back(i);
    return out;
}

} // namespace

TEST_CASE("qcow2 existing writer: writes set the bits of the enabled bitmaps only") {
    // b4k: enabled, 4 KiB granularity, no data cluster yet; b64k: enabled with bit 0 set already;
    // off: disabled; used: IN_USE (inconsistent).
    const Fixture f({{"b4k", 12, AUTO, 0}, {"b64k", 16, AUTO, 0x01}, {"off", 16, 0, 0}, {"used", 16, AUTO | IN_USE, 0}});
    Opened o(f.img);
    REQUIRE(o.status == Status::Ok);
    const std::vector<std::uint8_t> d(4096, 0x5c);
    REQUIRE(o.w->write(CS + 512, d.data(), d.size()) == Status::Ok);   // bytes 0x10200..0x111ff
    REQUIRE(o.w->write_zeroes(2 * CS, CS, true) == Status::Ok);         // a whole cluster
    REQUIRE(o.w->write(DISK - 512, d.data(), 512) == Status::Ok);       // the last sector
    REQUIRE(o.w->finish() == Status::Ok);
    const auto img = o.bytes();
    std::vector<std::uint64_t> want4k{16, 17};
    for (std::uint64_t b = 32; b < 48; ++b)
        want4k.push_back(b);
    want4k.push_back(DISK / 4096 - 1);
    CHECK(set_bits(img, f.tables[0], DISK / 4096) == want4k);
    CHECK(set_bits(img, f.tables[1], DISK / CS) == std::vector<std::uint64_t>{0, 1, 2, DISK / CS - 1});
    CHECK(set_bits(img, f.tables[2], DISK / CS).empty());
    CHECK(set_bits(img, f.tables[3], DISK / CS).empty());
    CHECK(be64(img, f.tables[2]) == 0); // no cluster given to a bitmap that records nothing
    CHECK(be64(img, f.tables[3]) == 0);
    // b4k's new data cluster lies past the old end of the file, counted: refcount 1 (16-bit
    // entries in the block the refcount table's first entry names).
    const std::uint64_t fresh = be64(img, f.tables[0]) & OFFSET_MASK;
    CHECK(fresh >= f.img.size());
    const std::uint64_t block = be64(img, be64(img, 48));
    CHECK(qcow2::load_be16(img.data() + block + 2 * (fresh / CS)) == 1);
}

TEST_CASE("qcow2 existing writer: no data lands on a bitmap, hostile bitmaps are refused") {
    const Fixture f({{"b", 16, AUTO, 0x01}});
    const std::uint64_t l1_off = be64(f.img, 40);
    const std::uint64_t l2_off = be64(f.img, l1_off) & OFFSET_MASK;
    const std::vector<std::uint8_t> d(512, 0x77);
    const std::uint64_t data_cluster = be64(f.img, f.tables[0]) & OFFSET_MASK;
    for (const std::uint64_t target : {f.dir, f.tables[0], data_cluster}) {
        auto onto = f.img; // cluster 1's entry names a bitmap's directory, table or data
        put64(onto, l2_off + 8, target | (std::uint64_t{1} << 63));
        Opened o(onto);
        REQUIRE(o.status == Status::Ok);
        CHECK(o.w->write(CS, d.data(), d.size()) == Status::Corrupt);
        CHECK(o.reasons.text.find("on metadata") != std::string::npos);
    }
    auto reserved = f.img; // a table entry with reserved bits: qemu would not load the bitmap
    put64(reserved, f.tables[0], data_cluster | 2);
    {
        Opened o(reserved);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reasons.text.find("Bitmap table entry invalid") != std::string::npos);
    }
    auto past = f.img; // a data cluster past the end of the file
    put64(past, f.tables[0], f.img.size() + 4 * CS);
    {
        Opened o(past);
        CHECK(o.status == Status::Corrupt);
    }
    auto dir_size = f.img; // the directory's size disagrees with its one entry
    std::uint64_t ext = qcow2::load_be32(dir_size.data() + 100);
    while (qcow2::load_be32(dir_size.data() + ext) != 0x23852875)
        ext += 8 + ((qcow2::load_be32(dir_size.data() + ext + 4) + 7) & ~std::uint64_t{7});
    put64(dir_size, ext + 16, be64(dir_size, ext + 16) + 8);
    {
        Opened o(dir_size);
        CHECK(o.status == Status::Corrupt);
        CHECK(o.reasons.text.find("Bitmap directory") != std::string::npos);
    }
    auto all_ones = f.img; // an all-ones entry: nothing to set, no cluster allocated
    put64(all_ones, f.tables[0], 1);
    {
        Opened o(all_ones);
        REQUIRE(o.status == Status::Ok);
        REQUIRE(o.w->write(CS, d.data(), d.size()) == Status::Ok);
        CHECK(be64(o.bytes(), f.tables[0]) == 1);
    }
}
