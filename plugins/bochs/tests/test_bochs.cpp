// Tests of the bochs guest half on images built here (the layout in bochs_format.h): qemu's open
// refusals in its words and order, info, and the reader's bytes for stored, bitmap-clear and
// unallocated sectors, v1 and v2 headers, and hostile slots past the file.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "bochs_format.h"
#include "bochs_read.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

void put32(Bytes& b, std::size_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put64(Bytes& b, std::size_t off, std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// A v2 (or v1) growing redolog: `disk` bytes, 4 KiB extents (8 sectors, a 512-byte bitmap),
// catalog of `catalog` entries; extent 1 in slot 0 with sectors 0, 1 and 5 stored (0x11, 0x22, 0x55),
// extent 3 in slot 1 with every sector stored (0x30 + sector); the rest unallocated.
Bytes image(bool v1 = false, std::uint64_t disk = 8 * 4096, std::uint32_t catalog = 8) {
    Bytes b(512, 0);
    std::memcpy(b.data(), "Bochs Virtual HD Image", 23);
    std::memcpy(b.data() + 32, "Redolog", 8);
    std::memcpy(b.data() + 48, "Growing", 8);
    put32(b, 64, v1 ? 0x00010000 : 0x00020000);
    put32(b, 68, 512);
    put32(b, 72, catalog);
    put32(b, 76, 512);
    put32(b, 80, 4096);
    put64(b, v1 ? 84 : 88, disk);
    b.resize(512 + 4 * catalog, 0xff);
    const std::size_t data = b.size();
    put32(b, 512 + 4 * 1, 0);
    put32(b, 512 + 4 * 3, 1);
    b.resize(data + 2 * (512 + 4096), 0);
    b[data] = 0x23; // sectors 0, 1, 5
    for (int s : {0, 1, 5})
        std::memset(b.data() + data + 512 + 512 * s, s == 0 ? 0x11 : s == 1 ? 0x22 : 0x55, 512);
    const std::size_t slot1 = data + 512 + 4096;
    b[slot1] = 0xff;
    for (int s = 0; s < 8; ++s)
        std::memset(b.data() + slot1 + 512 + 512 * s, 0x30 + s, 512);
    return b;
}

std::string load_error(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    bochs::BochsImage img;
    bochs::BochsMessage msg;
    const char* why = nullptr;
    if (bochs::bochs_load(dev, &img, &why, &msg) == Status::Ok)
        return "ok";
    return why;
}

// The reader over an in-memory image: open, status() over the disk, every byte read.
using Walk = hosted::MemoryWalk;
Walk walk(const Bytes& image, std::size_t chunk = 1 << 20) {
    return hosted::walk_memory_image(&bochs::open, image, 8 << 20, chunk);
}

} // namespace

TEST_CASE("probe and info: v2 and v1 headers") {
    for (bool v1 : {false, true}) {
        hosted::MemoryDevice dev(image(v1));
        bool match = false;
        CHECK(bochs::probe(dev, &match) == Status::Ok);
        CHECK(match);
        const hosted::HostedInfo hi = hosted::run_info(&bochs::info, dev);
        REQUIRE(hi.status == Status::Ok);
        CHECK(hi.info.format == "bochs");
        CHECK(hi.info.virtual_size == 8 * 4096);
        CHECK(!hi.info.cluster_size);
    }
    Bytes b = image(false, 8 * 4096 + 1000, 9); // not a sector multiple: qemu rounds down
    hosted::MemoryDevice dev(b);
    CHECK(hosted::run_info(&bochs::info, dev).info.virtual_size == 8 * 4096 + 512);
    b = image();
    b[48 + 7] = 'X'; // "GrowingX": strcmp differs
    hosted::MemoryDevice other(b);
    bool match = true;
    CHECK(bochs::probe(other, &match) == Status::Ok);
    CHECK(!match);
    CHECK(load_error(b) == "Image not in Bochs format");
}

TEST_CASE("open refusals in bochs_open's words and order") {
    Bytes b = image();
    put32(b, 72, 0x100001);
    CHECK(load_error(b) == "Catalog size is too large");
    b = image();
    put32(b, 80, 256);
    CHECK(load_error(b) == "Extent size must be at least 512");
    b = image();
    put32(b, 80, 3000);
    CHECK(load_error(b) == "Extent size 3000 is not a power of two");
    b = image();
    put32(b, 80, 0x1000000);
    CHECK(load_error(b) == "Extent size 16777216 is too large");
    b = image();
    put64(b, 88, 9 * 4096);
    CHECK(load_error(b) == "Catalog size is too small for this disk size");
    b = image();
    put32(b, 80, 0); // 0 is below 512 before it is a power-of-two question
    CHECK(load_error(b) == "Extent size must be at least 512");
}

TEST_CASE("the reader: stored sectors, clear bitmap bits and unallocated extents") {
    for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{700}, std::size_t{512}}) {
        const Walk w = walk(image(), chunk);
        REQUIRE(w.status == Status::Ok);
        REQUIRE(w.extents.size() == 1); // no block status in qemu's driver: all data
        CHECK(w.extents[0].allocation == Allocation::Data);
        CHECK(w.extents[0].flags == 0);
        Bytes want(8 * 4096, 0);
        std::memset(want.data() + 4096, 0x11, 512);
        std::memset(want.data() + 4096 + 512, 0x22, 512);
        std::memset(want.data() + 4096 + 5 * 512, 0x55, 512);
        for (int s = 0; s < 8; ++s)
            std::memset(want.data() + 3 * 4096 + 512 * s, 0x30 + s, 512);
        CHECK(w.data == want);
    }
}

TEST_CASE("hostile slots: past the file reads zeros, past qemu's maximum length is an I/O error") {
    Bytes b = image();
    put32(b, 512 + 4 * 5, 1000); // slot 1000 lies past the end of the file: zeros, as qemu
    Walk w = walk(b);
    REQUIRE(w.status == Status::Ok);
    CHECK(w.data[5 * 4096] == 0);
    b = image();
    put32(b, 76, 0);              // bitmap_blocks wraps to 0x800000 sectors
    put32(b, 512 + 4 * 5, 0x80000000); // 512 * slot * stride is past BDRV_MAX_LENGTH (2^63 + 2^43)
    w = walk(b);
    CHECK(w.status == Status::IoError);
    b = image();
    b.resize(520); // catalog cut short: zeros past the end map every extent to slot 0
    w = walk(b);
    REQUIRE(w.status == Status::Ok);
    CHECK(w.data == Bytes(8 * 4096, 0));
}
