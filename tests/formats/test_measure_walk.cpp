// Unit tests of measure's allocation walk (guest/measure): qcow2_measure's cluster counting over
// synthetic chains, short backing images, huge sparse disks and readers that break their contract.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "chain_reader.h"
#include "measure_walk.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

using instar::convert::ChainReader;
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
    ChainReader reader(chain.data(), static_cast<std::uint32_t>(chain.size()));
    std::uint64_t required = 0;
    CHECK(required_bytes(reader, cluster, &required) == expect);
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
