// Unit tests of qemu-img check for qcow2 (qcow2_check.cpp) on synthetic images: a consistent image,
// then one damage at a time, with qemu's exact counters and stderr lines (the differential test in
// tests/check compares whole outputs with qemu-img itself).
#include <doctest/doctest.h>

#include "hosted_support.h"
#include "qcow2_check.h"
#include "qcow2_test_image.h"

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Status;
using qcow2::test::put_be;

namespace {

constexpr std::uint64_t COPIED = 1ull << 63;
constexpr std::uint32_t CB = 9; // 512-byte clusters keep the images tiny
constexpr std::uint64_t CS = 512;

// Cluster 0 header, 1 refcount table, 2 refblock, 3 L1, 4 L2, 5 and 6 data (guest clusters 0, 1).
struct Image {
    std::vector<std::uint8_t> b = std::vector<std::uint8_t>(7 * CS, 0);
    std::uint32_t refcount_order = 4;
    Image() {
        put_be(b, 0, 0x514649fb, 4);
        put_be(b, 4, 3, 4);
        put_be(b, 20, CB, 4);
        put_be(b, 24, 64 * CS, 8); // one L2 table's worth
        put_be(b, 36, 1, 4);
        put_be(b, 40, 3 * CS, 8);
        put_be(b, 48, 1 * CS, 8);
        put_be(b, 56, 1, 4);
        put_be(b, 96, 4, 4);
        put_be(b, 100, 112, 4);
        put_be(b, CS, 2 * CS, 8); // reftable[0] -> refblock
        put_be(b, 3 * CS, COPIED | 4 * CS, 8);
        put_be(b, 4 * CS, COPIED | 5 * CS, 8);
        put_be(b, 4 * CS + 8, COPIED | 6 * CS, 8);
        for (int c = 0; c < 7; ++c)
            refcount(c, 1);
    }
    void refcount(std::uint64_t cluster, std::uint64_t v) {
        if (refcount_order == 4)
            put_be(b, 2 * CS + 2 * cluster, v, 2);
        else // order 0: one bit per cluster, LSB first
            b[2 * CS + cluster / 8] = static_cast<std::uint8_t>((b[2 * CS + cluster / 8] & ~(1u << (cluster % 8))) |
                                                                 ((v & 1) << (cluster % 8)));
    }
    void set_order0() {
        refcount_order = 0;
        put_be(b, 96, 0, 4);
        for (std::size_t i = 0; i < CS; ++i)
            b[2 * CS + i] = 0;
        for (int c = 0; c < 7; ++c)
            refcount(c, 1);
    }
};

struct Lines final : guest::CheckSink {
    std::string text;
    void line(const char* t, std::size_t len) override { text.append(t, len); }
};

struct Run {
    Status status;
    guest::CheckResult r;
    std::string err;
};

Run check(const std::vector<std::uint8_t>& bytes, std::size_t budget = 16u << 20) {
    hosted::MemoryDevice dev(bytes);
    hosted::BudgetAllocator alloc(budget);
    Lines lines;
    guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100002, nullptr};
    Run out{};
    out.status = qcow2::check(req, lines, &out.r);
    out.err = lines.text;
    return out;
}

} // namespace

TEST_CASE("qcow2 check: a consistent image") {
    Image img;
    const Run run = check(img.b);
    REQUIRE(run.status == Status::Ok);
    CHECK(run.err == "");
    CHECK(run.r.corruptions == 0);
    CHECK(run.r.leaks == 0);
    CHECK(run.r.check_errors == 0);
    CHECK(run.r.allocated_clusters == 2);
    CHECK(run.r.total_clusters == 64);
    CHECK(run.r.fragmented_clusters == 0);
    CHECK(run.r.image_end_offset == 7 * CS);
    CHECK(run.r.error == 0);
}

TEST_CASE("qcow2 check: a leaked cluster") {
    Image img;
    img.b.resize(8 * CS);
    img.refcount(7, 1);
    const Run run = check(img.b);
    CHECK(run.err == "Leaked cluster 7 refcount=1 reference=0\n");
    CHECK(run.r.leaks == 1);
    CHECK(run.r.corruptions == 0);
    CHECK(run.r.image_end_offset == 8 * CS);
}

TEST_CASE("qcow2 check: refcount one too low, and OFLAG_COPIED follows") {
    Image img;
    img.refcount(5, 0);
    const Run run = check(img.b);
    CHECK(run.err == "ERROR cluster 5 refcount=0 reference=1\n"
                     "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000000a00 refcount=0\n");
    CHECK(run.r.corruptions == 2);
}

TEST_CASE("qcow2 check: an L2 entry past the end of the file") {
    Image img;
    put_be(img.b, 4 * CS + 16, COPIED | 100 * CS, 8);
    const Run run = check(img.b);
    CHECK(run.err == "ERROR: counting reference for region exceeding the end of the file by one cluster or more: "
                     "offset 0xc800 size 0x200\n"
                     "ERROR OFLAG_COPIED data cluster: l2_entry=800000000000c800 refcount=0\n");
    CHECK(run.r.corruptions == 2);
    CHECK(run.r.fragmented_clusters == 1);
}

TEST_CASE("qcow2 check: a data cluster shared with the L1 table") {
    Image img;
    put_be(img.b, 4 * CS + 16, COPIED | 3 * CS, 8);
    const Run run = check(img.b);
    CHECK(run.err == "ERROR cluster 3 refcount=1 reference=2\n");
    CHECK(run.r.corruptions == 1);
}

TEST_CASE("qcow2 check: refcount overflow at refcount_bits=1") {
    Image img;
    img.set_order0();
    put_be(img.b, 4 * CS + 8, COPIED | 5 * CS, 8); // guest clusters 0 and 1 share host cluster 5
    const Run run = check(img.b);
    CHECK(run.err == "ERROR: overflow cluster offset=0xa00\n"
                     "Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a "
                     "clean copy if the image cannot be opened for writing\n"
                     "Leaked cluster 6 refcount=1 reference=0\n");
    CHECK(run.r.corruptions == 1);
    CHECK(run.r.leaks == 1);
}

TEST_CASE("qcow2 check: a refcount table entry with reserved bits") {
    Image img;
    // With 512-byte clusters every REFT_OFFSET_MASK value is aligned: reserved bits instead.
    put_be(img.b, CS, 2 * CS | 1, 8);
    const Run run = check(img.b);
    CHECK(run.err.rfind("ERROR refcount table entry 0 has reserved bits set\n", 0) == 0);
    CHECK(run.r.corruptions >= 1);
}

TEST_CASE("qcow2 check: wrong OFLAG_COPIED on L1 and L2 entries") {
    Image img;
    put_be(img.b, 3 * CS, 4 * CS, 8);
    put_be(img.b, 4 * CS, 5 * CS, 8);
    const Run run = check(img.b);
    CHECK(run.err == "ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=800 refcount=1\n"
                     "ERROR OFLAG_COPIED data cluster: l2_entry=a00 refcount=1\n");
    CHECK(run.r.corruptions == 2);
}

TEST_CASE("qcow2 check: the refcount array has a named bound, and memory is checked") {
    Image img;
    const Run small = check(img.b, 600);
    CHECK(small.status == Status::NoMemory);
    CHECK(qcow2::QCOW2_CHECK_MAX_CLUSTERS == (std::uint64_t{1} << 28));
}

// A writable in-memory image that counts flushes.
struct WritableImage final : guest::BlockDevice {
    std::vector<std::uint8_t> b;
    int flushes = 0;
    std::uint64_t size() const override { return b.size(); }
    Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return Status::IoError;
        std::memcpy(buf, b.data() + off, len);
        return Status::Ok;
    }
    bool grow = false; // writes past the end extend the file (the runtime's -r device does)
    Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (grow && off <= (1u << 30) && len <= (1u << 30) && off + len > b.size())
            b.resize(off + len);
        if (off > b.size() || len > b.size() - off)
            return Status::IoError;
        std::memcpy(b.data() + off, buf, len);
        return Status::Ok;
    }
};

Status count_flush(guest::BlockDevice& d) {
    static_cast<WritableImage&>(d).flushes++;
    return Status::Ok;
}

Run repair(WritableImage& dev, std::uint32_t fix) {
    hosted::BudgetAllocator alloc(16u << 20);
    Lines lines;
    guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, fix, 100002, count_flush};
    Run out{};
    out.status = qcow2::check(req, lines, &out.r);
    out.err = lines.text;
    return out;
}

TEST_CASE("qcow2 check -r leaks: a leak repaired, then the image is clean") {
    Image img;
    img.b.resize(8 * CS);
    img.refcount(7, 1);
    WritableImage dev;
    dev.b = img.b;
    const Run run = repair(dev, guest::CHECK_FIX_LEAKS);
    REQUIRE(run.status == Status::Ok);
    CHECK(run.err == "Leaked cluster 7 refcount=1 reference=0\nRepairing cluster 7 refcount=1 reference=0\n");
    CHECK(run.r.leaks_fixed == 1);
    CHECK(run.r.leaks == 0);
    CHECK(dev.flushes >= 1);
    const Run again = check(dev.b);
    CHECK(again.err == "");
    CHECK(again.r.leaks == 0);
}

TEST_CASE("qcow2 check -r all: OFLAG_COPIED repaired on L1 and L2; dirty bit cleared last") {
    Image img;
    put_be(img.b, 3 * CS, 4 * CS, 8);
    put_be(img.b, 4 * CS, 5 * CS, 8);
    put_be(img.b, 72, 1, 8); // dirty
    WritableImage dev;
    dev.b = img.b;
    const Run run = repair(dev, guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS);
    CHECK(run.err == "Repairing OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=800 refcount=1\n"
                     "Repairing OFLAG_COPIED data cluster: l2_entry=a00 refcount=1\n");
    CHECK(run.r.corruptions_fixed == 2);
    CHECK(run.r.corruptions == 0);
    CHECK(dev.b[79] == 0);
    CHECK(check(dev.b).err == "");
}

TEST_CASE("qcow2 check -r all: a referenced cluster with refcount 0 rebuilds the refcount structure") {
    Image img;
    img.refcount(5, 0);
    WritableImage dev;
    dev.b = img.b;
    dev.grow = true;
    const Run run = repair(dev, guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS);
    REQUIRE(run.status == Status::Ok);
    // No free cluster inside the file: the new refcount block goes to cluster 7, the new table to 8;
    // the old table (1) and block (2) are leaked, then freed.
    CHECK(run.err == "ERROR cluster 5 refcount=0 reference=1\nRebuilding refcount structure\n"
                     "Repairing cluster 1 refcount=1 reference=0\nRepairing cluster 2 refcount=1 reference=0\n");
    CHECK(run.r.corruptions_fixed == 1);
    CHECK(run.r.corruptions == 0);
    CHECK(run.r.leaks == 0);
    CHECK(run.r.error == 0);
    CHECK(dev.b.size() == 9 * CS);
    CHECK(dev.b[48 + 6] == ((8 * CS) >> 8)); // refcount_table_offset = 8 * CS
    CHECK(dev.flushes >= 3);
    const Run again = check(dev.b);
    CHECK(again.err == "");
    CHECK(again.r.corruptions == 0);
    CHECK(again.r.leaks == 0);
}

TEST_CASE("qcow2 check -r all: a rebuild that cannot write fails as qemu's, the old header kept") {
    Image img;
    img.refcount(5, 0);
    WritableImage dev;
    dev.b = img.b;
    const Run run = repair(dev, guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS);
    REQUIRE(run.status == Status::Ok);
    CHECK(run.err == "ERROR cluster 5 refcount=0 reference=1\nRebuilding refcount structure\n"
                     "\x01" "ERROR writing refblock: Input/output error\n");
    CHECK(run.r.error == -guest::CHECK_EIO);
    CHECK(run.r.check_errors == 1);
    CHECK(std::memcmp(dev.b.data(), img.b.data(), 7 * CS) == 0);
}

TEST_CASE("qcow2 check -r all: a refcount block outside the file grows the file to hold it") {
    Image img;
    put_be(img.b, CS + 8, 20 * CS, 8); // reftable[1] -> cluster 20, past the end
    WritableImage dev;
    dev.b = img.b;
    dev.grow = true;
    const Run run = repair(dev, guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS);
    REQUIRE(run.status == Status::Ok);
    CHECK(run.err.rfind("Repairing refcount block 1 is outside image\n", 0) == 0);
    CHECK(dev.b.size() == 21 * CS);
    CHECK(run.r.corruptions_fixed >= 1);
}

// The file cannot grow that far (this device stops at 1 GiB, as ext4 stops at 16 TiB): qemu's
// truncate failure, its lines (the errno text is the host's: marker 0x02), then a rebuild. Beyond
// the array (2^50) the grow is tried before anything else; inside it (1 GiB + 64 clusters) in the walk.
TEST_CASE("qcow2 check -r all: a refcount block the file cannot grow to is qemu's resize failure") {
    for (const std::uint64_t far : {std::uint64_t{1} << 50, (std::uint64_t{1} << 30) + 64 * CS}) {
        Image img;
        put_be(img.b, CS + 8, far, 8);
        WritableImage dev;
        dev.b = img.b;
        dev.grow = true;
        const Run run = repair(dev, guest::CHECK_FIX_LEAKS | guest::CHECK_FIX_ERRORS);
        REQUIRE(run.status == Status::Ok);
        CHECK(run.err.rfind("Repairing refcount block 1 is outside image\n"
                            "\x01\x02" "Could not resize file: \n"
                            "\x02" "ERROR could not resize image: \n"
                            "Rebuilding refcount structure\n",
                            0) == 0);
        CHECK(run.r.error == 0);
        CHECK(dev.b.size() < 64 * CS);
        const Run again = check(dev.b);
        CHECK(again.r.corruptions == 0);
    }
}

TEST_CASE("qcow2 check -r leaks: a needed rebuild is qemu's error") {
    Image img;
    img.refcount(5, 0);
    WritableImage dev;
    dev.b = img.b;
    const Run run = repair(dev, guest::CHECK_FIX_LEAKS);
    CHECK(run.err == "ERROR cluster 5 refcount=0 reference=1\nERROR need to rebuild refcount structures\n");
    CHECK(run.r.error == -guest::CHECK_EIO);
    CHECK(dev.b == img.b);
}
