// Tests of the DMG guest half on images built here (koly trailer, binary resource fork or XML
// plist, mish blocks): qemu's open rules and messages, the reader's bytes and its I/O errors, the
// limits, glib's base64 decoding.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "dmg_format.h"
#include "dmg_read.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

void put32(Bytes& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
void put64(Bytes& b, std::size_t at, std::uint64_t v) {
    put32(b, at, static_cast<std::uint32_t>(v >> 32));
    put32(b, at + 4, static_cast<std::uint32_t>(v));
}

struct Chunk {
    std::uint32_t type;
    std::uint64_t sector, count, offset, length;
};

Bytes mish(const std::vector<Chunk>& chunks, std::uint64_t sector_number = 0, std::uint64_t data_offset = 0) {
    Bytes m(204 + 40 * chunks.size());
    put32(m, 0, dmg::MISH_MAGIC);
    put32(m, 4, 1);
    put64(m, 8, sector_number);
    put64(m, 0x18, data_offset);
    put32(m, 200, static_cast<std::uint32_t>(chunks.size()));
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        const std::size_t e = 204 + 40 * i;
        put32(m, e, chunks[i].type);
        put64(m, e + 8, chunks[i].sector);
        put64(m, e + 0x10, chunks[i].count);
        put64(m, e + 0x18, chunks[i].offset);
        put64(m, e + 0x20, chunks[i].length);
    }
    return m;
}

std::string b64(const Bytes& in) {
    static const char* A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string s;
    for (std::size_t i = 0; i < in.size(); i += 3) {
        std::uint32_t v = in[i] << 16;
        if (i + 1 < in.size())
            v |= in[i + 1] << 8;
        if (i + 2 < in.size())
            v |= in[i + 2];
        s += A[v >> 18 & 63];
        s += A[v >> 12 & 63];
        s += i + 1 < in.size() ? A[v >> 6 & 63] : '=';
        s += i + 2 < in.size() ? A[v & 63] : '=';
        if (s.size() % 77 == 76)
            s += '\n';
    }
    return s;
}

// data fork, then the table (XML or binary resource fork), then the trailer.
Bytes build(std::uint64_t sectors, const std::vector<Bytes>& blocks, const Bytes& data, bool binary) {
    Bytes out = data;
    const std::uint64_t table_at = out.size();
    if (binary) {
        Bytes payload;
        for (const Bytes& m : blocks) {
            Bytes len(4);
            put32(len, 0, static_cast<std::uint32_t>(m.size()));
            payload.insert(payload.end(), len.begin(), len.end());
            payload.insert(payload.end(), m.begin(), m.end());
        }
        Bytes head(256);
        put32(head, 0, 256);
        put32(head, 8, static_cast<std::uint32_t>(payload.size()));
        out.insert(out.end(), head.begin(), head.end());
        out.insert(out.end(), payload.begin(), payload.end());
    } else {
        std::string x = "<plist><dict><key>blkx</key><array>\n";
        for (const Bytes& m : blocks)
            x += "<dict><data>\n" + b64(m) + "\n</data></dict>\n";
        x += "</array></dict></plist>\n";
        out.insert(out.end(), x.begin(), x.end());
    }
    const std::uint64_t table_len = out.size() - table_at;
    Bytes k(512);
    std::memcpy(k.data(), "koly", 4);
    put64(k, 0x18, 0);
    put64(k, binary ? 0x28 : 0xd8, table_at);
    put64(k, binary ? 0x30 : 0xe0, table_len);
    put64(k, 0x1ec, sectors);
    out.insert(out.end(), k.begin(), k.end());
    return out;
}

std::uint8_t pattern(std::size_t i, int seed) { return static_cast<std::uint8_t>(i * 31 + seed * 7 + (i >> 9)); }

Bytes pattern_bytes(std::size_t n, int seed) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i)
        b[i] = pattern(i, seed);
    return b;
}

// 4 raw sectors, 4 zlib sectors (stored zlib-compressed by the host codecs), 4 zero sectors, then a
// bzip2 chunk qemu does not read and a gap.
Bytes sample(bool binary, std::uint64_t sectors = 20) {
    Bytes raw = pattern_bytes(2048, 1);
    Bytes plain = pattern_bytes(2048, 2);
    Bytes z(4096);
    std::size_t zlen = 0;
    REQUIRE(hosted::host_codecs().deflate_mem(plain.data(), plain.size(), z.data(), z.size(), &zlen, 15, 6, 8) ==
            Status::Ok);
    z.resize(zlen);
    Bytes data = raw;
    data.insert(data.end(), z.begin(), z.end());
    std::vector<Chunk> c = {{dmg::UDRW, 0, 4, 0, 2048},
                            {dmg::UDZO, 4, 4, 2048, zlen},
                            {dmg::UDIG, 8, 2, 0, 0},
                            {dmg::UDCM, 10, 0, 0, 0},
                            {dmg::UDZE, 10, 2, 0, 0},
                            {dmg::UDBZ, 12, 4, 0, 100},
                            {dmg::UDLE, 16, 0, 0, 0}};
    return build(sectors, {mish(c)}, data, binary);
}

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

struct Opened {
    Status status;
    std::string reason;
    guest::ImageReader* reader = nullptr;
};

struct Harness {
    hosted::MemoryDevice dev;
    hosted::BudgetAllocator alloc{256u << 20};
    Reasons reasons;
    explicit Harness(Bytes b) : dev(std::move(b)) {}
    Opened open() {
        guest::OpenRequest req{};
        req.image = &dev;
        req.allocator = &alloc;
        req.codecs = &hosted::host_codecs();
        req.reasons = &reasons;
        req.qemu_version = 70200;
        Opened o;
        o.status = dmg::open(req, &o.reader);
        o.reason = reasons.text;
        return o;
    }
};

std::string open_error(Bytes b) {
    Harness h(std::move(b));
    Opened o = h.open();
    CHECK(o.status != Status::Ok);
    if (o.reader)
        o.reader->close();
    return o.reason;
}

} // namespace

TEST_CASE("glib base64: skips what is not in the alphabet, '=' shortens the quantum") {
    std::uint8_t out[32];
    const char* s = "aGVs\n\tbG8=";
    CHECK(dmg::dmg_base64_decode(s, std::strlen(s), out) == 5);
    CHECK(std::memcmp(out, "hello", 5) == 0);
    const char* t = "aGk";
    CHECK(dmg::dmg_base64_decode(t, std::strlen(t), out) == 0); // an incomplete quantum gives nothing
    const char* u = "aA==aGk=";
    CHECK(dmg::dmg_base64_decode(u, std::strlen(u), out) == 3);
}

TEST_CASE("both table encodings open and read the same bytes") {
    for (bool binary : {false, true}) {
        CAPTURE(binary);
        Harness h(sample(binary));
        Opened o = h.open();
        REQUIRE(o.status == Status::Ok);
        CHECK(o.reader->virtual_size() == 20 * 512);
        Bytes got(4096);
        REQUIRE(o.reader->read(0, got.data(), got.size()) == Status::Ok);
        CHECK(Bytes(got.begin(), got.begin() + 2048) == pattern_bytes(2048, 1));
        CHECK(Bytes(got.begin() + 2048, got.end()) == pattern_bytes(2048, 2));
        Bytes zeros(2048, 0xaa);
        REQUIRE(o.reader->read(4096, zeros.data(), zeros.size()) == Status::Ok);
        CHECK(zeros == Bytes(2048, 0));
        // Unaligned reads inside one chunk.
        std::uint8_t b[3];
        REQUIRE(o.reader->read(2048 + 1001, b, 3) == Status::Ok);
        CHECK(b[0] == pattern(1001, 2));
        // The bzip2 chunk is not kept (no module), and sectors 16..19 are in no chunk: EIO.
        CHECK(o.reader->read(12 * 512, b, 1) == Status::IoError);
        CHECK(o.reader->read(19 * 512, b, 1) == Status::IoError);
        guest::Extent e{};
        REQUIRE(o.reader->status(0, 20 * 512, &e) == Status::Ok);
        CHECK(e.allocation == guest::Allocation::Data);
        CHECK(e.length == 20 * 512);
        o.reader->close();
    }
}

TEST_CASE("info: size, no dirty flag, no cluster size") {
    hosted::MemoryDevice dev(sample(false));
    const auto r = hosted::run_info(dmg::info, dev);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.format == "dmg");
    CHECK(r.info.virtual_size == 20 * 512);
    CHECK(!r.info.dirty.has_value());
    CHECK(!r.info.cluster_size.has_value());
    bool match = false;
    CHECK(dmg::probe(dev, &match) == Status::Ok);
    CHECK(match);
}

TEST_CASE("qemu's open refusals") {
    const std::string einval = "Could not open '{image}': Invalid argument";
    SUBCASE("no trailer") {
        CHECK(open_error(Bytes(2000)) == "Could not locate UDIF trailer in dmg file");
        hosted::MemoryDevice dev(Bytes(2000));
        bool match = true;
        CHECK(dmg::probe(dev, &match) == Status::Ok);
        CHECK(!match);
    }
    SUBCASE("an empty file") { CHECK(open_error(Bytes()) == "dmg file must be at least 512 bytes long"); }
    SUBCASE("a short file is rounded up to a sector: the trailer at 0 has no room for forks") {
        Bytes b(300);
        std::memcpy(b.data(), "koly", 4);
        CHECK(open_error(b) == einval);
    }
    SUBCASE("koly found 3 bytes early, in a file of odd length") {
        Bytes b = sample(false);
        b.insert(b.end(), 3, 0);
        Harness h(b);
        Opened o = h.open();
        CHECK(o.status == Status::Ok);
        o.reader->close();
    }
    SUBCASE("data fork past the trailer") {
        Bytes b = sample(false);
        put64(b, b.size() - 512 + 0x18, b.size());
        CHECK(open_error(b) == einval);
    }
    SUBCASE("neither fork") {
        Bytes b = sample(false);
        put64(b, b.size() - 512 + 0xe0, 0);
        CHECK(open_error(b) == einval);
    }
    SUBCASE("negative sector count") {
        Bytes b = sample(false);
        put64(b, b.size() - 512 + 0x1ec, 1ull << 63);
        CHECK(open_error(b) == einval);
    }
    SUBCASE("a disk past BDRV_MAX_LENGTH") {
        Bytes b = sample(false);
        put64(b, b.size() - 512 + 0x1ec, 0x7fffffffffffffffull);
        CHECK(open_error(b) == "Could not refresh total sector count: File too large");
    }
    SUBCASE("XML without </data>") {
        Bytes b = sample(false);
        const std::string s(b.begin(), b.end());
        const auto at = s.find("</data>");
        b[at + 2] = 'x';
        CHECK(open_error(b) == einval);
    }
    SUBCASE("XML over 16 MiB") {
        Bytes b = sample(false);
        put64(b, b.size() - 512 + 0xd8, 0);
        put64(b, b.size() - 512 + 0xe0, (16u << 20) + 1);
        b.insert(b.begin(), (16u << 20) + 1, 'x');
        CHECK(open_error(b) == einval);
    }
    SUBCASE("resource fork with zero data length") {
        Bytes b = sample(true);
        const std::size_t fork = b.size() - 512 - (256 + 4 + 204 + 40 * 7);
        put32(b, fork + 8, 0);
        CHECK(open_error(b) == einval);
    }
}

TEST_CASE("qemu's chunk limits, numbered by kept chunk") {
    Bytes data(512);
    std::vector<Chunk> c = {{dmg::UDCM, 0, 0, 0, 0},
                            {dmg::UDRW, 0, 1, 0, 512},
                            {dmg::UDBZ, 1, 1, 0, 0},
                            {dmg::UDRW, 1, 200000, 0, 512}};
    CHECK(open_error(build(2, {mish(c)}, data, true)) == "sector count 200000 for chunk 1 is larger than max (131072)");
    c[3] = {dmg::UDZO, 1, 4, 0, 70000000};
    CHECK(open_error(build(2, {mish(c)}, data, false)) == "length 70000000 for chunk 1 is larger than max (67108864)");
    // Zero chunks may be of any size.
    c[3] = {dmg::UDZE, 1, 1ull << 40, 0, 0};
    Harness h(build(2, {mish(c)}, data, false));
    Opened o = h.open();
    CHECK(o.status == Status::Ok);
    o.reader->close();
}

TEST_CASE("a zlib chunk that inflates short, long or not at all is an I/O error") {
    Bytes plain = pattern_bytes(1024, 5);
    Bytes z(2048);
    std::size_t zlen = 0;
    REQUIRE(hosted::host_codecs().deflate_mem(plain.data(), plain.size(), z.data(), z.size(), &zlen, 15, 6, 8) ==
            Status::Ok);
    z.resize(zlen);
    for (std::uint64_t sectors : {1, 2, 3}) {
        Harness h(build(3, {mish({{dmg::UDZO, 0, sectors, 0, zlen}})}, z, false));
        Opened o = h.open();
        REQUIRE(o.status == Status::Ok);
        std::uint8_t b[512];
        CHECK(o.reader->read(0, b, 512) == (sectors == 2 ? Status::Ok : Status::IoError));
        o.reader->close();
    }
    Bytes junk(64, 0x55);
    Harness h(build(1, {mish({{dmg::UDZO, 0, 1, 0, 64}})}, junk, false));
    Opened o = h.open();
    REQUIRE(o.status == Status::Ok);
    std::uint8_t b[512];
    CHECK(o.reader->read(0, b, 512) == Status::IoError);
    o.reader->close();
}

TEST_CASE("a raw chunk past the end of the file reads zeros, as qemu's block layer") {
    Harness h(build(2, {mish({{dmg::UDRW, 0, 2, 100000, 1024}})}, Bytes(16), false));
    Opened o = h.open();
    REQUIRE(o.status == Status::Ok);
    Bytes b(1024, 1);
    CHECK(o.reader->read(0, b.data(), b.size()) == Status::Ok);
    CHECK(b == Bytes(1024, 0));
    o.reader->close();
}

TEST_CASE("hostile: a resource that claims 4 GiB past the fork, and the resource count limit") {
    // data_offset + count wraps in 32 bits (qemu's arithmetic): the walk runs past the file, where
    // zeros end it (a zero resource length is EINVAL).
    Bytes b = sample(true);
    const std::size_t fork = b.size() - 512 - (256 + 4 + 204 + 40 * 7);
    put32(b, fork + 0, 0x100);
    put32(b, fork + 8, 0xffffff00u + 0x10);
    CHECK(open_error(b) == "Could not open '{image}': Invalid argument");
    // 70000 tiny resources of one byte each.
    Bytes many;
    for (int i = 0; i < 70000; ++i) {
        Bytes r = {0, 0, 0, 1, 0};
        many.insert(many.end(), r.begin(), r.end());
    }
    Bytes img(256);
    put32(img, 0, 256);
    put32(img, 8, static_cast<std::uint32_t>(many.size()));
    img.insert(img.end(), many.begin(), many.end());
    Bytes k(512);
    std::memcpy(k.data(), "koly", 4);
    put64(k, 0x28, 0);
    put64(k, 0x30, img.size());
    put64(k, 0x1ec, 1);
    // the resource fork must start before the trailer and not at 0 == koly: put a sector first
    Bytes file(512);
    put64(k, 0x28, 512);
    file.insert(file.end(), img.begin(), img.end());
    file.insert(file.end(), k.begin(), k.end());
    Harness h(file);
    Opened o = h.open();
    CHECK(o.status == Status::TooLarge);
    CHECK(o.reason == "dmg resource fork holds more than 65536 resources (instar's limit)");
}

TEST_CASE("the fuzz walk survives the samples and their truncations") {
    for (bool binary : {false, true}) {
        Bytes b = sample(binary);
        for (std::size_t cut : {b.size(), b.size() - 1, b.size() - 600, std::size_t{700}})
            hosted::fuzz_read_walk(dmg::open, b.data(), cut);
    }
}
