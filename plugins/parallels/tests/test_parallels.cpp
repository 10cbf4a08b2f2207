// Tests of the Parallels guest half: header checks with qemu's messages, create's bytes, the reader
// (both magics), the writer and check (both profiles), on images built in memory (hostile ones too).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_create.h"
#include "hosted_support.h"
#include "prl_check.h"
#include "prl_create.h"
#include "prl_ext.h"
#include "prl_format.h"
#include "prl_header.h"
#include "prl_read.h"
#include "prl_write.h"

#include <doctest/doctest.h>
#include <nettle/md5.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::uint64_t MiB = 1048576;

Bytes make(std::uint64_t size, const char* cluster = nullptr) {
    hosted::MemoryTarget t;
    hosted::CreateParams p;
    p.size = size;
    if (cluster)
        p.options.push_back({"cluster_size", cluster});
    REQUIRE(hosted::run_create(&parallels::create, p, t) == Status::Ok);
    return t.image_output().bytes();
}

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

struct Lines final : guest::CheckSink {
    std::string text;
    void line(const char* t, std::size_t n) override { text.append(t, n); }
};

std::string load_error(const Bytes& b, std::uint32_t v = 100000) {
    hosted::MemoryDevice dev(b);
    parallels::PrlImage img;
    const char* why = nullptr;
    (void)parallels::prl_load(dev, v, &img, &why);
    return why ? why : "";
}

struct Opened {
    Status status;
    std::string reason;
    Bytes bytes;
    std::vector<std::pair<Allocation, std::uint64_t>> runs;
};

Opened read_all(const Bytes& b) {
    Opened o;
    hosted::MemoryDevice dev(b);
    hosted::BudgetAllocator alloc(1 << 20);
    Reasons reasons;
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, &reasons, nullptr, 100000};
    guest::ImageReader* r = nullptr;
    o.status = parallels::open(req, &r);
    o.reason = reasons.text;
    if (o.status != Status::Ok)
        return o;
    const std::uint64_t size = r->virtual_size();
    for (std::uint64_t off = 0; off < size;) {
        guest::Extent e{};
        REQUIRE(r->status(off, size - off, &e) == Status::Ok);
        REQUIRE(e.length > 0);
        o.runs.push_back({e.allocation, e.length});
        off += e.length;
    }
    o.bytes.resize(size);
    REQUIRE(r->read(0, o.bytes.data(), size) == Status::Ok);
    r->close();
    return o;
}

// A writable in-memory file (check -r writes into it).
class RwDevice final : public guest::BlockDevice {
public:
    explicit RwDevice(const Bytes& b) : bytes(b) {}
    std::uint64_t size() const override { return bytes.size(); }
    Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > bytes.size() || len > bytes.size() - off)
            return Status::IoError;
        std::memcpy(buf, bytes.data() + off, len);
        return Status::Ok;
    }
    Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off + len > bytes.size())
            bytes.resize(off + len);
        std::memcpy(bytes.data() + off, buf, len);
        return Status::Ok;
    }
    Bytes bytes;
};

struct Checked {
    std::string lines;
    guest::CheckResult res;
};

Checked run_check(Bytes& b, std::uint32_t v, std::uint32_t fix = 0) {
    RwDevice dev(b);
    hosted::BudgetAllocator alloc(8 << 20);
    Lines lines;
    Checked c;
    guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, fix, v, nullptr};
    if (fix)
        req.set_length = [](guest::BlockDevice& d, std::uint64_t n) {
            static_cast<RwDevice&>(d).bytes.resize(n);
            return Status::Ok;
        };
    REQUIRE(parallels::check(req, lines, &c.res) == Status::Ok);
    c.lines = lines.text;
    if (fix)
        b = dev.bytes;
    return c;
}

void put32(Bytes& b, std::size_t at, std::uint32_t v) { parallels::store_le32(b.data() + at, v); }

// The old-magic image of corpus/old.prl: 64 KiB, 4 KiB clusters, entries in sectors.
Bytes old_image() {
    Bytes b(4096, 0);
    std::memcpy(b.data(), "WithoutFreeSpace", 16);
    put32(b, 16, 2);
    put32(b, 20, 16);
    put32(b, 28, 8);
    put32(b, 32, 16);
    put32(b, 36, 128);
    put32(b, 64 + 4 * 1, 8);
    put32(b, 64 + 4 * 3, 16);
    b.resize(12288, 0x55);
    std::memset(b.data() + 8192, 0x66, 4096);
    return b;
}

} // namespace

TEST_CASE("create writes qemu's header (the bytes of qemu-img create -f parallels x 10M)") {
    const Bytes b = make(10 * MiB);
    REQUIRE(b.size() == MiB);
    const std::uint8_t want[64] = {'W', 'i', 't', 'h', 'o', 'u', 'F', 'r', 'e', 'S', 'p', 'a', 'c', 'E', 'x', 't',
                                   2, 0, 0, 0, 0x10, 0, 0, 0, 0x28, 0, 0, 0, 0, 8, 0, 0,
                                   0x0a, 0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(std::memcmp(b.data(), want, 64) == 0);
    for (std::size_t i = 64; i < b.size(); ++i)
        REQUIRE(b[i] == 0);
}

TEST_CASE("create: cluster size rounded up to a sector; qemu's refusals") {
    const Bytes b = make(100000, "1000");
    CHECK(parallels::load_le32(&b[28]) == 2);       // 1024-byte clusters
    CHECK(parallels::load_le32(&b[32]) == 98);      // 100352 / 1024, rounded up
    CHECK(parallels::load_le64(&b[36]) == 196);     // size rounded up to 100352
    CHECK(b.size() == 1024);                        // 64 + 4 * 98 in one cluster
    hosted::MemoryTarget t;
    hosted::CreateParams p;
    p.size = uint64_t{1} << 41; // 2^32 clusters of 512 bytes (256 rounds up to 512)
    p.options.push_back({"cluster_size", "256"});
    CHECK(hosted::run_create(&parallels::create, p, t) == Status::TooLarge);
    CHECK(t.reason_text() == "Image size is too large for this cluster size");
    hosted::MemoryTarget t2;
    p.options = {{"cluster_size", "4294967296"}};
    CHECK(hosted::run_create(&parallels::create, p, t2) == Status::Invalid);
    CHECK(t2.reason_text() == "Cluster size is too large");
}

TEST_CASE("header checks: qemu's messages, in qemu's order") {
    Bytes b = make(2 * MiB);
    CHECK(load_error(b).empty());
    Bytes x = b;
    put32(x, 16, 3);
    CHECK(load_error(x) == "Image not in Parallels format");
    x = b;
    x[0] = 'w';
    CHECK(load_error(x) == "Image not in Parallels format");
    x = b;
    put32(x, 28, 0);
    CHECK(load_error(x) == "Invalid image: Zero sectors per track");
    x = b;
    put32(x, 28, 0x7fffffff / 513 + 1);
    CHECK(load_error(x) == "Invalid image: Too big cluster");
    x = b;
    put32(x, 32, 0x7fffffff / 4 + 1);
    CHECK(load_error(x) == "Catalog too large");
    x = b;
    parallels::store_le64(x.data() + 56, uint64_t{1} << 60);
    CHECK(load_error(x) == "Invalid image: Too big offset");
    CHECK(load_error(x, 70200) == "Invalid image: Too big offset"); // 7.2 aborts (divergence)
    CHECK(load_error(Bytes(10, 0)) == "Image not in Parallels format");
}

TEST_CASE("probe: both magics with version 2") {
    bool m = false;
    hosted::MemoryDevice d1(make(MiB));
    REQUIRE(parallels::probe(d1, &m) == Status::Ok);
    CHECK(m);
    hosted::MemoryDevice d2(old_image());
    REQUIRE(parallels::probe(d2, &m) == Status::Ok);
    CHECK(m);
    Bytes x = old_image();
    put32(x, 16, 1);
    hosted::MemoryDevice d3(x);
    REQUIRE(parallels::probe(d3, &m) == Status::Ok);
    CHECK(!m);
}

TEST_CASE("reader: old magic, entries in sectors; unallocated clusters read as zeros") {
    const Opened o = read_all(old_image());
    REQUIRE(o.status == Status::Ok);
    REQUIRE(o.bytes.size() == 65536);
    CHECK(o.bytes[0] == 0);
    CHECK(o.bytes[4096] == 0x55);
    CHECK(o.bytes[3 * 4096] == 0x66);
    CHECK(o.bytes[2 * 4096] == 0);
    REQUIRE(o.runs.size() == 5);
    CHECK(o.runs[1] == std::make_pair(Allocation::Data, std::uint64_t{4096}));
    CHECK(o.runs[4] == std::make_pair(Allocation::Unallocated, std::uint64_t{12 * 4096}));
}

TEST_CASE("reader: a cluster past the end of the file reads as zeros; a virtual size past the BAT too") {
    Bytes b = old_image();
    put32(b, 64 + 4 * 1, 1000000);  // far past the end of the file
    put32(b, 36, 1000);             // 500 KiB virtual: clusters 16.. are past the BAT
    const Opened o = read_all(b);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.bytes.size() == 512000);
    CHECK(o.bytes[4096] == 0);
    CHECK(o.bytes[3 * 4096] == 0x66);
    CHECK(o.runs.back().first == Allocation::Unallocated);
}

TEST_CASE("reader: a huge BAT over a tiny file costs bounded memory") {
    Bytes b = make(MiB, "512");
    Bytes x = b;
    put32(x, 32, 0x7fffffff / 4); // qemu's one read of header + BAT would exceed 2^31 - 512: EIO
    CHECK(load_error(x) == "Could not open '{image}': Input/output error");
    put32(b, 32, 536869872); // the largest BAT qemu reads, the file holds a few entries
    parallels::store_le64(b.data() + 36, uint64_t{536869872});
    const Opened o = [&] {
        hosted::MemoryDevice dev(b);
        hosted::BudgetAllocator alloc(1 << 20);
        guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, nullptr, nullptr, 100000};
        guest::ImageReader* r = nullptr;
        Opened x;
        x.status = parallels::open(req, &r);
        if (x.status == Status::Ok) {
            guest::Extent e{};
            REQUIRE(r->status(0, r->virtual_size(), &e) == Status::Ok);
            CHECK(e.allocation == Allocation::Unallocated);
            r->close();
        }
        return x;
    }();
    CHECK(o.status == Status::Ok);
}

TEST_CASE("writer: clusters allocated at data_end in write order, whole clusters") {
    hosted::MemoryTarget t;
    hosted::CreateParams p;
    p.size = 4 * 65536;
    p.options.push_back({"cluster_size", "65536"});
    std::vector<guest::CreateOption> opts{{"cluster_size", "65536"}};
    hosted::BudgetAllocator alloc(4 << 20);
    guest::CreateRequest req{p.size, opts.data(), 1, "x.prl", nullptr, nullptr, nullptr, 0, 0, p.random, 70200, &alloc,
                             nullptr};
    guest::ImageWriter* w = nullptr;
    REQUIRE(parallels::create_writer(req, t, &w) == Status::Ok);
    CHECK(w->cluster_size() == 0);
    CHECK(w->zero_init());
    Bytes ones(512, 0x11);
    REQUIRE(w->write(3 * 65536 + 512, ones.data(), 512) == Status::Ok);
    REQUIRE(w->write(65536, ones.data(), 512) == Status::Ok);
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    const Bytes b = t.image_output().bytes();
    REQUIRE(b.size() == 3 * 65536);
    CHECK(parallels::load_le32(&b[64 + 4 * 3]) == 1); // entries in clusters (new magic)
    CHECK(parallels::load_le32(&b[64 + 4 * 1]) == 2);
    CHECK(b[65536 + 512] == 0x11);
    CHECK(b[65536] == 0);
    CHECK(b[2 * 65536] == 0x11);
    const Opened o = read_all(b);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.bytes[3 * 65536 + 512] == 0x11);
    CHECK(o.bytes[65536] == 0x11);
}

TEST_CASE("check: clean images, both profiles") {
    Bytes b = old_image();
    for (const std::uint32_t v : {70200u, 100000u}) {
        const Checked c = run_check(b, v);
        CHECK(c.lines.empty());
        CHECK(c.res.corruptions == 0);
        CHECK(c.res.allocated_clusters == 2);
        CHECK(c.res.total_clusters == 16);
        CHECK(c.res.image_end_offset == 12288);
    }
}

TEST_CASE("check: leaked space, cluster outside the image, unclean; -r fixes entries and inuse") {
    Bytes b = old_image();
    b.resize(12288 + 5000);
    Checked c = run_check(b, 70200);
    CHECK(c.lines == "ERROR space leaked at the end of the image 5120\n");
    CHECK(c.res.leaks == 2);
    put32(b, 64 + 4 * 5, 1000);
    put32(b, 44, parallels::PRL_INUSE_MAGIC);
    c = run_check(b, 70200);
    CHECK(c.lines == "ERROR image was not closed correctly\nERROR cluster 5 is outside image\n");
    CHECK(c.res.corruptions == 2);
    CHECK(c.res.image_end_offset == 1000 * 512 + 4096);
    c = run_check(b, 100000);
    CHECK(c.lines == "ERROR image was not closed correctly\nERROR cluster 5 is outside image\n"
                     "ERROR space leaked at the end of the image 5120\n");
    c = run_check(b, 100000, guest::CHECK_FIX_ERRORS);
    CHECK(c.res.corruptions_fixed == 2);
    CHECK(parallels::load_le32(&b[44]) == 0);
    CHECK(parallels::load_le32(&b[64 + 4 * 5]) == 0);
}

TEST_CASE("check 10.0: a duplicate offset; bad data_off") {
    Bytes b = old_image();
    put32(b, 64 + 4 * 7, 8); // cluster 7 shares cluster 1's data, and is the last allocated entry
    Checked c = run_check(b, 100000);
    CHECK(c.lines == "ERROR duplicate offset in BAT entry 7\n");
    CHECK(c.res.error == -16);
    c = run_check(b, 70200);
    CHECK(c.lines.empty());
    b = make(MiB, "4096");
    put32(b, 48, 1);
    c = run_check(b, 100000);
    CHECK(c.lines == "ERROR data_off field has incorrect value\n");
    c = run_check(b, 100000, guest::CHECK_FIX_ERRORS);
    CHECK(parallels::load_le32(&b[48]) == 8);
}

TEST_CASE("check 10.0: 2^29 entries over a file shorter than a cluster: lines to the report's cap, all counted") {
    Bytes b = old_image();
    b.resize(4096);
    b.resize(12288, 0); // the BAT now covers the file: zeros but entries 1 and 3
    put32(b, 28, 64);        // 32 KiB clusters: longer than the 12 KiB file, so every entry is outside
    put32(b, 32, 536869872); // the largest BAT qemu reads; all but a few entries lie past the end
    parallels::store_le64(b.data() + 36, uint64_t{536869872} * 64);
    const Checked c = run_check(b, 100000);
    CHECK(c.res.corruptions == 536869872);
    CHECK(c.lines.find("ERROR cluster 3 is outside image\n") != std::string::npos);
    INFO(c.lines.substr(0, 200));
    const auto lines = static_cast<std::uint64_t>(std::count(c.lines.begin(), c.lines.end(), '\n'));
    CHECK(lines > guest::check_max_lines(64));
    CHECK(lines <= (b.size() - 64 + 3) / 4 + guest::check_max_lines(32));
    CHECK(c.lines.find("ERROR cluster 536869871 is outside image") == std::string::npos);
}

TEST_CASE("check -r leaks: the leaked space is cut off (both profiles)") {
    for (const std::uint32_t v : {70200u, 100000u}) {
        Bytes b = old_image();
        b.resize(12288 + 5000);
        const Checked c = run_check(b, v, guest::CHECK_FIX_LEAKS);
        CHECK(c.lines == "Repairing space leaked at the end of the image 5120\n");
        CHECK(c.res.leaks == 2);
        CHECK(c.res.leaks_fixed == 2);
        CHECK(b.size() == 12288);
        CHECK(b == old_image());
    }
}

TEST_CASE("check 10.0 -r: a duplicate cluster is copied into the first hole of qemu's used map") {
    Bytes b = old_image();
    put32(b, 64 + 4 * 7, 8); // cluster 7 shares cluster 1's data
    const Checked c = run_check(b, 100000, guest::CHECK_FIX_ERRORS | guest::CHECK_FIX_LEAKS);
    CHECK(c.lines == "Repairing duplicate offset in BAT entry 7\n");
    CHECK(c.res.corruptions == 1);
    CHECK(c.res.corruptions_fixed == 1);
    CHECK(c.res.error == 0);
    // data starts at sector 1 (old magic, data_off 0): map bits 0 and 1 are clusters at 4096 and
    // 8192, bit 2 (512 + 2 * 4096) is free and lies past the data end.
    CHECK(parallels::load_le32(&b[64 + 4 * 7]) == 17);
    REQUIRE(b.size() == 8704 + 4096);
    CHECK(std::all_of(b.begin() + 8704, b.end(), [](std::uint8_t x) { return x == 0x55; }));
    CHECK(c.res.image_end_offset == 8704 + 4096);
    CHECK(c.res.allocated_clusters == 3);
    // a later check finds nothing to repair
    const Checked again = run_check(b, 100000);
    CHECK(again.lines.empty());
    CHECK(again.res.corruptions == 0);
}

TEST_CASE("check 10.0 -r: without a length setter, leaks and duplicates are reported, not repaired") {
    Bytes b = old_image();
    put32(b, 64 + 4 * 7, 8);
    b.resize(12288 + 5000);
    RwDevice dev(b);
    hosted::BudgetAllocator alloc(8 << 20);
    Lines lines;
    guest::CheckResult res;
    const guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, guest::CHECK_FIX_ERRORS | guest::CHECK_FIX_LEAKS,
                                  100000, nullptr};
    REQUIRE(parallels::check(req, lines, &res) == Status::Ok);
    CHECK(lines.text == "ERROR space leaked at the end of the image 5120\nERROR duplicate offset in BAT entry 7\n");
    CHECK(dev.bytes.size() == 12288 + 5000);
}

namespace {

// convert -n into `b` under qemu `v`: writes [offset, offset + data.size()) and finishes.
Bytes write_into(const Bytes& b, std::uint32_t v, std::uint64_t offset, const Bytes& data) {
    RwDevice dev(b);
    hosted::BudgetAllocator alloc(8 << 20);
    Reasons reasons;
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, &reasons, nullptr, v};
    req.set_length = [](guest::BlockDevice& d, std::uint64_t n) {
        static_cast<RwDevice&>(d).bytes.resize(n);
        return Status::Ok;
    };
    guest::ImageWriter* w = nullptr;
    REQUIRE(parallels::open_writer(req, &w) == Status::Ok);
    REQUIRE(w->write(offset, data.data(), data.size()) == Status::Ok);
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    return dev.bytes;
}

} // namespace

TEST_CASE("convert -n: the file is cut to the data end at close; 10.0 fills holes first") {
    Bytes b = old_image();
    b.resize(12288 + 3 * 4096); // leaked space past the data end
    const Bytes data(4096, 0x77);
    // 7.2: the new cluster at the data end (of an old image with data_off 0: the BAT's 512 bytes
    // taken as sectors), the file cut (here grown) to the data end after it.
    Bytes r = write_into(b, 70200, 5 * 4096, data);
    CHECK(r.size() == 512 * 512 + 4096);
    CHECK(parallels::load_le32(&r[64 + 4 * 5]) == 512);
    CHECK(r[512 * 512] == 0x77);
    // 7.2 with data_off set: the data end is sector 24, the leak past it is cut off.
    Bytes d = b;
    put32(d, 48, 8);
    r = write_into(d, 70200, 5 * 4096, data);
    CHECK(r.size() == 12288 + 4096);
    CHECK(parallels::load_le32(&r[64 + 4 * 5]) == 24);
    CHECK(r[12288] == 0x77);
    // 10.0: qemu's used map covers the whole file; its first hole is at 512 + 2 * 4096 (sector 17).
    r = write_into(b, 100000, 5 * 4096, data);
    CHECK(parallels::load_le32(&r[64 + 4 * 5]) == 17);
    CHECK(r[8704] == 0x77);
    CHECK(r.size() == 8704 + 4096);
}

namespace {

// An image of `size` bytes with a format extension cluster appended: `features` (each a feature
// header and its data, 8-aligned) after the magic and the MD5 of the cluster's rest.
Bytes with_extension(std::uint64_t size, const std::vector<Bytes>& features, std::uint64_t magic = parallels::PRL_EXT_MAGIC,
                     bool good_sum = true) {
    Bytes b = make(size, "65536");
    const std::size_t cs = 65536;
    b.resize((b.size() + cs - 1) / cs * cs);
    const std::size_t at = b.size();
    Bytes cl(cs, 0);
    parallels::store_le64(cl.data(), magic);
    std::size_t pos = parallels::PRL_EXT_HEADER;
    for (const auto& f : features) {
        std::copy(f.begin(), f.end(), cl.begin() + static_cast<std::ptrdiff_t>(pos));
        pos += (f.size() + 7) / 8 * 8;
    }
    if (good_sum) {
        md5_ctx m;
        md5_init(&m);
        md5_update(&m, cs - parallels::PRL_EXT_HEADER, cl.data() + parallels::PRL_EXT_HEADER);
        md5_digest(&m, MD5_DIGEST_SIZE, cl.data() + 8);
    }
    b.insert(b.end(), cl.begin(), cl.end());
    parallels::store_le64(b.data() + 56, at / 512);
    return b;
}

Bytes feature(std::uint64_t magic, const Bytes& data, std::uint64_t flags = 0) {
    Bytes f(parallels::PRL_EXT_FEATURE + data.size(), 0);
    parallels::store_le64(f.data(), magic);
    parallels::store_le64(f.data() + 8, flags);
    parallels::store_le32(f.data() + 16, static_cast<std::uint32_t>(data.size()));
    std::copy(data.begin(), data.end(), f.begin() + parallels::PRL_EXT_FEATURE);
    return f;
}

Bytes bitmap(std::uint64_t sectors, std::uint32_t granularity, const std::vector<std::uint64_t>& l1, std::uint8_t id = 1) {
    Bytes d(parallels::PRL_EXT_BITMAP + 8 * l1.size(), 0);
    parallels::store_le64(d.data(), sectors);
    std::fill(d.begin() + 8, d.begin() + 24, id);
    parallels::store_le32(d.data() + 24, granularity);
    parallels::store_le32(d.data() + 28, static_cast<std::uint32_t>(l1.size()));
    for (std::size_t i = 0; i < l1.size(); ++i)
        parallels::store_le64(d.data() + parallels::PRL_EXT_BITMAP + 8 * i, l1[i]);
    return feature(parallels::PRL_EXT_DIRTY_BITMAP, d);
}

} // namespace

TEST_CASE("format extension: checked as qemu's read-only open, refused for writing") {
    const std::uint64_t sectors = 4 * MiB / 512; // 4 MiB at 128-sector (64 KiB) granularity: 1 table entry
    const Bytes end = feature(0, {});
    CHECK(load_error(with_extension(4 * MiB, {end})).empty());
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors, 128, {1}), bitmap(sectors, 128, {0}, 2), end})).empty());
    CHECK(load_error(with_extension(4 * MiB, {end}, 0x1234)) ==
          "Wrong parallels Format Extension magic: 0x1234, expected: 0xab234cef23dcea87");
    CHECK(load_error(with_extension(4 * MiB, {end}, parallels::PRL_EXT_MAGIC, false)) ==
          "Wrong checksum in Format Extension header. Format extension is corrupted.");
    CHECK(load_error(with_extension(4 * MiB, {feature(0, {}, 1)})) == "Flags for extension feature are unsupported");
    CHECK(load_error(with_extension(4 * MiB, {feature(0x1111, {})})) == "Unknown feature: 0x1111");
    CHECK(load_error(with_extension(4 * MiB, {feature(parallels::PRL_EXT_DIRTY_BITMAP, Bytes(16, 0))})) ==
          "Too small Bitmap Feature area in Parallels Format Extension: 16 bytes, expected at least 32 bytes");
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors + 1, 128, {1})})) ==
          "Bitmap size (in sectors) 8193 differs from disk size in sectors 8192");
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors, 3, {1})})) ==
          "Invalid bitmap granularity 1536, expected a power of two of at least 512 bytes");
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors, 128, {1, 1})})) ==
          "Bitmap table size 2 does not correspond to bitmap size and cluster size. Expected 1");
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors, 128, {1}), bitmap(sectors, 128, {1})})) ==
          "Bitmap already exists: 01010101-0101-0101-0101-010101010101");
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors, 128, {std::uint64_t{1} << 54})})) ==
          "Failed to read bitmap data cluster: Input/output error");
    CHECK(load_error(with_extension(4 * MiB, {bitmap(sectors, 128, {std::uint64_t{1} << 53})})).empty());
    // A feature whose data_size passes qemu's check but runs past the cluster (qemu counts only the
    // headers off what remains): the bytes past the cluster read as zeros, an end of features.
    Bytes big(65536 - parallels::PRL_EXT_HEADER - parallels::PRL_EXT_FEATURE - 16, 0);
    parallels::store_le64(big.data(), sectors);
    parallels::store_le32(big.data() + 24, 128);
    parallels::store_le32(big.data() + 28, 1);
    parallels::store_le64(big.data() + 32, 1);
    CHECK(load_error(with_extension(4 * MiB, {feature(parallels::PRL_EXT_DIRTY_BITMAP, big)})).empty());
    // The extension cluster past the end of the file reads as zeros: a wrong magic.
    Bytes past = make(4 * MiB, "65536");
    parallels::store_le64(past.data() + 56, 100000);
    CHECK(load_error(past) == "Wrong parallels Format Extension magic: 0x0, expected: 0xab234cef23dcea87");
    // An open for writing refuses any extension.
    hosted::MemoryDevice dev(with_extension(4 * MiB, {end}));
    parallels::PrlImage img;
    const char* why = nullptr;
    CHECK(parallels::prl_load(dev, 100000, &img, &why, parallels::PrlAccess::Write) == Status::Unsupported);
}
