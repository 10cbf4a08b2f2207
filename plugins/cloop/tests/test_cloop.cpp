// Tests of the cloop guest half on images built here with zlib (the layout in cloop_format.h): qemu's
// open refusals in its words and order, info (qemu's uint32 size arithmetic), the reader's bytes,
// and blocks that do not inflate to exactly block_size (qemu's -EIO).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "cloop_format.h"
#include "cloop_read.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <doctest/doctest.h>
#include <zlib.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr char PREAMBLE[] = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

void put32be(Bytes& b, std::size_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
void put64be(Bytes& b, std::size_t off, std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}

Bytes block_bytes(std::uint32_t block_size, int i) {
    Bytes d(block_size);
    for (std::uint32_t k = 0; k < block_size; ++k)
        d[k] = static_cast<std::uint8_t>((k / 512 + i * 7) % 5 == 0 ? 0 : i * 31 + k % 13);
    return d;
}

// n blocks of block_size, each compress()ed; the raw disk in *disk.
Bytes image(std::uint32_t block_size, std::uint32_t n, Bytes* disk = nullptr) {
    Bytes b(136 + 8 * (n + 1), 0);
    std::memcpy(b.data(), PREAMBLE, sizeof PREAMBLE - 1);
    put32be(b, 128, block_size);
    put32be(b, 132, n);
    if (disk != nullptr)
        disk->clear();
    for (std::uint32_t i = 0; i < n; ++i) {
        const Bytes d = block_bytes(block_size, static_cast<int>(i));
        if (disk != nullptr)
            disk->insert(disk->end(), d.begin(), d.end());
        uLongf len = compressBound(block_size);
        Bytes z(len);
        REQUIRE(compress2(z.data(), &len, d.data(), block_size, 9) == Z_OK);
        put64be(b, 136 + 8 * i, b.size());
        b.insert(b.end(), z.begin(), z.begin() + static_cast<long>(len));
    }
    put64be(b, 136 + 8 * n, b.size());
    return b;
}

std::string load_error(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    cloop::CloopImage img;
    cloop::CloopMessage msg;
    const char* why = nullptr;
    if (cloop::cloop_load(dev, &img, &why, &msg) == Status::Ok)
        return "ok";
    return why;
}

// The reader over an in-memory image: open, status() over the disk, every byte read.
using Walk = hosted::MemoryWalk;
Walk walk(const Bytes& image, std::size_t chunk = 1 << 20) {
    return hosted::walk_memory_image(&cloop::open, image, 8 << 20, chunk);
}

} // namespace

TEST_CASE("probe and info") {
    hosted::MemoryDevice dev(image(65536, 3));
    bool match = false;
    CHECK(cloop::probe(dev, &match) == Status::Ok);
    CHECK(match);
    const hosted::HostedInfo hi = hosted::run_info(&cloop::info, dev);
    REQUIRE(hi.status == Status::Ok);
    CHECK(hi.info.format == "cloop");
    CHECK(hi.info.virtual_size == 3 * 65536);
    CHECK(!hi.info.cluster_size);
    Bytes b = image(512, 1);
    b[20] = 'X';
    hosted::MemoryDevice other(b);
    CHECK(cloop::probe(other, &match) == Status::Ok);
    CHECK(!match);
}

TEST_CASE("open refusals in cloop_open's words and order") {
    Bytes b = image(4096, 2);
    put32be(b, 128, 1000);
    CHECK(load_error(b) == "block_size 1000 must be a multiple of 512");
    put32be(b, 128, 0);
    CHECK(load_error(b) == "block_size cannot be zero");
    put32be(b, 128, 128u << 20);
    CHECK(load_error(b) == "block_size 134217728 must be 64 MB or less");
    b = image(4096, 2);
    put32be(b, 132, 0x20000000);
    CHECK(load_error(b) == "n_blocks 536870912 must be 536870911 or less");
    put32be(b, 132, 0x4000000); // (n + 1) * 8 > 512 MiB
    CHECK(load_error(b) == "image requires too many offsets, try increasing block size");
    b = image(4096, 3);
    put64be(b, 136 + 16, 10);
    CHECK(load_error(b) == "offsets not monotonically increasing at index 2, image file is corrupt");
    b = image(4096, 3);
    put64be(b, 136 + 24, (1ull << 28) + 200);
    CHECK(load_error(b) == "invalid compressed block size at index 3, image file is corrupt");
}

TEST_CASE("the virtual size is qemu's uint32 sector product") {
    Bytes b = image(64u << 20, 0);
    b.resize(136 + 8 * 0x41, 0);
    put64be(b, 136, 0); // every offset 0: empty blocks, monotonic
    put32be(b, 132, 0x40); // 0x40 * 0x20000 sectors = 2^23: fits
    CHECK(load_error(b) == "ok");
    put32be(b, 132, 0x8000); // 0x8000 * 0x20000 = 2^32: wraps to 0
    b.resize(136 + 8 * 0x8001, 0);
    hosted::MemoryDevice dev(b);
    const hosted::HostedInfo hi = hosted::run_info(&cloop::info, dev);
    REQUIRE(hi.status == Status::Ok);
    CHECK(hi.info.virtual_size == 0);
}

TEST_CASE("the reader inflates every block, at any read size") {
    for (std::uint32_t bs : {512u, 4096u, 65536u}) {
        Bytes disk;
        const Bytes img = image(bs, 5, &disk);
        for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{1000}, std::size_t{512}}) {
            const Walk w = walk(img, chunk);
            REQUIRE(w.status == Status::Ok);
            REQUIRE(w.extents.size() == 1);
            CHECK(w.extents[0].allocation == Allocation::Data);
            CHECK(w.extents[0].flags == 0);
            CHECK(w.data == disk);
        }
    }
}

TEST_CASE("hostile blocks are I/O errors, not crashes") {
    Bytes b = image(4096, 3);
    // Block 1 shortened by one byte: the stream does not end.
    const std::size_t at = 136 + 8;
    std::uint64_t start = 0;
    for (int i = 0; i < 8; ++i)
        start = start << 8 | b[at + 8 + i];
    put64be(b, at + 8, start - 1);
    CHECK(walk(b).status == Status::IoError);
    // A block that inflates to less than block_size.
    Bytes small = image(4096, 2);
    Bytes other = image(2048, 1);
    Bytes z(other.begin() + 136 + 16, other.end()); // a 2 KiB block's stream
    small.resize(136 + 24);
    put64be(small, 136, small.size());
    small.insert(small.end(), z.begin(), z.end());
    put64be(small, 136 + 8, small.size());
    small.insert(small.end(), z.begin(), z.end());
    put64be(small, 136 + 16, small.size());
    CHECK(load_error(small) == "ok");
    CHECK(walk(small).status == Status::IoError);
    // Offsets past the end of the file: zeros, which do not inflate.
    b = image(4096, 2);
    put64be(b, 136 + 8, 1 << 20);
    put64be(b, 136 + 16, (1 << 20) + 100);
    CHECK(walk(b).status == Status::IoError);
    // An empty block (offsets equal).
    b = image(4096, 2);
    put64be(b, 136 + 16, 0);
    for (int i = 0; i < 8; ++i)
        b[136 + 16 + i] = b[136 + 8 + i];
    CHECK(walk(b).status == Status::IoError);
}
