// Unit tests of the convert engine (guest/convert): the request sequence a writer sees for
// synthetic sources, chain composition, -S, -c, -B, progress, memory and hostile readers.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "convert_engine.h"
#include "ahead_host.h"
#include "hosted_support.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <set>
#include <vector>

using instar::convert::Params;
using instar::hosted::AheadHost;
using instar::hosted::AheadReader;
using instar::convert::run_convert;
using instar::convert::Source;
using instar::guest::Allocation;
using instar::guest::Extent;
using instar::guest::ImageReader;
using instar::guest::ImageWriter;
using instar::guest::Status;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

// A reader over a byte vector with an explicit extent list (runs of one allocation each).
class FakeReader final : public ImageReader {
public:
    struct Run {
        std::uint64_t length;
        Allocation allocation;
    };
    FakeReader(std::vector<std::uint8_t> bytes, std::vector<Run> runs) : bytes_(std::move(bytes)), runs_(std::move(runs)) {}
    std::uint64_t virtual_size() const override { return bytes_.size(); }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        ++status_calls;
        if (broken)
            return *out = Extent{0, Allocation::Data, 0, 0, 0, 0}, Status::Ok;
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
    bool backing_valid(const ImageReader&) const override { return !refuse_backing; }
    bool broken = false;
    bool refuse_backing = false; // as a stale vmdk child (its parentCID not its parent's CID)
    int status_calls = 0;

private:
    std::vector<std::uint8_t> bytes_;
    std::vector<Run> runs_;
};

struct Call {
    char kind; // 'w' write, 'z' write_zeroes, 'c' write_compressed, 'f' finish
    std::uint64_t offset;
    std::uint64_t length;
    bool operator==(const Call& o) const { return kind == o.kind && offset == o.offset && length == o.length; }
};

std::string show(const std::vector<Call>& calls) {
    std::string s;
    for (const Call& c : calls)
        s += std::string(1, c.kind) + "(" + std::to_string(c.offset) + "," + std::to_string(c.length) + ") ";
    return s;
}

class RecordingWriter final : public ImageWriter {
public:
    RecordingWriter(std::uint64_t size, std::uint64_t cluster, bool zero_init)
        : disk(size, 0), cluster_(cluster), zero_init_(zero_init) {}
    std::uint64_t cluster_size() const override { return cluster_; }
    bool zero_init() const override { return zero_init_; }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        calls.push_back({'w', offset, len});
        std::memcpy(disk.data() + offset, buf, len);
        return Status::Ok;
    }
    Status write_zeroes(std::uint64_t offset, std::uint64_t len, bool) override {
        calls.push_back({'z', offset, len});
        std::memset(disk.data() + offset, 0, len);
        return Status::Ok;
    }
    Status write_compressed(std::uint64_t offset, const void* buf, std::size_t len) override {
        calls.push_back({'c', offset, len});
        if (len != 0)
            std::memcpy(disk.data() + offset, buf, len);
        return Status::Ok;
    }
    Status finish() override {
        calls.push_back({'f', 0, 0});
        return Status::Ok;
    }
    void close() override {}
    std::vector<std::uint8_t> disk;
    std::vector<Call> calls;

private:
    std::uint64_t cluster_;
    bool zero_init_;
};

std::vector<std::uint8_t> pattern(std::uint64_t n, std::uint8_t seed = 1) {
    std::vector<std::uint8_t> v(n);
    for (std::uint64_t i = 0; i < n; ++i)
        v[i] = static_cast<std::uint8_t>((i * 131 + seed) % 251 + 1); // never zero
    return v;
}

Status convert_one(ImageReader* top, RecordingWriter& w, const Params& p, std::size_t budget = 3 * MiB,
                   ImageReader* backing = nullptr) {
    ImageReader* chain[2] = {top, backing};
    Source s{chain, backing != nullptr ? 2u : 1u};
    instar::hosted::BudgetAllocator alloc(budget);
    return run_convert(&s, 1, w, p, alloc, nullptr);
}

} // namespace

TEST_CASE("data is copied in 2 MiB requests") {
    FakeReader r(pattern(5 * MiB), {{5 * MiB, Allocation::Data}});
    RecordingWriter w(5 * MiB, 65536, true);
    REQUIRE(convert_one(&r, w, Params{}) == Status::Ok);
    CHECK((w.calls == std::vector<Call>{{'w', 0, 2 * MiB}, {'w', 2 * MiB, 2 * MiB}, {'w', 4 * MiB, MiB}, {'f', 0, 0}}));
    CHECK(w.disk == pattern(5 * MiB));
}

TEST_CASE("zero ranges: skipped on a zero-initialised target, write_zeroes otherwise, data with -S 0") {
    FakeReader r(std::vector<std::uint8_t>(3 * MiB, 0), {{3 * MiB, Allocation::Zero}});
    RecordingWriter a(3 * MiB, 65536, true);
    REQUIRE(convert_one(&r, a, Params{}) == Status::Ok);
    CHECK((a.calls == std::vector<Call>{{'f', 0, 0}}));

    RecordingWriter b(3 * MiB, 65536, false);
    REQUIRE(convert_one(&r, b, Params{}) == Status::Ok);
    CHECK((b.calls == std::vector<Call>{{'z', 0, 3 * MiB}, {'f', 0, 0}}));

    Params p;
    p.min_sparse = 0;
    RecordingWriter c(3 * MiB, 65536, true);
    REQUIRE(convert_one(&r, c, p) == Status::Ok);
    CHECK((c.calls == std::vector<Call>{{'w', 0, 2 * MiB}, {'w', 2 * MiB, MiB}, {'f', 0, 0}}));
}

TEST_CASE("zeros inside data: short runs stay in the write, 4 KiB-aligned runs of 4 KiB are skipped") {
    std::vector<std::uint8_t> bytes = pattern(64 * KiB);
    std::memset(bytes.data() + 1024, 0, 2048);      // 2 KiB: shorter than -S, written
    std::memset(bytes.data() + 16 * KiB, 0, 8 * KiB); // aligned 8 KiB: skipped
    FakeReader r(bytes, {{64 * KiB, Allocation::Data}});
    RecordingWriter w(64 * KiB, 65536, true);
    REQUIRE(convert_one(&r, w, Params{}) == Status::Ok);
    CHECK_MESSAGE((w.calls == std::vector<Call>{{'w', 0, 16 * KiB}, {'w', 24 * KiB, 40 * KiB}, {'f', 0, 0}}),
                  show(w.calls));
    CHECK(w.disk == bytes);
}

TEST_CASE("an unaligned zero run is trimmed to the 4 KiB alignment") {
    std::vector<std::uint8_t> bytes = pattern(32 * KiB);
    std::memset(bytes.data() + 5 * KiB, 0, 10 * KiB); // [5K, 15K): only [8K, 12K) is aligned
    FakeReader r(bytes, {{32 * KiB, Allocation::Data}});
    RecordingWriter w(32 * KiB, 65536, true);
    REQUIRE(convert_one(&r, w, Params{}) == Status::Ok);
    CHECK_MESSAGE((w.calls == std::vector<Call>{{'w', 0, 8 * KiB}, {'w', 12 * KiB, 20 * KiB}, {'f', 0, 0}}),
                  show(w.calls));
    CHECK(w.disk == bytes);
}

TEST_CASE("backing chains compose as bdrv_block_status_above") {
    // top: [0,1M) data, [1M,2M) unallocated, [2M,4M) unallocated; backing is 3 MiB of data.
    FakeReader back(pattern(3 * MiB, 7), {{3 * MiB, Allocation::Data}});
    std::vector<std::uint8_t> top_bytes = pattern(4 * MiB, 3);
    FakeReader top(top_bytes, {{MiB, Allocation::Data}, {3 * MiB, Allocation::Unallocated}});
    RecordingWriter w(4 * MiB, 65536, true);
    REQUIRE(convert_one(&top, w, Params{}, 3 * MiB, &back) == Status::Ok);
    std::vector<std::uint8_t> want(4 * MiB, 0);
    std::memcpy(want.data(), top_bytes.data(), MiB);
    std::memcpy(want.data() + MiB, pattern(3 * MiB, 7).data() + MiB, 2 * MiB);
    CHECK(w.disk == want); // past the backing's 3 MiB: zeros
    CHECK_MESSAGE((w.calls == std::vector<Call>{{'w', 0, MiB}, {'w', MiB, 2 * MiB}, {'f', 0, 0}}), show(w.calls));

    // -B: the top alone; its unallocated run is left to the target's backing. qemu decides "zero
    // past the backing's end" by where the run starts, so the run from 1 MiB stays whole.
    Params p;
    p.target_has_backing = true;
    RecordingWriter b(4 * MiB, 65536, false);
    REQUIRE(convert_one(&top, b, p, 3 * MiB, &back) == Status::Ok);
    CHECK_MESSAGE((b.calls == std::vector<Call>{{'w', 0, MiB}, {'f', 0, 0}}), show(b.calls));

    // A run that starts past the source backing's end is zero: write_zeroes (no zero init with -B).
    FakeReader top2(top_bytes, {{MiB, Allocation::Data}, {2 * MiB, Allocation::Unallocated},
                                {MiB, Allocation::Unallocated}});
    RecordingWriter b2(4 * MiB, 65536, false);
    REQUIRE(convert_one(&top2, b2, p, 3 * MiB, &back) == Status::Ok);
    CHECK_MESSAGE((b2.calls == std::vector<Call>{{'w', 0, MiB}, {'z', 3 * MiB, MiB}, {'f', 0, 0}}), show(b2.calls));

    // -B with a known target backing size: zeros past it are left unallocated too.
    p.target_backing_size = 3 * MiB;
    RecordingWriter c(4 * MiB, 65536, false);
    REQUIRE(convert_one(&top, c, p, 3 * MiB, &back) == Status::Ok);
    CHECK_MESSAGE((c.calls == std::vector<Call>{{'w', 0, MiB}, {'f', 0, 0}}), show(c.calls));
}

namespace {
struct Lines final : instar::guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override {
        if (text.empty())
            text.assign(t, n);
    }
};
} // namespace

TEST_CASE("an image that refuses its backing: reads through it fail, qemu's second coroutine reported") {
    // top: [0,64K) data, then unallocated over a backing full of data; qemu's chunks for a vmdk top
    // are one grain (the source's alignment, 64 KiB here).
    FakeReader back(pattern(MiB, 7), {{MiB, Allocation::Data}});
    FakeReader top(pattern(MiB, 3), {{64 * KiB, Allocation::Data}, {MiB - 64 * KiB, Allocation::Unallocated}});
    top.refuse_backing = true;
    ImageReader* chain[2] = {&top, &back};
    auto run = [&](const Params& p, std::string* text) {
        Source s{chain, 2u, 64 * KiB};
        instar::hosted::BudgetAllocator alloc(3 * MiB);
        RecordingWriter w(MiB, 65536, true);
        Lines lines;
        const Status st = run_convert(&s, 1, w, p, alloc, &lines);
        *text = lines.text;
        return st;
    };
    std::string text;
    CHECK(run(Params{}, &text) == Status::Invalid);
    CHECK(text == "\x01" "error while reading at byte 65536: Invalid argument\n"
                  "error while reading at byte 131072: Invalid argument");
    Params one;
    one.one_request = true; // -m 1
    CHECK(run(one, &text) == Status::Invalid);
    CHECK(text == "error while reading at byte 65536: Invalid argument");
    // -B: the top's unallocated run is left to the target's backing, never read.
    Params b;
    b.target_has_backing = true;
    CHECK(run(b, &text) == Status::Ok);
    // The same chain with the backing accepted copies it.
    top.refuse_backing = false;
    CHECK(run(Params{}, &text) == Status::Ok);
}

TEST_CASE("-c writes whole clusters and ends with an empty compressed write") {
    std::vector<std::uint8_t> bytes = pattern(200 * KiB);
    std::memset(bytes.data() + 64 * KiB, 0, 64 * KiB); // one all-zero cluster: skipped
    FakeReader r(bytes, {{100 * KiB, Allocation::Data}, {100 * KiB, Allocation::Data}});
    RecordingWriter w(200 * KiB, 64 * KiB, true);
    Params p;
    p.compressed = true;
    REQUIRE(convert_one(&r, w, p) == Status::Ok);
    CHECK_MESSAGE((w.calls == std::vector<Call>{{'c', 0, 64 * KiB}, {'c', 128 * KiB, 64 * KiB},
                                               {'c', 192 * KiB, 8 * KiB}, {'c', 0, 0}, {'f', 0, 0}}),
                  show(w.calls));
    CHECK(w.disk == bytes);
}

TEST_CASE("several sources are concatenated, each rounded up to a sector") {
    FakeReader a(pattern(1000, 1), {{1000, Allocation::Data}});
    FakeReader b(pattern(4096, 2), {{4096, Allocation::Data}});
    ImageReader* ca[1] = {&a};
    ImageReader* cb[1] = {&b};
    Source s[2] = {{ca, 1}, {cb, 1}};
    RecordingWriter w(1024 + 4096, 65536, true);
    instar::hosted::BudgetAllocator alloc(3 * MiB);
    REQUIRE(run_convert(s, 2, w, Params{}, alloc, nullptr) == Status::Ok);
    CHECK_MESSAGE((w.calls == std::vector<Call>{{'w', 0, 1024}, {'w', 1024, 4096}, {'f', 0, 0}}), show(w.calls));
    CHECK(std::memcmp(w.disk.data(), pattern(1000, 1).data(), 1000) == 0);
    CHECK(w.disk[1000] == 0);
    CHECK(std::memcmp(w.disk.data() + 1024, pattern(4096, 2).data(), 4096) == 0);
}

TEST_CASE("progress counts the sectors copied, as qemu's allocated_done / allocated_sectors") {
    FakeReader r(pattern(3 * MiB), {{MiB, Allocation::Data}, {MiB, Allocation::Zero}, {MiB, Allocation::Data}});
    RecordingWriter w(3 * MiB, 65536, true);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
    Params p;
    p.progress = [](void* ctx, std::uint64_t done, std::uint64_t total) {
        static_cast<std::vector<std::pair<std::uint64_t, std::uint64_t>>*>(ctx)->emplace_back(done, total);
    };
    p.progress_ctx = &seen;
    REQUIRE(convert_one(&r, w, p) == Status::Ok);
    CHECK((seen == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{2048, 4096}, {4096, 4096}}));
}

TEST_CASE("memory stays at the copy buffer; an exhausted arena and a broken reader fail cleanly") {
    FakeReader r(pattern(8 * MiB), {{8 * MiB, Allocation::Data}});
    RecordingWriter w(8 * MiB, 65536, true);
    instar::hosted::BudgetAllocator alloc(4 * MiB);
    ImageReader* chain[1] = {&r};
    Source s{chain, 1};
    REQUIRE(run_convert(&s, 1, w, Params{}, alloc, nullptr) == Status::Ok);
    CHECK(alloc.peak() <= 2 * MiB + 4096);

    RecordingWriter w2(8 * MiB, 65536, true);
    CHECK(convert_one(&r, w2, Params{}, MiB) == Status::NoMemory);

    r.broken = true; // a zero-length extent: refused, not looped on
    RecordingWriter w3(8 * MiB, 65536, true);
    CHECK(convert_one(&r, w3, Params{}) == Status::Corrupt);
    CHECK(r.status_calls < 10);
}

namespace {

// A host with write-behind, as the runtime and the hypercall server make it: a write from inside the
// engine's deferral window is taken but its bytes are read only when the next write arrives or
// the window is settled, so a buffer refilled too early shows up as wrong data on the disk.
struct DeferringHost {
    static inline const std::uint8_t* window = nullptr;
    static inline std::uint64_t window_len = 0;
    static inline const std::uint8_t* in_flight_window = nullptr;
    static inline std::vector<std::uint8_t>* disk = nullptr;
    static inline std::uint64_t off = 0, len = 0;
    static inline const std::uint8_t* src = nullptr;
    static inline std::set<const void*> buffers;
    static inline int deferred = 0;
    static inline int waits = 0; // settles that found their buffer's write still in flight
    static void complete() {
        if (src != nullptr)
            std::memcpy(disk->data() + off, src, len);
        src = nullptr;
        in_flight_window = nullptr;
    }
    static void defer(const void* buf, std::uint64_t n) {
        window = static_cast<const std::uint8_t*>(buf);
        window_len = n;
        if (buf != nullptr)
            buffers.insert(buf);
    }
    static void settle(const void* buf) {
        if (in_flight_window == buf) {
            ++waits;
            complete();
        }
    }
};

class DeferringWriter final : public ImageWriter {
public:
    explicit DeferringWriter(std::uint64_t size) : disk(size, 0) { DeferringHost::disk = &disk; }
    std::uint64_t cluster_size() const override { return 65536; }
    bool zero_init() const override { return true; }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        DeferringHost::complete(); // the host finishes the write before takes the next
        const auto* p = static_cast<const std::uint8_t*>(buf);
        if (DeferringHost::window != nullptr && p >= DeferringHost::window &&
            p + len <= DeferringHost::window + DeferringHost::window_len) {
            DeferringHost::off = offset;
            DeferringHost::len = len;
            DeferringHost::src = p;
            DeferringHost::in_flight_window = DeferringHost::window;
            ++DeferringHost::deferred;
        } else {
            std::memcpy(disk.data() + offset, buf, len);
        }
        return Status::Ok;
    }
    Status write_zeroes(std::uint64_t offset, std::uint64_t len, bool) override {
        DeferringHost::complete();
        std::memset(disk.data() + offset, 0, len);
        return Status::Ok;
    }
    Status write_compressed(std::uint64_t, const void*, std::size_t) override { return Status::Unsupported; }
    Status finish() override {
        DeferringHost::complete();
        return Status::Ok;
    }
    void close() override {}
    std::vector<std::uint8_t> disk;
};

} // namespace

namespace {

// Params for a host that defers writes (DeferringHost), with its counters reset.
Params deferring_params() {
    DeferringHost::buffers.clear();
    DeferringHost::deferred = 0;
    DeferringHost::waits = 0;
    Params p;
    p.defer_writes = DeferringHost::defer;
    p.settle_writes = DeferringHost::settle;
    p.writes_deferred = [] { return DeferringHost::deferred > 0; };
    return p;
}

} // namespace

TEST_CASE("write-behind: two buffers alternate, each settled before it is filled again or freed") {
    // Data, a zero run, data again: the buffer written two chunks ago is refilled while the last
    // write may be in flight, and a chunk without a write sits between two with one.
    std::vector<std::uint8_t> bytes = pattern(9 * MiB);
    std::fill(bytes.begin() + 4 * MiB, bytes.begin() + 5 * MiB, 0);
    FakeReader r(bytes, {{4 * MiB, Allocation::Data}, {MiB, Allocation::Zero}, {4 * MiB, Allocation::Data}});
    DeferringWriter w(9 * MiB);
    Params p = deferring_params();
    ImageReader* chain[1] = {&r};
    Source s{chain, 1};
    instar::hosted::BudgetAllocator alloc(5 * MiB);
    REQUIRE(run_convert(&s, 1, w, p, alloc, nullptr) == Status::Ok);
    CHECK(DeferringHost::buffers.size() == 2);
    CHECK(DeferringHost::deferred == 4);
    CHECK(DeferringHost::src == nullptr); // nothing left in flight
    CHECK(w.disk == bytes);
    CHECK(alloc.peak() <= 4 * MiB + 4096);

    // Without room for a second buffer: one buffer, each refill waits for its write; the same bytes.
    DeferringHost::buffers.clear();
    DeferringHost::deferred = 0;
    DeferringWriter w2(9 * MiB);
    instar::hosted::BudgetAllocator small(3 * MiB);
    REQUIRE(run_convert(&s, 1, w2, p, small, nullptr) == Status::Ok);
    CHECK(DeferringHost::buffers.size() == 1);
    CHECK(w2.disk == bytes);

    // A host that never defers: one buffer, as without write-behind.
    DeferringHost::buffers.clear();
    DeferringHost::deferred = 0;
    p.writes_deferred = [] { return false; };
    DeferringWriter w3(9 * MiB);
    instar::hosted::BudgetAllocator budget(5 * MiB);
    REQUIRE(run_convert(&s, 1, w3, p, budget, nullptr) == Status::Ok);
    CHECK(DeferringHost::buffers.size() == 1);
    CHECK(budget.peak() <= 2 * MiB + 4096);
    CHECK(w3.disk == bytes);
}

TEST_CASE("write-behind: zero runs between data runs take no buffer, so no refill waits for a write") {
    // Alternating 1 MiB data and zero runs (qcow2 -> raw of a half-empty image): each data run must
    // go to the buffer the last data run did not use. Turning the buffers on every run put every
    // data run in the same buffer, and every refill waited for the write before it.
    std::vector<std::uint8_t> bytes = pattern(8 * MiB);
    std::vector<FakeReader::Run> extents;
    for (std::uint64_t at = 0; at < 8 * MiB; at += 2 * MiB) {
        std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at + MiB), bytes.begin() + static_cast<std::ptrdiff_t>(at + 2 * MiB), 0);
        extents.push_back({MiB, Allocation::Data});
        extents.push_back({MiB, Allocation::Zero});
    }
    FakeReader r(bytes, extents);
    DeferringWriter w(8 * MiB);
    Params p = deferring_params();
    ImageReader* chain[1] = {&r};
    Source s{chain, 1};
    instar::hosted::BudgetAllocator alloc(5 * MiB);
    REQUIRE(run_convert(&s, 1, w, p, alloc, nullptr) == Status::Ok);
    CHECK(DeferringHost::deferred == 4);
    CHECK(DeferringHost::buffers.size() == 2);
    CHECK(DeferringHost::waits == 1); // only the last write, settled before its buffer is freed
    CHECK(w.disk == bytes);
}

namespace {

Params ahead_params() {
    Params p;
    p.ahead = AheadHost::hooks();
    return p;
}

} // namespace

TEST_CASE("read-ahead: the next chunk is read before this one is written, and settled before use") {
    // Data, a zero run (written zeros, as a raw source has them), data again, and an odd tail.
    std::vector<std::uint8_t> bytes = pattern(9 * MiB + 512);
    std::fill(bytes.begin() + 4 * MiB, bytes.begin() + 5 * MiB, 0);
    AheadReader r(bytes);
    RecordingWriter plain(bytes.size(), 65536, true);
    AheadHost::reset();
    REQUIRE(convert_one(&r, plain, Params{}) == Status::Ok);
    CHECK(AheadHost::ahead_reads == 0);

    AheadHost::reset();
    RecordingWriter w(bytes.size(), 65536, true);
    REQUIRE(convert_one(&r, w, ahead_params(), 5 * MiB) == Status::Ok);
    CHECK(w.disk == bytes);
    CHECK(show(w.calls) == show(plain.calls)); // the same requests in the same order
    CHECK(AheadHost::ahead_reads == 4);        // every chunk but the first
    CHECK(AheadHost::settles == 4);
    CHECK(AheadHost::late.empty());

    // A read ahead that fails is made again when its chunk comes (its failure, if lasting, is
    // reported there, in order); here it works the second time.
    AheadHost::reset();
    AheadHost::fail_offset = 4 * MiB;
    RecordingWriter again(bytes.size(), 65536, true);
    REQUIRE(convert_one(&r, again, ahead_params(), 5 * MiB) == Status::Ok);
    CHECK(again.disk == bytes);
    CHECK(AheadHost::fail_offset == UINT64_MAX); // it did fail once

    // A read ahead that fails at once with a reason: the reason is dropped, and the chunk's own read
    // gives it when the chunk comes; once only, the copy then succeeds.
    AheadHost::reset();
    AheadHost::refuse_at = 6 * MiB;
    AheadHost::refusals_left = 1;
    RecordingWriter retried(bytes.size(), 65536, true);
    REQUIRE(convert_one(&r, retried, ahead_params(), 5 * MiB) == Status::Ok);
    CHECK(retried.disk == bytes);
    CHECK(AheadHost::reasons.empty());
    // For good: one reason, from the chunk's own read, after the chunks before it were written.
    AheadHost::reset();
    AheadHost::refuse_at = 6 * MiB;
    AheadHost::refusals_left = 2;
    RecordingWriter failed(bytes.size(), 65536, true);
    CHECK(convert_one(&r, failed, ahead_params(), 5 * MiB) == Status::Corrupt);
    CHECK(AheadHost::reasons == std::vector<std::uint64_t>{6 * MiB});
    CHECK(std::equal(bytes.begin(), bytes.begin() + 6 * MiB, failed.disk.begin()));

    // A host that reads at once: one read ahead, then none (nothing would overlap).
    AheadHost::reset();
    AheadHost::host_reads_late = false;
    RecordingWriter once(bytes.size(), 65536, true);
    REQUIRE(convert_one(&r, once, ahead_params(), 5 * MiB) == Status::Ok);
    CHECK(once.disk == bytes);
    CHECK(AheadHost::ahead_reads == 1);

    // A reader that does not allow it, and no room for a second buffer: no read-ahead.
    AheadReader unsafe(bytes, false);
    AheadHost::reset();
    RecordingWriter w2(bytes.size(), 65536, true);
    REQUIRE(convert_one(&unsafe, w2, ahead_params(), 5 * MiB) == Status::Ok);
    CHECK(AheadHost::ahead_reads == 0);
    CHECK(w2.disk == bytes);
    AheadHost::reset();
    RecordingWriter w3(bytes.size(), 65536, true);
    REQUIRE(convert_one(&r, w3, ahead_params(), 3 * MiB) == Status::Ok);
    CHECK(AheadHost::ahead_reads == 0);
    CHECK(w3.disk == bytes);
}

namespace {

// A reader whose bytes [bad_from, bad_to) fail to read, and whose block status fails for any query
// touching them (as qcow2's reader does for one corrupt L2 entry).
class DamagedReader final : public ImageReader {
public:
    DamagedReader(std::vector<std::uint8_t> bytes, std::uint64_t from, std::uint64_t to)
        : bytes_(std::move(bytes)), from_(from), to_(to) {}
    std::uint64_t virtual_size() const override { return bytes_.size(); }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        if (offset < to_ && offset + length > from_)
            return Status::Corrupt;
        *out = Extent{};
        out->allocation = Allocation::Data;
        out->length = length;
        return Status::Ok;
    }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (offset < to_ && offset + len > from_)
            return Status::Corrupt;
        std::memcpy(buf, bytes_.data() + offset, len);
        return Status::Ok;
    }
    void close() override {}

private:
    std::vector<std::uint8_t> bytes_;
    std::uint64_t from_, to_;
};

struct Warning {
    std::uint32_t kind;
    std::uint64_t offset;
    bool operator==(const Warning& o) const { return kind == o.kind && offset == o.offset; }
};

void note_warning(void* ctx, std::uint32_t kind, std::uint64_t offset, Status) {
    static_cast<std::vector<Warning>*>(ctx)->push_back({kind, offset});
}

} // namespace

TEST_CASE("--salvage: failed sectors read as zeros, each warned about where qemu-img warns") {
    const std::vector<std::uint8_t> bytes = pattern(256 * KiB);
    DamagedReader r(bytes, 64 * KiB, 64 * KiB + 1024); // two bad sectors
    RecordingWriter w(256 * KiB, 65536, true);
    CHECK(convert_one(&r, w, Params{}) == Status::Corrupt); // without --salvage: the first error stops it

    RecordingWriter ws(256 * KiB, 65536, true);
    std::vector<Warning> warnings;
    Params p;
    p.salvage = true;
    p.salvage_warning = note_warning;
    p.salvage_ctx = &warnings;
    REQUIRE(convert_one(&r, ws, p) == Status::Ok);
    std::vector<std::uint8_t> expect = bytes;
    std::memset(expect.data() + 64 * KiB, 0, 1024);
    CHECK(ws.disk == expect);
    // Block status twice per bad sector (the counting pass, then the copy), each copy-pass status
    // failure followed by its read failure, as qemu-img prints them.
    const std::uint64_t a = 64 * KiB, b = 64 * KiB + 512;
    CHECK((warnings == std::vector<Warning>{{2, a}, {2, b}, {2, a}, {1, a}, {2, b}, {1, b}}));
}

TEST_CASE("--salvage: a read that fails in a good-status run is retried sector by sector") {
    // Status succeeds everywhere (the damage is only in the data), so the 2 MiB read fails and is
    // retried per sector from the start of the request.
    class ReadOnlyDamage final : public ImageReader {
    public:
        std::uint64_t virtual_size() const override { return 8 * KiB; }
        Status status(std::uint64_t, std::uint64_t length, Extent* out) override {
            *out = Extent{};
            out->allocation = Allocation::Data;
            out->length = length;
            return Status::Ok;
        }
        Status read(std::uint64_t offset, void* buf, std::size_t len) override {
            if (offset <= 4096 && offset + len > 4096)
                return Status::IoError;
            std::memset(buf, 0x5a, len);
            return Status::Ok;
        }
        void close() override {}
    } r;
    RecordingWriter w(8 * KiB, 65536, true);
    std::vector<Warning> warnings;
    Params p;
    p.salvage = true;
    p.salvage_warning = note_warning;
    p.salvage_ctx = &warnings;
    REQUIRE(convert_one(&r, w, p) == Status::Ok);
    CHECK((warnings == std::vector<Warning>{{1, 4096}}));
    CHECK(w.disk[4095] == 0x5a);
    CHECK(w.disk[4096] == 0);
    CHECK(w.disk[4607] == 0);
    CHECK(w.disk[4608] == 0x5a);
}
