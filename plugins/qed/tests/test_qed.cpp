// Tests of the QED guest half on images built by its own create (hosted) and patched by hand:
// qemu's open refusals, the reader's answers, hostile tables, check's counters and repairs.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qed_check.h"
#include "qed_create.h"
#include "qed_edit.h"
#include "qed_format.h"
#include "qed_read.h"

#include <doctest/doctest.h>
#include <instar/guest/edit_backing.h>
#include <instar/guest/edit_resize.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

Bytes make(std::uint64_t size, std::vector<std::pair<std::string, std::string>> opts = {},
           std::string backing = {}, std::string backing_fmt = {}) {
    hosted::MemoryTarget target;
    hosted::CreateParams p;
    p.size = size;
    p.options = std::move(opts);
    p.backing_file = std::move(backing);
    p.backing_fmt = std::move(backing_fmt);
    REQUIRE(hosted::run_create(qed::create, p, target) == Status::Ok);
    return target.image_output().bytes();
}

std::string create_error(std::uint64_t size, std::vector<std::pair<std::string, std::string>> opts) {
    hosted::MemoryTarget target;
    hosted::CreateParams p;
    p.size = size;
    p.options = std::move(opts);
    CHECK(hosted::run_create(qed::create, p, target) != Status::Ok);
    return target.reason_text();
}

void put64(Bytes& b, std::uint64_t off, std::uint64_t v) {
    if (b.size() < off + 8)
        b.resize(off + 8);
    for (int i = 0; i < 8; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put32(Bytes& b, std::uint64_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::string load_error(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    qed::QedImage img;
    const char* why = nullptr;
    if (qed::qed_load(dev, &img, &why) == Status::Ok)
        return "ok";
    return why ? why : "?";
}

// A 4 KiB-cluster, 2-cluster-table image (L1 at 4 KiB, 8 KiB long) with one L2 table at 12 KiB
// mapping cluster 0 to data at 28 KiB, cluster 1 zero, cluster 2 to 32 KiB.
Bytes small_image() {
    Bytes b = make(1 << 20, {{"cluster_size", "4096"}, {"table_size", "2"}});
    REQUIRE(b.size() == 12288);
    b.resize(12288 + 8192 + 8192, 0);
    put64(b, 4096, 12288);          // L1[0] -> L2
    put64(b, 12288 + 0, 20480);     // L2[0] -> data
    put64(b, 12288 + 8, 1);         // L2[1] zero
    put64(b, 12288 + 16, 24576);    // L2[2] -> data
    std::memset(b.data() + 20480, 0xAB, 4096);
    std::memset(b.data() + 24576, 0xCD, 4096);
    return b;
}

// The reader over an in-memory image: open, status() over the disk, every byte read.
using Walk = hosted::MemoryWalk;
Walk walk(const Bytes& image) {
    return hosted::walk_memory_image(&qed::open, image, 1 << 20, SIZE_MAX);
}

struct Lines final : guest::CheckSink {
    std::string text;
    void line(const char* t, std::size_t n) override { text.append(t, n); }
};

struct Writable final : guest::BlockDevice {
    Bytes b;
    std::uint64_t size() const override { return b.size(); }
    Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return Status::IoError;
        std::memcpy(buf, b.data() + off, len);
        return Status::Ok;
    }
    Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return Status::IoError;
        std::memcpy(b.data() + off, buf, len);
        return Status::Ok;
    }
};
Status no_flush(guest::BlockDevice&) { return Status::Ok; }

guest::CheckResult run_check(Writable& w, bool fix) {
    hosted::BudgetAllocator alloc(8u << 20);
    Lines lines;
    guest::CheckResult r;
    const guest::CheckRequest req{&w, nullptr, 0, &alloc, nullptr,
                                  fix ? guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS : 0u, 100000,
                                  fix ? no_flush : nullptr};
    REQUIRE(qed::check(req, lines, &r) == Status::Ok);
    return r;
}

} // namespace

TEST_CASE("create lays down qemu's header and a zeroed L1 table") {
    const Bytes b = make(10 << 20);
    CHECK(b.size() == 65536 + 4 * 65536);
    hosted::MemoryDevice dev(b);
    qed::QedImage img;
    REQUIRE(qed::qed_load(dev, &img, nullptr) == Status::Ok);
    CHECK(img.header.cluster_size == 65536);
    CHECK(img.header.table_size == 4);
    CHECK(img.header.l1_table_offset == 65536);
    CHECK(img.header.image_size == 10 << 20);
    CHECK_FALSE(img.has_backing);

    const Bytes c = make(1000, {}, "base.raw", "raw"); // rounded up to a sector
    hosted::MemoryDevice dc(c);
    REQUIRE(qed::qed_load(dc, &img, nullptr) == Status::Ok);
    CHECK(img.header.image_size == 1024);
    CHECK(img.has_backing);
    CHECK(img.backing_raw);
    CHECK(std::string(img.backing) == "base.raw");
}

TEST_CASE("create refuses what qemu refuses, in its words") {
    CHECK(create_error(1 << 20, {{"cluster_size", "3000"}}) ==
          "QED cluster size must be within range [4096, 67108864] and power of 2");
    CHECK(create_error(1 << 20, {{"table_size", "3"}}) == "QED table size must be within range [1, 16] and power of 2");
    CHECK(create_error(2ull << 30, {{"cluster_size", "4096"}, {"table_size", "1"}}) ==
          "QED image size must be a non-zero multiple of cluster size and less than 1073741824 bytes");
}

TEST_CASE("open refusals follow bdrv_qed_do_open's order and words") {
    const Bytes good = make(1 << 20);
    CHECK(load_error(good) == "ok");
    Bytes b = good;
    b[0] = 'X';
    CHECK(load_error(b) == "Image not in QED format");
    b = good;
    put64(b, 16, 0x30);
    CHECK(load_error(b) == "Unsupported QED features: 30");
    b = good;
    put32(b, 4, 3000);
    CHECK(load_error(b) == "QED cluster size is invalid");
    b = good;
    put32(b, 8, 5);
    CHECK(load_error(b) == "QED table size is invalid");
    b = good;
    put64(b, 48, 1000);
    CHECK(load_error(b) == "QED image size is invalid");
    b = good;
    put64(b, 40, 1 << 30);
    CHECK(load_error(b) == "QED table offset is invalid");
    b = good; // a header larger than the file puts the L1 table inside it
    put32(b, 12, 0x10000);
    CHECK(load_error(b) == "QED table offset is invalid");
    b = good;
    put64(b, 16, 1);
    put32(b, 56, 64);
    put32(b, 60, 70000);
    CHECK(load_error(b) == "QED backing filename offset is invalid");
    // table_size 1 never passes qemu's table-offset test.
    CHECK(load_error(make(1 << 20, {{"table_size", "1"}})) == "QED table offset is invalid");
    CHECK(load_error(Bytes(10, 0)) == "Image not in QED format");
}

TEST_CASE("the reader answers data, zero and unallocated clusters") {
    const Walk w = walk(small_image());
    REQUIRE(w.status == Status::Ok);
    REQUIRE(w.extents.size() >= 4);
    CHECK(w.extents[0].allocation == Allocation::Data);
    CHECK(w.extents[0].length == 4096);
    CHECK(w.extents[0].offset == 20480);
    CHECK(w.extents[1].allocation == Allocation::Zero);
    CHECK(w.extents[2].allocation == Allocation::Data);
    CHECK(w.extents[2].offset == 24576);
    CHECK(w.extents[3].allocation == Allocation::Unallocated);
    CHECK(w.data[0] == 0xAB);
    CHECK(w.data[4096] == 0);
    CHECK(w.data[8192] == 0xCD);
    CHECK(w.data[12288] == 0);
}

TEST_CASE("hostile tables: an L2 entry or L1 entry outside the file is refused, not followed") {
    Bytes b = small_image();
    put64(b, 12288 + 16, 1ull << 40);
    Walk w = walk(b);
    CHECK(w.status == Status::Invalid); // qemu: -EINVAL
    b = small_image();
    put64(b, 4096, 1ull << 50);
    w = walk(b);
    CHECK(w.status == Status::Invalid);
}

TEST_CASE("check counts leaks and corruptions as qed_check and repairs invalid offsets") {
    Writable w;
    w.b = small_image();
    guest::CheckResult r = run_check(w, false);
    CHECK(r.corruptions == 0);
    CHECK(r.leaks == 0);
    CHECK(r.allocated_clusters == 2);
    CHECK(r.total_clusters == 256);

    w.b.resize(w.b.size() + 2 * 4096, 0); // two leaked clusters
    put64(w.b, 12288 + 24, 1ull << 40);   // one L2 entry past the end
    put64(w.b, 16, qed::QED_F_NEED_CHECK);
    r = run_check(w, false);
    CHECK(r.leaks == 2);
    CHECK(r.corruptions == 1);
    r = run_check(w, true);
    CHECK(r.corruptions_fixed == 1);
    CHECK(r.corruptions == 0);
    hosted::MemoryDevice after(w.b);
    qed::QedImage img;
    REQUIRE(qed::qed_load(after, &img, nullptr) == Status::Ok);
    CHECK((img.header.features & qed::QED_F_NEED_CHECK) == 0);
    r = run_check(w, false);
    CHECK(r.corruptions == 0);
    CHECK(r.leaks == 2);

    // Two L2 entries naming one cluster: a corruption -r cannot fix.
    w.b = small_image();
    put64(w.b, 12288 + 16, 20480);
    r = run_check(w, true);
    CHECK(r.corruptions == 1);
}

namespace {

struct Host final : guest::EditHost {
    std::string why;
    int flushes = 0;
    Status set_length(guest::BlockDevice&, std::uint64_t, guest::Prealloc) override { return Status::Unsupported; }
    Status flush(guest::BlockDevice&) override {
        ++flushes;
        return Status::Ok;
    }
    Status add_file(const char*, guest::BlockDevice**) override { return Status::Unsupported; }
    Status out(const char*, std::size_t) override { return Status::Ok; }
    Status err(const char*, std::size_t) override { return Status::Ok; }
    void reason(const char* t, std::size_t n) override { why.assign(t, n); }
    Status data(std::uint32_t, const void*, std::size_t) override { return Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}
};

Status resize_to(Writable& w, std::uint64_t size, Host& host, std::uint32_t flags = 0, std::uint64_t backing = 0) {
    guest::ResizeArgs a{};
    a.new_size = size;
    a.flags = flags;
    a.backing_size = backing;
    hosted::BudgetAllocator alloc(8u << 20);
    guest::EditRequest req{};
    req.command = guest::EditCommand::Resize;
    req.image = &w;
    req.image_length = w.b.size();
    req.writable = true;
    req.args = reinterpret_cast<const std::uint8_t*>(&a);
    req.args_len = sizeof a;
    req.allocator = &alloc;
    return qed::edit(req, host);
}

std::uint64_t header_size_field(const Bytes& b) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i)
        v = v << 8 | b[48 + i];
    return v;
}

} // namespace

TEST_CASE("resize grows the header's size, refuses what bdrv_qed_co_truncate refuses, repairs a dirty image first") {
    Writable w;
    w.b = small_image();
    Host host;
    CHECK(resize_to(w, 2 << 20, host) == Status::Ok);
    CHECK(header_size_field(w.b) == 2 << 20);
    CHECK(resize_to(w, 1 << 20, host) == Status::Unsupported);
    CHECK(host.why == "Shrinking images is currently not supported");
    CHECK(resize_to(w, (2 << 20) + 1, host) == Status::Invalid);
    CHECK(host.why == "Invalid image size specified");
    CHECK(resize_to(w, 4 << 20, host, guest::RESIZE_HAS_BACKING, 3 << 20) == Status::Unsupported);
    CHECK(host.why == "Block driver does not support requested flags");
    // A dirty image with an L2 entry past the end: repaired (entry cleared), flag cleared, resized.
    put64(w.b, 12288 + 24, 1ull << 40);
    put64(w.b, 16, qed::QED_F_NEED_CHECK);
    CHECK(resize_to(w, 3 << 20, host) == Status::Ok);
    CHECK(header_size_field(w.b) == 3 << 20);
    hosted::MemoryDevice after(w.b);
    qed::QedImage img;
    REQUIRE(qed::qed_load(after, &img, nullptr) == Status::Ok);
    CHECK(img.header.features == 0);
    CHECK(run_check(w, false).corruptions == 0);
}

TEST_CASE("rebase's backing switch writes the header and name as bdrv_qed_change_backing_file") {
    Writable w;
    w.b = small_image();
    auto set = [&](const std::string& name, const std::string& fmt, std::uint32_t flags, Host& host) {
        guest::SetBackingArgs a{flags, static_cast<std::uint32_t>(name.size()), static_cast<std::uint32_t>(fmt.size()), 0};
        Bytes args(sizeof a);
        std::memcpy(args.data(), &a, sizeof a);
        args.insert(args.end(), name.begin(), name.end());
        args.insert(args.end(), fmt.begin(), fmt.end());
        hosted::BudgetAllocator alloc(8u << 20);
        guest::EditRequest req{};
        req.command = guest::EditCommand::SetBacking;
        req.image = &w;
        req.image_length = w.b.size();
        req.writable = true;
        req.args = args.data();
        req.args_len = args.size();
        req.allocator = &alloc;
        return qed::edit(req, host);
    };
    Host host;
    REQUIRE(set("base.raw", "raw", 0, host) == Status::Ok);
    hosted::MemoryDevice dev(w.b);
    qed::QedImage img;
    REQUIRE(qed::qed_load(dev, &img, nullptr) == Status::Ok);
    CHECK(std::string(img.backing) == "base.raw");
    CHECK(img.backing_raw);
    REQUIRE(set("", "", guest::SET_BACKING_DETACH, host) == Status::Ok);
    hosted::MemoryDevice dev2(w.b);
    REQUIRE(qed::qed_load(dev2, &img, nullptr) == Status::Ok);
    CHECK_FALSE(img.has_backing);
    CHECK(img.header.features == 0);
    // A name that does not fit in the header cluster (4 KiB here).
    CHECK(set(std::string(5000, 'n'), "qcow2", 0, host) == Status::TooLarge);
    CHECK(host.why == guest::SET_BACKING_NO_SPACE);
}
