// Unit tests of compare's walk (guest/convert/compare_engine): qemu's status word per layer and
// chain, the first mismatch at sector granularity, strict mode, size mismatches, reads only where
// needed, progress in qemu's chunks, and hostile readers.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "compare_engine.h"
#include "ahead_host.h"
#include "hosted_support.h"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using namespace instar::convert;
using instar::guest::Allocation;
using instar::guest::Extent;
using instar::guest::ImageReader;
using instar::guest::Status;
using instar::hosted::AheadHost;
using instar::hosted::AheadReader;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

class FakeReader final : public ImageReader {
public:
    struct Run {
        std::uint64_t length;
        Allocation allocation;
        std::uint32_t flags = 0;
    };
    FakeReader(std::vector<std::uint8_t> bytes, std::vector<Run> runs) : bytes_(std::move(bytes)), runs_(std::move(runs)) {}
    std::uint64_t virtual_size() const override { return bytes_.size(); }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        if (broken)
            return *out = Extent{0, Allocation::Data, 0, 0, 0, 0}, Status::Ok;
        std::uint64_t pos = 0;
        for (const Run& r : runs_) {
            if (offset < pos + r.length) {
                *out = Extent{};
                out->allocation = r.allocation;
                out->flags = r.flags;
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
        bytes_read += len;
        if (fail_reads)
            return Status::IoError;
        std::memcpy(buf, bytes_.data() + offset, len);
        return Status::Ok;
    }
    void close() override {}
    std::uint64_t status_boundary(std::uint64_t offset) const override {
        return boundary == 0 ? UINT64_MAX : (offset / boundary + 1) * boundary;
    }
    std::uint64_t boundary = 0; // 0: none (the default)
    bool broken = false;
    bool fail_reads = false;
    std::uint64_t bytes_read = 0;

private:
    std::vector<std::uint8_t> bytes_;
    std::vector<Run> runs_;
};

struct Side {
    std::vector<ImageReader*> chain;
    std::vector<std::uint32_t> flags;
    CompareSide view() const { return CompareSide{chain.data(), flags.data(), nullptr, static_cast<std::uint32_t>(chain.size())}; }
};

Side side(std::vector<ImageReader*> chain, std::uint32_t layer_flags = LAYER_SUPPORTS_BACKING) {
    Side s{std::move(chain), {}};
    s.flags.assign(s.chain.size(), layer_flags);
    return s;
}

CompareResult compare(const Side& a, const Side& b, bool strict = false) {
    instar::hosted::BudgetAllocator alloc(64 * MiB);
    CompareParams p;
    p.strict = strict;
    CompareResult r;
    REQUIRE(run_compare(a.view(), b.view(), p, alloc, &r) == Status::Ok);
    return r;
}

std::vector<std::uint8_t> filled(std::uint64_t size, std::uint8_t v) { return std::vector<std::uint8_t>(size, v); }

} // namespace

TEST_CASE("first differing and first non-zero sector") {
    std::vector<std::uint8_t> a(4096, 1), b(4096, 1);
    CHECK(first_diff_sector(a.data(), b.data(), a.size()) == 4096);
    b[1500] = 2;
    CHECK(first_diff_sector(a.data(), b.data(), a.size()) == 1024);
    std::vector<std::uint8_t> z(2000, 0);
    CHECK(first_nonzero_sector(z.data(), z.size()) == 2000);
    z[1999] = 1; // in the partial last sector
    CHECK(first_nonzero_sector(z.data(), z.size()) == 1536);
}

TEST_CASE("identical data, a mismatch reported at its sector, unallocated read as zeros") {
    auto bytes = filled(4 * MiB, 7);
    FakeReader a(bytes, {{4 * MiB, Allocation::Data}});
    bytes[3 * MiB + 700] = 8;
    FakeReader b(bytes, {{4 * MiB, Allocation::Data}});
    CHECK(compare(side({&a}), side({&a})).outcome == CompareOutcome::Identical);
    const auto r = compare(side({&a}), side({&b}));
    CHECK(r.outcome == CompareOutcome::Mismatch);
    CHECK(r.offset == 3 * MiB + 512);

    // Data in one, unallocated (zeros) in the other: the first non-zero sector of the data.
    auto data = filled(2 * MiB, 0);
    data[MiB + 3] = 1;
    FakeReader d(data, {{2 * MiB, Allocation::Data}});
    FakeReader u(filled(2 * MiB, 0), {{2 * MiB, Allocation::Unallocated}});
    const auto r2 = compare(side({&u}), side({&d}));
    CHECK(r2.outcome == CompareOutcome::Mismatch);
    CHECK(r2.offset == MiB);
}

TEST_CASE("zero on both sides is never read") {
    FakeReader a(filled(64 * MiB, 0), {{64 * MiB, Allocation::Zero}});
    FakeReader b(filled(64 * MiB, 0), {{64 * MiB, Allocation::Unallocated}});
    CHECK(compare(side({&a}), side({&b})).outcome == CompareOutcome::Identical);
    CHECK(a.bytes_read == 0);
    CHECK(b.bytes_read == 0);
}

TEST_CASE("backing chains: the backing's data shows through, past a short backing zeros") {
    FakeReader base(filled(2 * MiB, 9), {{2 * MiB, Allocation::Data}});
    FakeReader top(filled(4 * MiB, 0), {{4 * MiB, Allocation::Unallocated}});
    auto flat_bytes = filled(4 * MiB, 0);
    std::memset(flat_bytes.data(), 9, 2 * MiB);
    FakeReader flat(flat_bytes, {{4 * MiB, Allocation::Data}});
    CHECK(compare(side({&top, &base}), side({&flat}, 0)).outcome == CompareOutcome::Identical);
    flat_bytes[3 * MiB] = 1;
    FakeReader flat2(flat_bytes, {{4 * MiB, Allocation::Data}});
    const auto r = compare(side({&top, &base}), side({&flat2}, 0));
    CHECK(r.outcome == CompareOutcome::Mismatch);
    CHECK(r.offset == 3 * MiB);

    std::uint32_t flags = 0;
    std::uint64_t pnum = 0;
    const Side chain = side({&top, &base});
    REQUIRE(qemu_block_status(chain.view(), 0, 4 * MiB, &flags, &pnum) == Status::Ok);
    CHECK(flags == (QBS_DATA | QBS_ALLOCATED));
    CHECK(pnum == 2 * MiB);
    REQUIRE(qemu_block_status(chain.view(), 2 * MiB, 2 * MiB, &flags, &pnum) == Status::Ok);
    CHECK(flags == (QBS_ZERO | QBS_ALLOCATED | QBS_EOF)); // past the short backing
    CHECK(pnum == 2 * MiB);
}

TEST_CASE("status words: supports_backing, no block status, EOF") {
    FakeReader u(filled(MiB, 0), {{MiB, Allocation::Unallocated}});
    std::uint32_t flags = 0;
    std::uint64_t pnum = 0;
    REQUIRE(qemu_block_status(side({&u}).view(), 0, MiB, &flags, &pnum) == Status::Ok);
    CHECK(flags == (QBS_ZERO | QBS_EOF)); // qcow2: unallocated without backing reads ZERO
    REQUIRE(qemu_block_status(side({&u}, 0).view(), 0, MiB, &flags, &pnum) == Status::Ok);
    CHECK(flags == QBS_EOF); // vpc: no flag at all
    REQUIRE(qemu_block_status(side({&u}, LAYER_NO_STATUS).view(), 512, 4096, &flags, &pnum) == Status::Ok);
    CHECK(flags == (QBS_DATA | QBS_ALLOCATED)); // vhdx: all data, the run asked for
    CHECK(pnum == 4096);
    FakeReader h(filled(MiB, 0), {{MiB, Allocation::Zero, instar::guest::EXTENT_OFFSET_VALID}});
    REQUIRE(qemu_block_status(side({&h}, LAYER_HOLE_DATA).view(), 0, MiB, &flags, &pnum) == Status::Ok);
    CHECK(flags == (QBS_DATA | QBS_ZERO | QBS_OFFSET_VALID | QBS_ALLOCATED | QBS_EOF));
}

TEST_CASE("strict mode: sizes, then status words") {
    FakeReader a(filled(2 * MiB, 0), {{2 * MiB, Allocation::Unallocated}});
    FakeReader b(filled(2 * MiB, 0), {{2 * MiB, Allocation::Zero}});
    FakeReader c(filled(3 * MiB, 0), {{3 * MiB, Allocation::Zero}});
    CHECK(compare(side({&a}), side({&b})).outcome == CompareOutcome::Identical);
    const auto r = compare(side({&a}), side({&b}), true);
    CHECK(r.outcome == CompareOutcome::StatusStrict);
    CHECK(r.offset == 0);
    CHECK(compare(side({&b}), side({&c}), true).outcome == CompareOutcome::SizeStrict);
}

TEST_CASE("size mismatch: the larger image's tail must read as zeros") {
    FakeReader small(filled(MiB, 3), {{MiB, Allocation::Data}});
    auto big_bytes = filled(3 * MiB, 0);
    std::memset(big_bytes.data(), 3, MiB);
    FakeReader big(big_bytes, {{MiB, Allocation::Data}, {2 * MiB, Allocation::Zero}});
    auto r = compare(side({&small}), side({&big}));
    CHECK(r.outcome == CompareOutcome::Identical);
    CHECK(r.size_mismatch);
    big_bytes[2 * MiB + 1] = 5;
    FakeReader big2(big_bytes, {{3 * MiB, Allocation::Data}});
    r = compare(side({&big2}), side({&small}));
    CHECK(r.outcome == CompareOutcome::Mismatch);
    CHECK(r.offset == 2 * MiB);
    CHECK(r.size_mismatch);
}

// The chunks a comparison of a and b reports as progress (each with the larger size as total).
static std::vector<std::uint64_t> progress_chunks(FakeReader& a, FakeReader& b) {
    struct Seen {
        std::vector<std::uint64_t> chunks;
        std::uint64_t total;
    } seen{{}, std::max(a.virtual_size(), b.virtual_size())};
    CompareParams p;
    p.progress = [](void* ctx, std::uint64_t chunk, std::uint64_t total) {
        auto* s = static_cast<Seen*>(ctx);
        CHECK(total == s->total);
        s->chunks.push_back(chunk);
    };
    p.progress_ctx = &seen;
    instar::hosted::BudgetAllocator alloc(64 * MiB);
    CompareResult r;
    const Side sa = side({&a}), sb = side({&b});
    REQUIRE(run_compare(sa.view(), sb.view(), p, alloc, &r) == Status::Ok);
    CHECK(r.outcome == CompareOutcome::Identical);
    return seen.chunks;
}

TEST_CASE("progress: qemu's chunks, 2 MiB reads, summing to the larger size") {
    FakeReader a(filled(5 * MiB, 1), {{5 * MiB, Allocation::Data}});
    FakeReader b(filled(7 * MiB, 1), {{5 * MiB, Allocation::Data}, {2 * MiB, Allocation::Zero}});
    CHECK(progress_chunks(a, b) == std::vector<std::uint64_t>{2 * MiB, 2 * MiB, MiB, 2 * MiB});
}

TEST_CASE("progress: a reader's status boundary cuts the walk's steps where qemu's driver stops") {
    // Both sides zero throughout, so nothing is read: the steps are the status answers alone.
    FakeReader a(filled(10 * MiB, 0), {{10 * MiB, Allocation::Zero}});
    FakeReader b(filled(10 * MiB, 0), {{10 * MiB, Allocation::Zero}});
    a.boundary = 4 * MiB; // e.g. a qcow2 L2 slice
    b.boundary = 3 * MiB;
    // min of the two answers at each step: 3 (b), 1 (a to 4), 2 (b to 6), 2 (a to 8), 1 (b to 9), 1.
    CHECK(progress_chunks(a, b) == std::vector<std::uint64_t>{3 * MiB, MiB, 2 * MiB, 2 * MiB, MiB, MiB});
    a.boundary = b.boundary = 0; // without boundaries: one step
    CHECK(progress_chunks(a, b) == std::vector<std::uint64_t>{10 * MiB});
}

TEST_CASE("hostile and failing readers end the walk with an outcome, memory is bounded") {
    FakeReader a(filled(MiB, 1), {{MiB, Allocation::Data}});
    FakeReader b(filled(MiB, 1), {{MiB, Allocation::Data}});
    b.broken = true; // zero-length extents
    auto r = compare(side({&a}), side({&b}));
    CHECK(r.outcome == CompareOutcome::StatusFailed);
    CHECK(r.side == 1);
    b.broken = false;
    b.fail_reads = true;
    r = compare(side({&a}), side({&b}));
    CHECK(r.outcome == CompareOutcome::ReadFailed);
    CHECK(r.side == 1);
    CHECK(r.offset == 0);

    instar::hosted::BudgetAllocator tiny(4096);
    CompareParams p;
    const Side sa = side({&a});
    CHECK(run_compare(sa.view(), sa.view(), p, tiny, &r) == Status::NoMemory);
}

namespace {

std::vector<std::uint8_t> noise(std::uint64_t n, std::uint32_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::uint64_t i = 0; i < n; ++i) {
        seed = seed * 1103515245u + 12345u;
        v[i] = static_cast<std::uint8_t>(seed >> 16);
    }
    return v;
}

struct AheadRun {
    CompareResult result;
    std::vector<std::uint64_t> chunks; // progress, as qemu-img prints it
};

AheadRun compare_ahead(ImageReader& a, ImageReader& b, bool hooks, std::uint64_t budget = 64 * MiB) {
    AheadRun out;
    CompareParams p;
    if (hooks)
        p.ahead = AheadHost::hooks();
    p.progress = [](void* ctx, std::uint64_t chunk, std::uint64_t) { static_cast<AheadRun*>(ctx)->chunks.push_back(chunk); };
    p.progress_ctx = &out;
    instar::hosted::BudgetAllocator alloc(budget);
    const Side sa = side({&a}), sb = side({&b});
    REQUIRE(run_compare(sa.view(), sb.view(), p, alloc, &out.result) == Status::Ok);
    CHECK(AheadHost::late.empty()); // every read made ahead was settled
    return out;
}

} // namespace

TEST_CASE("read-ahead: both images' next chunk is read while this one is compared, settled before use") {
    const auto bytes = noise(9 * MiB + 512, 1);
    auto other = bytes;
    other[6 * MiB + 1000] ^= 1;
    AheadReader a(bytes), b(bytes), c(other);

    AheadHost::reset();
    const AheadRun plain = compare_ahead(a, b, false);
    CHECK(AheadHost::ahead_reads == 0);
    CHECK(plain.result.outcome == CompareOutcome::Identical);

    // Five chunks (2 MiB, the last 1 MiB + 512): both sides of the four after the first ahead.
    AheadHost::reset();
    const AheadRun same = compare_ahead(a, b, true);
    CHECK(same.result.outcome == CompareOutcome::Identical);
    CHECK(same.chunks == plain.chunks);
    CHECK(AheadHost::ahead_reads == 8);
    CHECK(AheadHost::settles == 4);

    // A mismatch inside a chunk read ahead: the same sector as without.
    AheadHost::reset();
    const AheadRun diff = compare_ahead(a, c, true);
    CHECK(diff.result.outcome == CompareOutcome::Mismatch);
    CHECK(diff.result.offset == 6 * MiB + 512);

    // A read ahead that fails is made again in its place; here it works the second time.
    AheadHost::reset();
    AheadHost::fail_offset = 4 * MiB;
    CHECK(compare_ahead(a, b, true).result.outcome == CompareOutcome::Identical);
    CHECK(AheadHost::fail_offset == UINT64_MAX); // it did fail once

    // A read ahead that fails at once with a reason: dropped, given again by the chunk's own read
    // if the failure lasts (then reported as without read-ahead).
    AheadHost::reset();
    AheadHost::refuse_at = 6 * MiB;
    AheadHost::refusals_left = 1;
    CHECK(compare_ahead(a, b, true).result.outcome == CompareOutcome::Identical);
    CHECK(AheadHost::reasons.empty());
    AheadHost::reset();
    AheadHost::refuse_at = 6 * MiB;
    AheadHost::refusals_left = 3;
    const AheadRun failed = compare_ahead(a, b, true);
    CHECK(failed.result.outcome == CompareOutcome::ReadFailed);
    CHECK(failed.result.offset == 6 * MiB);
    CHECK(failed.result.side == 0);
    CHECK(AheadHost::reasons == std::vector<std::uint64_t>{6 * MiB});

    // A host that reads at once: one chunk ahead (both sides), then none.
    AheadHost::reset();
    AheadHost::host_reads_late = false;
    CHECK(compare_ahead(a, b, true).result.outcome == CompareOutcome::Identical);
    CHECK(AheadHost::ahead_reads == 2);

    // Status runs of 1 MiB: each next chunk's status is asked early (once: the walk's own step finds
    // it in the run), so every chunk after the first is still read ahead.
    AheadReader ra(bytes, true, MiB), rb(bytes, true, MiB);
    AheadHost::reset();
    const AheadRun runs = compare_ahead(ra, rb, true);
    CHECK(runs.result.outcome == CompareOutcome::Identical);
    CHECK(runs.chunks.size() == 10);
    CHECK(AheadHost::ahead_reads == 18);
    CHECK(ra.status_calls == 10);

    // A reader that does not allow it, and no room for the second buffers: no read-ahead.
    AheadReader unsafe(bytes, false);
    AheadHost::reset();
    CHECK(compare_ahead(a, unsafe, true).result.outcome == CompareOutcome::Identical);
    CHECK(AheadHost::ahead_reads == 0);
    AheadHost::reset();
    CHECK(compare_ahead(a, b, true, 5 * MiB).result.outcome == CompareOutcome::Identical);
    CHECK(AheadHost::ahead_reads == 0);
}
