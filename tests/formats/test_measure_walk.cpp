// Unit tests of measure's allocation walk (guest/measure): qcow2_measure's cluster counting over
// synthetic chains, short backing images, huge sparse disks and readers that break their contract.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "measure_walk.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

using instar::guest::Allocation;
using instar::guest::Extent;
using instar::guest::ImageReader;
using instar::guest::Status;
using instar::measure::required_bytes;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

// Status only: runs of one allocation each; reads are never asked for.
class RunReader final : public ImageReader {
public:
    struct Run {
        std::uint64_t length;
        Allocation allocation;
    };
    explicit RunReader(std::vector<Run> runs) : runs_(std::move(runs)) {
        for (const Run& r : runs_)
            size_ += r.length;
    }
    std::uint64_t virtual_size() const override { return size_; }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        ++calls;
        if (broken)
            return *out = Extent{length + 1, Allocation::Data, 0, 0, 0, 0}, Status::Ok;
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
    Status read(std::uint64_t, void*, std::size_t) override { return Status::Invalid; }
    void close() override {}

    bool broken = false;
    int calls = 0;

private:
    std::vector<Run> runs_;
    std::uint64_t size_ = 0;
};

std::uint64_t walk(std::vector<ImageReader*> chain, std::uint32_t cluster, Status expect = Status::Ok) {
    std::vector<instar::measure::Layer> layers;
    for (ImageReader* r : chain)
        layers.push_back({r, nullptr, 0, 65536, false});
    const bool refine[8] = {};
    std::uint64_t required = 0;
    CHECK(required_bytes(layers.data(), refine, static_cast<std::uint32_t>(layers.size()), cluster, &required) ==
          expect);
    return required;
}

} // namespace

TEST_CASE("measure walk: every cluster touched by data counts once") {
    RunReader r({{4 * KiB, Allocation::Data},        // cluster 0
                 {60 * KiB, Allocation::Zero},
                 {1 * KiB, Allocation::Zero},         // cluster 1: zero, then data in its middle
                 {1 * KiB, Allocation::Data},
                 {62 * KiB, Allocation::Unallocated},
                 {64 * KiB, Allocation::Unallocated}, // cluster 2: nothing
                 {60 * KiB, Allocation::Zero},         // cluster 3 and 4: a run across the boundary
                 {8 * KiB, Allocation::Data},
                 {60 * KiB, Allocation::Data}});      // ... and the rest of cluster 4
    CHECK(walk({&r}, 64 * KiB) == 4 * 64 * KiB);
    CHECK(walk({&r}, 4 * KiB) == (1 + 1 + 2 + 15) * 4 * KiB);
    CHECK(walk({&r}, 512) == (8 + 2 + 16 + 120) * 512);
}

TEST_CASE("measure walk: a partial last cluster counts whole") {
    RunReader r({{1000, Allocation::Data}});
    CHECK(walk({&r}, 64 * KiB) == 64 * KiB);
    RunReader z({{1000, Allocation::Zero}});
    CHECK(walk({&z}, 64 * KiB) == 0);
}

TEST_CASE("measure walk: a chain answers where the top is unallocated, zeros past a short backing") {
    RunReader top({{1 * MiB, Allocation::Unallocated}, {1 * MiB, Allocation::Data}, {2 * MiB, Allocation::Unallocated}});
    RunReader base({{512 * KiB, Allocation::Data}, {512 * KiB, Allocation::Zero}, {1 * MiB, Allocation::Data}});
    // base is 2 MiB: [2M, 4M) of the top reads zeros; [1M, 2M) is the top's data.
    CHECK(walk({&top, &base}, 64 * KiB) == 512 * KiB + 1 * MiB);
    CHECK(walk({&top}, 64 * KiB) == 1 * MiB);
}

TEST_CASE("measure walk: a huge sparse disk costs one status call per run") {
    RunReader r({{1ull << 50, Allocation::Unallocated}, {64 * KiB, Allocation::Data}});
    CHECK(walk({&r}, 2 * MiB) == 2 * MiB);
    CHECK(r.calls == 2);
}

TEST_CASE("measure walk: bad cluster sizes and broken readers are refused") {
    RunReader r({{1 * MiB, Allocation::Data}});
    walk({&r}, 0, Status::Invalid);
    walk({&r}, 3000, Status::Invalid);
    r.broken = true;
    walk({&r}, 64 * KiB, Status::Corrupt);
}

namespace {

// A file whose allocation is a list of runs (data or hole); reads are never asked for.
class HoleDevice final : public instar::guest::BlockDevice {
public:
    struct Run {
        std::uint64_t length;
        bool data;
    };
    explicit HoleDevice(std::vector<Run> runs) : runs_(std::move(runs)) {
        for (const Run& r : runs_)
            size_ += r.length;
    }
    std::uint64_t size() const override { return size_; }
    Status read(std::uint64_t, void*, std::size_t) override { return Status::IoError; }
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }
    Status allocation(std::uint64_t offset, bool* data, std::uint64_t* length) override {
        std::uint64_t pos = 0;
        for (const Run& r : runs_) {
            if (offset < pos + r.length) {
                *data = r.data;
                *length = pos + r.length - offset;
                return Status::Ok;
            }
            pos += r.length;
        }
        return Status::IoError;
    }

private:
    std::vector<Run> runs_;
    std::uint64_t size_ = 0;
};

// Data extents mapped 1:1 at file offset `base` + virtual offset.
class MappedReader final : public ImageReader {
public:
    MappedReader(std::uint64_t size, std::uint64_t base) : size_(size), base_(base) {}
    std::uint64_t virtual_size() const override { return size_; }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        *out = Extent{};
        out->length = length;
        out->allocation = Allocation::Data;
        out->flags = instar::guest::EXTENT_OFFSET_VALID;
        out->offset = base_ + offset;
        return Status::Ok;
    }
    Status read(std::uint64_t, void*, std::size_t) override { return Status::Invalid; }
    void close() override {}

private:
    std::uint64_t size_, base_;
};

} // namespace

TEST_CASE("measure walk: qemu's metadata-preallocation check and the file's holes") {
    // 16 MiB of clusters mapped after a 1 MiB header; only the header and 1 MiB of data are allocated.
    HoleDevice file({{2 * MiB, true}, {15 * MiB, false}});
    MappedReader r(16 * MiB, 1 * MiB);
    instar::measure::Layer layer{&r, &file, 2 * MiB, 64 * KiB, true};
    bool pre = false;
    CHECK(instar::measure::detect_metadata_preallocation(layer, &pre) == Status::Ok);
    CHECK(pre);
    bool refine[1] = {true};
    std::uint64_t required = 0;
    CHECK(instar::measure::required_bytes(&layer, refine, 1, 64 * KiB, &required) == Status::Ok);
    CHECK(required == 1 * MiB);
    refine[0] = false;
    CHECK(instar::measure::required_bytes(&layer, refine, 1, 64 * KiB, &required) == Status::Ok);
    CHECK(required == 16 * MiB);

    // Fully allocated: not preallocated metadata.
    layer.allocated = 17 * MiB;
    CHECK(instar::measure::detect_metadata_preallocation(layer, &pre) == Status::Ok);
    CHECK(!pre);
    // Not asked (not qcow2): never.
    layer.allocated = 0;
    layer.detect_prealloc = false;
    CHECK(instar::measure::detect_metadata_preallocation(layer, &pre) == Status::Ok);
    CHECK(!pre);
}
