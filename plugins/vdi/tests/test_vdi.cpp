// Tests of the VDI guest half: header checks with qemu's messages, create's bytes, the reader, the
// writer and check, on images built in memory (including hostile ones).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_create.h"
#include "hosted_support.h"
#include "vdi_check.h"
#include "vdi_create.h"
#include "vdi_format.h"
#include "vdi_header.h"
#include "vdi_read.h"
#include "vdi_write.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::uint64_t MiB = 1048576;

Bytes make(std::uint64_t size, bool is_static = false) {
    hosted::MemoryTarget t;
    hosted::CreateParams p;
    p.size = size;
    if (is_static)
        p.options.push_back({"static", "on"});
    REQUIRE(hosted::run_create(&vdi::create, p, t) == Status::Ok);
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

std::string load_error(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    vdi::VdiImage img;
    const char* why = nullptr;
    (void)vdi::vdi_load(dev, &img, &why);
    return why ? why : "";
}

// Reads the whole virtual disk and its status runs.
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
    o.status = vdi::open(req, &r);
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

void put32(Bytes& b, std::size_t at, std::uint32_t v) { vdi::store_le32(b.data() + at, v); }

} // namespace

TEST_CASE("create writes qemu's header and block map") {
    const Bytes b = make(5 * MiB);
    REQUIRE(b.size() == 1024);
    CHECK(std::memcmp(b.data(), "<<< QEMU VM Virtual Disk Image >>>\n", 35) == 0);
    CHECK(vdi::load_le32(&b[64]) == vdi::VDI_SIGNATURE);
    CHECK(vdi::load_le32(&b[72]) == 0x180);
    CHECK(vdi::load_le32(&b[76]) == vdi::VDI_TYPE_DYNAMIC);
    CHECK(vdi::load_le32(&b[340]) == 0x200);
    CHECK(vdi::load_le32(&b[344]) == 0x400);
    CHECK(vdi::load_le64(&b[368]) == 5 * MiB);
    CHECK(vdi::load_le32(&b[384]) == 5);
    CHECK(vdi::load_le32(&b[388]) == 0);
    CHECK((b[392 + 7] & 0xf0) == 0x40); // version-4 UUIDs, stored as qemu stores them
    CHECK((b[392 + 8] & 0xc0) == 0x80);
    for (int i = 0; i < 5; ++i)
        CHECK(vdi::load_le32(&b[512 + 4 * i]) == vdi::VDI_UNALLOCATED);
    CHECK(vdi::load_le32(&b[512 + 20]) == 0);
}

TEST_CASE("create static: map 0..n-1, the file covers every block, size rounded to a sector") {
    const Bytes b = make(3000000, true);
    CHECK(b.size() == 1024 + 3 * MiB);
    CHECK(vdi::load_le64(&b[368]) == 3000320);
    CHECK(vdi::load_le32(&b[388]) == 3);
    for (std::uint32_t i = 0; i < 3; ++i)
        CHECK(vdi::load_le32(&b[512 + 4 * i]) == i);
}

TEST_CASE("create refuses sizes past qemu's limit in qemu's words") {
    hosted::MemoryTarget t;
    hosted::CreateParams p;
    p.size = vdi::VDI_DISK_SIZE_MAX + 1;
    CHECK(hosted::run_create(&vdi::create, p, t) == Status::Unsupported);
    CHECK(t.reason_text() == "Unsupported VDI image size (size is 0x1fffff8000200, max supported is 0x1fffff8000000)");
}

TEST_CASE("header checks: qemu's messages, in qemu's order") {
    Bytes b = make(2 * MiB);
    CHECK(load_error(b).empty());
    Bytes x = b;
    put32(x, 64, 0x12345678);
    CHECK(load_error(x) == "Image not in VDI format (bad signature 12345678)");
    x = b;
    put32(x, 68, 0x00020003);
    CHECK(load_error(x) == "unsupported VDI image (version 2.3)");
    x = b;
    put32(x, 344, 0x401);
    CHECK(load_error(x) == "unsupported VDI image (unaligned data offset 0x401)");
    x = b;
    put32(x, 376, 4096);
    CHECK(load_error(x) == "unsupported VDI image (block size 4096 is not 1048576)");
    x = b;
    vdi::store_le64(x.data() + 368, 3 * MiB);
    CHECK(load_error(x) == "unsupported VDI image (disk size 3145728, image bitmap has room for 2097152)");
    x = b;
    x[440] = 1;
    CHECK(load_error(x) == "unsupported VDI image (non-NULL parent UUID)");
    x = b;
    vdi::store_le64(x.data() + 368, vdi::VDI_DISK_SIZE_MAX + 1);
    put32(x, 64, 0);
    CHECK(load_error(x) == "Unsupported VDI image size (size is 0x1fffff8000001, max supported is 0x1fffff8000000)");
    CHECK(load_error(Bytes(100, 0)) == "Image not in VDI format (bad signature 00000000)");
}

TEST_CASE("probe and info") {
    const Bytes b = make(3000000, true);
    hosted::MemoryDevice dev(b);
    bool match = false;
    CHECK(vdi::probe(dev, &match) == Status::Ok);
    CHECK(match);
    const auto r = hosted::run_info(&vdi::info, dev);
    REQUIRE(r.status == Status::Ok);
    const auto j = hosted::debug_json(r.info).as_object();
    CHECK(j.at("format").as_string() == "vdi");
    CHECK(j.at("virtual-size").to_number<std::int64_t>() == 3000320);
    CHECK(j.at("cluster-size").to_number<std::int64_t>() == 1048576);
}

TEST_CASE("reader: unallocated blocks are zeros, allocated ones data, entries past EOF read zeros") {
    Bytes b = make(4 * MiB);
    const std::uint32_t data = vdi::load_le32(&b[344]);
    b.resize(data + 2 * MiB, 0);
    std::memset(&b[data], 0xaa, MiB);
    std::memset(&b[data + MiB], 0xbb, MiB);
    put32(b, 512 + 4 * 1, 1);       // block 1 -> second stored block
    put32(b, 512 + 4 * 2, 0);       // block 2 -> first
    put32(b, 512 + 4 * 3, 0x7fffff); // block 3 -> far past the end of the file: zeros, as qemu
    const Opened o = read_all(b);
    REQUIRE(o.status == Status::Ok);
    REQUIRE(o.runs.size() == 4);
    CHECK(o.runs[0] == std::pair{Allocation::Zero, MiB});
    CHECK(o.runs[1] == std::pair{Allocation::Data, MiB});
    CHECK(o.runs[3] == std::pair{Allocation::Data, MiB});
    CHECK(o.bytes[0] == 0);
    CHECK(o.bytes[MiB] == 0xbb);
    CHECK(o.bytes[2 * MiB + 5] == 0xaa);
    CHECK(o.bytes[3 * MiB + 7] == 0);
}

TEST_CASE("reader: a block map past the end of the file reads as zeros (block 0)") {
    Bytes b = make(2 * MiB);
    b.resize(512);
    put32(b, 344, 512);
    const Opened o = read_all(b);
    REQUIRE(o.status == Status::Ok);
    CHECK(o.runs.size() == 2);
    CHECK(o.runs[0].first == Allocation::Data);
}

TEST_CASE("reader refuses what qemu refuses, with its reason") {
    Bytes b = make(2 * MiB);
    put32(b, 360, 4096);
    const Opened o = read_all(b);
    CHECK(o.status == Status::Unsupported);
    CHECK(o.reason == "unsupported VDI image (sector size 4096 is not 512)");
}

TEST_CASE("writer: blocks allocated in write order, whole blocks, header count at finish") {
    hosted::MemoryTarget t;
    hosted::CreateParams p;
    p.size = 3 * MiB + 512;
    hosted::BudgetAllocator alloc(4 << 20);
    guest::CreateRequest req{p.size, nullptr, 0, "x.vdi", nullptr, nullptr, nullptr, 0, 0, p.random, 100000, &alloc,
                             nullptr};
    guest::ImageWriter* w = nullptr;
    REQUIRE(vdi::create_writer(req, t, &w) == Status::Ok);
    CHECK(w->cluster_size() == MiB);
    CHECK(w->zero_init());
    Bytes ones(512, 0x11);
    REQUIRE(w->write(3 * MiB, ones.data(), 512) == Status::Ok);
    REQUIRE(w->write(MiB + 1024, ones.data(), 512) == Status::Ok);
    REQUIRE(w->write(MiB, ones.data(), 512) == Status::Ok);
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    const Bytes b = t.image_output().bytes();
    const std::uint32_t data = vdi::load_le32(&b[344]);
    CHECK(b.size() == data + 2 * MiB);
    CHECK(vdi::load_le32(&b[388]) == 2);
    CHECK(vdi::load_le32(&b[512 + 4 * 3]) == 0);
    CHECK(vdi::load_le32(&b[512 + 4 * 1]) == 1);
    CHECK(vdi::load_le32(&b[512 + 4 * 0]) == vdi::VDI_UNALLOCATED);
    CHECK(b[data] == 0x11);
    CHECK(b[data + 512] == 0);
    CHECK(b[data + MiB] == 0x11);
    CHECK(b[data + MiB + 1024] == 0x11);
    CHECK(b[data + MiB + 600] == 0);
}

TEST_CASE("check: qemu's findings and messages") {
    Bytes b = make(4 * MiB);
    put32(b, 512 + 0, 1);
    put32(b, 512 + 4, 1);
    put32(b, 512 + 8, 9);
    hosted::MemoryDevice dev(b);
    hosted::BudgetAllocator alloc(1 << 20);
    Lines lines;
    guest::CheckResult res;
    const guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100000, nullptr};
    REQUIRE(vdi::check(req, lines, &res) == Status::Ok);
    CHECK(lines.text ==
          "ERROR: block index 1 also used by 1\n"
          "ERROR: block index 2 too large, is 9\n"
          "ERROR: allocated blocks mismatch, is 2, should be 0\n");
    CHECK(res.corruptions == 3);
    CHECK(res.error == 0);
    const guest::CheckRequest fix{&dev, nullptr, 0, &alloc, nullptr, guest::CHECK_FIX_ERRORS, 100000, nullptr};
    REQUIRE(vdi::check(fix, lines, &res) == Status::Ok);
    CHECK(res.error == -guest::CHECK_ENOTSUP);
}

TEST_CASE("check: a block map past the end of the file is block 0 reused, counted without a loop per entry") {
    Bytes b = make(2 * MiB);
    put32(b, 384, 1u << 28); // 2^28 blocks claimed by a 1 KiB file
    b.resize(1024);
    hosted::MemoryDevice dev(b);
    hosted::BudgetAllocator alloc(64 << 20);
    Lines lines;
    guest::CheckResult res;
    const guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100000, nullptr};
    REQUIRE(vdi::check(req, lines, &res) == Status::Ok);
    // 128 entries in the file: two 0xffffffff, then 126 zeros (the sector's padding); then 2^28 - 128
    // zero entries past the end. Block 0 counts once, every other zero entry is a duplicate, and the
    // count mismatches: 2^28 - 3 + 1 corruptions, 2^28 - 2 allocated.
    CHECK(res.corruptions == (1u << 28) - 2);
    CHECK(lines.text.ends_with("ERROR: allocated blocks mismatch, is 268435454, should be 0\n"));
    CHECK(lines.text.size() < 20u << 20); // bounded lines, not 2^28 of them
}
