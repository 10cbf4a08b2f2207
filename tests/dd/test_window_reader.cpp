// Unit tests of dd's byte window (guest/convert/window_reader): block status exact per sector of the
// window, reads at any byte offset, and whole dd copies through the convert engine compared with
// the bytes the window should hold, over a two-image chain with data, zero and unallocated runs.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "chain_reader.h"
#include "convert_engine.h"
#include "hosted_support.h"
#include "window_reader.h"

#include <instar/guest/dd_window.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

using instar::convert::ChainImageReader;
using instar::convert::Params;
using instar::convert::run_convert;
using instar::convert::Source;
using instar::convert::WindowReader;
using instar::guest::Allocation;
using instar::guest::Extent;
using instar::guest::ImageReader;
using instar::guest::ImageWriter;
using instar::guest::Status;

namespace {

// A reader over bytes with explicit runs; Zero and Unallocated runs read as zeros (as a format's do).
class FakeReader final : public ImageReader {
public:
    struct Run {
        std::uint64_t length;
        Allocation allocation;
    };
    FakeReader(std::vector<std::uint8_t> bytes, std::vector<Run> runs)
        : bytes_(std::move(bytes)), runs_(std::move(runs)) {
        std::uint64_t pos = 0;
        for (const Run& r : runs_) {
            if (r.allocation != Allocation::Data)
                std::memset(bytes_.data() + pos, 0, r.length);
            pos += r.length;
        }
    }
    std::uint64_t virtual_size() const override { return bytes_.size(); }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        std::uint64_t pos = 0;
        for (const Run& r : runs_) {
            if (offset < pos + r.length) {
                *out = Extent{};
                out->allocation = r.allocation;
                out->length = std::min(pos + r.length - offset, length);
                return Status::Ok;
            }
            pos += r.length;
        }
        return Status::Invalid;
    }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (offset > bytes_.size() || len > bytes_.size() - offset)
            return Status::Invalid;
        std::memcpy(buf, bytes_.data() + offset, len);
        return Status::Ok;
    }
    void close() override {}
    const std::vector<std::uint8_t>& bytes() const { return bytes_; }

private:
    std::vector<std::uint8_t> bytes_;
    std::vector<Run> runs_;
};

class DiskWriter final : public ImageWriter {
public:
    explicit DiskWriter(std::uint64_t size) : disk(size, 0xEE) {}
    std::uint64_t cluster_size() const override { return 65536; }
    bool zero_init() const override { return true; }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        if (offset > disk.size() || len > disk.size() - offset)
            return Status::Invalid;
        std::memcpy(disk.data() + offset, buf, len);
        written += len;
        return Status::Ok;
    }
    Status write_zeroes(std::uint64_t, std::uint64_t, bool) override { return Status::Invalid; } // dd writes data
    Status write_compressed(std::uint64_t, const void*, std::size_t) override { return Status::Invalid; }
    Status finish() override { return Status::Ok; }
    void close() override {}
    std::vector<std::uint8_t> disk;
    std::uint64_t written = 0;
};

std::vector<std::uint8_t> noise(std::uint64_t n, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::vector<std::uint8_t> v(n);
    for (auto& b : v)
        b = static_cast<std::uint8_t>(g() % 255 + 1); // never zero
    return v;
}

} // namespace

TEST_CASE("img_dd's window: count= caps the size, skip= starts it, past the end it is empty") {
    using instar::guest::dd_window;
    const std::uint64_t mib = 1u << 20;
    auto w = dd_window(64 * mib, mib, true, 3, true, 1);
    CHECK((w.offset == mib && w.length == 2 * mib && !w.past_end));
    w = dd_window(64 * mib, 512, false, 0, false, 0); // neither: the whole input
    CHECK((w.offset == 0 && w.length == 64 * mib && !w.past_end));
    w = dd_window(64 * mib, mib, true, 1000, false, 0); // count past the end: the input's size
    CHECK(w.length == 64 * mib);
    w = dd_window(64 * mib, mib, false, 0, true, 64); // skip to the very end: empty, not past it
    CHECK((w.offset == 64 * mib && w.length == 0 && !w.past_end));
    w = dd_window(64 * mib, mib, false, 0, true, 65);
    CHECK((w.offset == 64 * mib && w.length == 0 && w.past_end));
    // count * bs and skip * bs past INT64_MAX: no overflow (count ignored, skip past the end).
    w = dd_window(64 * mib, 1ull << 40, true, 1ull << 30, true, 1ull << 30);
    CHECK((w.length == 0 && w.past_end));
    w = dd_window(64 * mib, 1ull << 40, true, 1ull << 30, false, 0);
    CHECK(w.length == 64 * mib);
}

TEST_CASE("a Zero run ending inside a window sector is cut back; too short, it is Data") {
    FakeReader r(noise(32768, 1), {{4096, Allocation::Data}, {12288, Allocation::Zero}, {16384, Allocation::Data}});
    WindowReader w(r, 100, 30000);
    Extent e{};
    REQUIRE(w.status(3584, 512, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 412);
    REQUIRE(w.status(4096, 20000, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Zero);
    CHECK(e.length == 11776); // inner zeros end at window 16284: cut to the sector at 15872
    REQUIRE(w.status(15872, 1024, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Data); // 412 zero bytes, then data, in one sector
    CHECK(e.length == 412);
}

TEST_CASE("past the inner disk's end the window reads zeros") {
    FakeReader r(noise(1001, 2), {{1001, Allocation::Data}});
    WindowReader w(r, 1, 1023);
    Extent e{};
    REQUIRE(w.status(1000, 23, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Zero);
    CHECK(e.length == 23);
    std::vector<std::uint8_t> buf(1023, 0xEE);
    REQUIRE(w.read(0, buf.data(), buf.size()) == Status::Ok);
    CHECK(std::memcmp(buf.data(), r.bytes().data() + 1, 1000) == 0);
    CHECK(std::all_of(buf.begin() + 1000, buf.end(), [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("requests outside the window are refused") {
    FakeReader r(noise(4096, 3), {{4096, Allocation::Data}});
    WindowReader w(r, 512, 1024);
    Extent e{};
    std::uint8_t buf[16];
    CHECK(w.status(1024, 1, &e) == Status::Invalid);
    CHECK(w.status(0, 0, &e) == Status::Invalid);
    CHECK(w.status(512, 1024, &e) == Status::Invalid);
    CHECK(w.read(1020, buf, 5) == Status::Invalid);
    WindowReader huge(r, UINT64_MAX - 10, 20);
    CHECK(huge.status(15, 1, &e) == Status::Invalid);
    CHECK(huge.read(15, buf, 1) == Status::Invalid);
}

TEST_CASE("dd copies: every window of a chain, at any byte offset, holds the chain's bytes") {
    // top: data, unallocated (backing shows), zero, data; backing shorter than the top.
    const std::uint64_t size = 300000, bsize = 200000;
    FakeReader backing(noise(bsize, 4), {{70000, Allocation::Data}, {30000, Allocation::Zero},
                                         {100000, Allocation::Data}});
    FakeReader top(noise(size, 5), {{5000, Allocation::Data}, {120000, Allocation::Unallocated},
                                    {40001, Allocation::Zero}, {999, Allocation::Data},
                                    {134000, Allocation::Unallocated}});
    std::vector<std::uint8_t> expect(size, 0);
    for (std::uint64_t i = 0; i < size; ++i) {
        const bool unalloc = (i >= 5000 && i < 125000) || i >= 166000;
        expect[i] = unalloc ? (i < bsize ? backing.bytes()[i] : 0) : top.bytes()[i];
    }
    std::mt19937 g(7);
    for (int round = 0; round < 200; ++round) {
        std::uint64_t offset = g() % size, length = g() % (size - offset + 1);
        if (round % 4 == 0)
            offset = offset / 512 * 512;
        CAPTURE(offset);
        CAPTURE(length);
        ImageReader* layers[2] = {&top, &backing};
        ChainImageReader whole(layers, 2);
        WindowReader window(whole, offset, length);
        ImageReader* chain[1] = {&window};
        const Source s{chain, 1, 0};
        DiskWriter out((length + 511) / 512 * 512);
        Params p;
        p.min_sparse = 0; // dd writes every block
        instar::hosted::BudgetAllocator alloc(3u << 20);
        REQUIRE(run_convert(&s, 1, out, p, alloc, nullptr) == Status::Ok);
        CHECK(out.written == out.disk.size());
        CHECK(std::memcmp(out.disk.data(), expect.data() + offset, length) == 0);
        CHECK(std::all_of(out.disk.begin() + static_cast<std::ptrdiff_t>(length), out.disk.end(),
                          [](std::uint8_t b) { return b == 0; }));
    }
}
