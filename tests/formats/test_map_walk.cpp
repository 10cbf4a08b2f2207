// Unit tests of qemu-img map's walk (guest/convert/map_walk): block status through chains (depth,
// present, zero past a shorter backing), the per-format styles, joining, batching, the entry bound
// and readers that break their contract.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "map_walk.h"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using instar::convert::map_walk;
using instar::convert::MapLayer;
using instar::convert::MapSink;
using instar::guest::Allocation;
using instar::guest::Extent;
using instar::guest::ImageReader;
using instar::guest::Status;

namespace {

constexpr std::uint64_t KiB = 1024;

// A reader with an explicit run list; runs with `with_offset` report file offset = disk offset + base.
class FakeReader final : public ImageReader {
public:
    struct Run {
        std::uint64_t length;
        Allocation allocation;
        std::uint32_t flags = 0;
        std::uint64_t base = 0;
    };
    FakeReader(std::uint64_t size, std::vector<Run> runs) : size_(size), runs_(std::move(runs)) {}
    std::uint64_t virtual_size() const override { return size_; }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        ++calls;
        if (broken)
            return *out = Extent{}, out->length = length + 1, Status::Ok;
        if (fail_at != UINT64_MAX && offset >= fail_at)
            return Status::Corrupt;
        std::uint64_t pos = 0;
        for (const Run& r : runs_) {
            if (offset < pos + r.length) {
                *out = Extent{};
                out->allocation = r.allocation;
                out->flags = r.flags;
                out->offset = r.base + offset;
                out->length = std::min(pos + r.length - offset, length);
                return Status::Ok;
            }
            pos += r.length;
        }
        return Status::Invalid;
    }
    Status read(std::uint64_t, void*, std::size_t) override { return Status::Invalid; }
    void close() override {}
    bool broken = false;
    std::uint64_t fail_at = UINT64_MAX;
    int calls = 0;

private:
    std::uint64_t size_;
    std::vector<Run> runs_;
};

struct Collect final : MapSink {
    Status emit(const instar_map_entry* e, std::uint32_t n) override {
        batches.push_back(n);
        entries.insert(entries.end(), e, e + n);
        return Status::Ok;
    }
    std::vector<instar_map_entry> entries;
    std::vector<std::uint32_t> batches;
};

std::vector<instar_map_entry> walk(std::vector<MapLayer> chain, std::uint64_t start, std::uint64_t end,
                                   Status expect = Status::Ok, std::uint64_t max = 1u << 20) {
    std::vector<instar_map_entry> batch(INSTAR_MAP_MAX_BATCH);
    Collect sink;
    std::uint32_t failed = 0;
    CHECK(map_walk(chain.data(), static_cast<std::uint32_t>(chain.size()), start, end, batch.data(), max, sink,
                   &failed) == expect);
    return sink.entries;
}

constexpr std::uint32_t OV = instar::guest::EXTENT_OFFSET_VALID;

} // namespace

TEST_CASE("a chain: depth, present, and zeros past a shorter backing") {
    FakeReader base(8 * KiB, {{2 * KiB, Allocation::Data, OV, 100}, {2 * KiB, Allocation::Zero},
                              {4 * KiB, Allocation::Unallocated}});
    FakeReader top(12 * KiB, {{1 * KiB, Allocation::Data, OV, 500}, {11 * KiB, Allocation::Unallocated}});
    const auto e = walk({{&top, 0, 0}, {&base, 0, 0}}, 0, 12 * KiB);
    REQUIRE(e.size() == 5);
    CHECK((e[0].depth == 0 && e[0].flags == (INSTAR_MAP_DATA | INSTAR_MAP_PRESENT | INSTAR_MAP_OFFSET_VALID) &&
           e[0].offset == 500));
    CHECK((e[1].start == 1 * KiB && e[1].length == 1 * KiB && e[1].depth == 1 && e[1].offset == 100 + 1 * KiB));
    CHECK((e[2].depth == 1 && e[2].flags == (INSTAR_MAP_ZERO | INSTAR_MAP_PRESENT)));
    CHECK((e[3].start == 4 * KiB && e[3].depth == 1 && e[3].flags == INSTAR_MAP_ZERO)); // no backing below base
    CHECK((e[4].start == 8 * KiB && e[4].length == 4 * KiB && e[4].depth == 0 && e[4].flags == INSTAR_MAP_ZERO));
}

TEST_CASE("runs join only as entry_mergeable joins them") {
    FakeReader r(8 * KiB, {{1 * KiB, Allocation::Data, OV, 0}, {1 * KiB, Allocation::Data, OV, 0},
                           {1 * KiB, Allocation::Data, OV, 4096}, {5 * KiB, Allocation::Unallocated}});
    const auto e = walk({{&r, 0, 0}}, 0, 8 * KiB);
    REQUIRE(e.size() == 3);
    CHECK(e[0].length == 2 * KiB); // contiguous offsets join
    CHECK(e[1].offset == 4096 + 2 * KiB);
}

TEST_CASE("styles: holes as data, vpc's zeros, no block status, no backing, the raw tail") {
    FakeReader r(4 * KiB, {{2 * KiB, Allocation::Zero, OV, 0}, {2 * KiB, Allocation::Unallocated}});
    auto e = walk({{&r, INSTAR_MAP_STYLE_HOLE_IS_DATA | INSTAR_MAP_STYLE_UNALLOCATED_ZERO, 0}}, 0, 4 * KiB);
    REQUIRE(e.size() == 2);
    CHECK(e[0].flags == (INSTAR_MAP_DATA | INSTAR_MAP_ZERO | INSTAR_MAP_PRESENT | INSTAR_MAP_OFFSET_VALID));
    CHECK(e[1].flags == (INSTAR_MAP_ZERO | INSTAR_MAP_PRESENT));
    e = walk({{&r, INSTAR_MAP_STYLE_NO_STATUS, 0}}, 0, 4 * KiB);
    REQUIRE(e.size() == 1);
    CHECK((e[0].flags == (INSTAR_MAP_DATA | INSTAR_MAP_PRESENT) && r.calls == 2));
    e = walk({{&r, INSTAR_MAP_STYLE_NO_BACKING, 0}}, 2 * KiB, 4 * KiB);
    REQUIRE(e.size() == 1);
    CHECK(e[0].flags == 0);
    FakeReader raw(1536, {{1536, Allocation::Data, OV, 0}});
    e = walk({{&raw, INSTAR_MAP_STYLE_SPLIT_EOF, 1000}}, 0, 1536);
    REQUIRE(e.size() == 2);
    CHECK((e[0].length == 1000 && e[1].start == 1000));
}

TEST_CASE("batches are bounded and the entry bound holds") {
    std::vector<FakeReader::Run> runs;
    for (int i = 0; i < 3000; ++i)
        runs.push_back({512, i % 2 ? Allocation::Zero : Allocation::Data});
    FakeReader r(3000 * 512, runs);
    std::vector<instar_map_entry> batch(INSTAR_MAP_MAX_BATCH);
    Collect sink;
    std::uint32_t failed = 0;
    const MapLayer layer{&r, 0, 0};
    CHECK(map_walk(&layer, 1, 0, 3000 * 512, batch.data(), 1u << 20, sink, &failed) == Status::Ok);
    CHECK(sink.entries.size() == 3000);
    CHECK(sink.batches == std::vector<std::uint32_t>{1024, 1024, 952});
    // The bound: whole runs sent first, the layer marked as none, so the host continues after them.
    Collect capped;
    failed = 0;
    CHECK(map_walk(&layer, 1, 0, 3000 * 512, batch.data(), 100, capped, &failed) == Status::TooLarge);
    CHECK((capped.entries.size() == 100 && failed == UINT32_MAX));
    CHECK(capped.entries.back().start + capped.entries.back().length == 100 * 512);
}

TEST_CASE("reader failures stop the walk after the runs before them; broken readers never loop") {
    FakeReader r(8 * KiB, {{4 * KiB, Allocation::Data, OV, 0}, {4 * KiB, Allocation::Zero}});
    r.fail_at = 4 * KiB;
    const auto e = walk({{&r, 0, 0}}, 0, 8 * KiB, Status::Corrupt);
    CHECK(e.size() == 1);
    FakeReader b(8 * KiB, {});
    b.broken = true;
    walk({{&b, 0, 0}}, 0, 8 * KiB, Status::Corrupt);
    CHECK(walk({{&r, 0, 0}}, 8 * KiB, 8 * KiB).empty()); // an empty range sends nothing
}
