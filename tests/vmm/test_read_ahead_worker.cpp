// The sandboxes' reader thread (vmm/read_ahead_worker.h): reads land where they were asked,
// failures reach the next settle once, the queue is bounded, settle makes the reads the thread has
// not started, and a failed start loses nothing silently.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "vmm/read_ahead_worker.h"
#include "vmm_test_support.h"

using namespace instar::vmm;
using vmm_test::long_watchdog;
using vmm_test::pattern;
using vmm_test::TempFile;

TEST_SUITE("read_ahead") {

TEST_CASE("every queued read is in place when settle returns") {
    auto wd = long_watchdog();
    const auto data = pattern(4 << 20);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    ReadAheadWorker reader(*wd);
    BounceBuffer bounce;
    REQUIRE(reader.start({}));
    const std::uint64_t len = data.size() / 4;
    std::vector<unsigned char> got(2 * len, 0xee);
    for (int round = 0; round < 50; ++round) {
        // Two reads at a time, as compare's walk asks for both sides' next chunk.
        const std::uint64_t off = static_cast<std::uint64_t>(round) * 4099 % (data.size() / 2);
        REQUIRE(reader.submit(dev, got.data(), len, off));
        REQUIRE(reader.submit(dev, got.data() + len, len, off + len));
        REQUIRE(reader.settle(bounce) == Transfer::Done);
        CHECK(std::equal(got.begin(), got.end(), data.begin() + static_cast<long>(off)));
        std::fill(got.begin(), got.end(), 0xee);
    }
}

TEST_CASE("a failed read is reported by the next settle only, and the reads after it are made") {
    auto wd = long_watchdog();
    const auto data = pattern(1 << 16);
    TempFile f(data);
    const Device dev{f.fd(), 1ull << 20, false}; // claims more than the file holds: reads past it fail
    ReadAheadWorker reader(*wd);
    BounceBuffer bounce;
    REQUIRE(reader.start({}));
    std::vector<unsigned char> a(4096, 0), b(4096, 0);
    REQUIRE(reader.submit(dev, a.data(), a.size(), 1 << 19)); // past the file's end: EIO
    REQUIRE(reader.submit(dev, b.data(), b.size(), 4096));
    CHECK(reader.settle(bounce) == Transfer::Failed);
    CHECK(std::equal(b.begin(), b.end(), data.begin() + 4096));
    REQUIRE(reader.submit(dev, b.data(), b.size(), 0));
    CHECK(reader.settle(bounce) == Transfer::Done);
    CHECK(std::equal(b.begin(), b.end(), data.begin()));
}

TEST_CASE("the queue holds READ_AHEAD_MAX_JOBS reads; then the caller reads at once") {
    auto wd = long_watchdog();
    const auto data = pattern(4096);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    ReadAheadWorker reader(*wd);
    BounceBuffer bounce; // not started: nothing leaves the queue
    std::vector<unsigned char> buf(64);
    for (std::size_t i = 0; i < READ_AHEAD_MAX_JOBS; ++i) CHECK(reader.submit(dev, buf.data(), buf.size(), 0));
    CHECK_FALSE(reader.submit(dev, buf.data(), buf.size(), 0));
    // Destroyed with reads queued: they are dropped, nothing waits for them.
}

TEST_CASE("a reader thread that cannot confine itself takes nothing and fails what it took") {
    auto wd = long_watchdog();
    const auto data = pattern(4096);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    ReadAheadWorker reader(*wd);
    BounceBuffer bounce;
    std::vector<unsigned char> buf(64, 0);
    REQUIRE(reader.submit(dev, buf.data(), buf.size(), 0)); // taken before the thread ran
    REQUIRE(reader.start([] { return false; }));
    // Either the thread refused it first (Failed: the guest must not take it as read) or settle
    // read it itself: never Done with the buffer unread.
    const Transfer t = reader.settle(bounce);
    CHECK((t == Transfer::Failed ||
           (t == Transfer::Done && std::equal(buf.begin(), buf.end(), data.begin()))));
    // Once the thread has refused, nothing more is taken.
    bool refused = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!refused && std::chrono::steady_clock::now() < until) {
        refused = !reader.submit(dev, buf.data(), buf.size(), 0);
        if (!refused) (void)reader.settle(bounce);
    }
    CHECK(refused);
    CHECK(reader.settle(bounce) == Transfer::Done);
}

TEST_CASE("settle makes the reads the thread has not started") {
    auto wd = long_watchdog();
    const auto data = pattern(1 << 20);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    ReadAheadWorker reader(*wd); // no thread: every read is settle's own
    BounceBuffer bounce;
    std::vector<unsigned char> a(1 << 19, 0), b(1 << 19, 0);
    REQUIRE(reader.submit(dev, a.data(), a.size(), 0));
    REQUIRE(reader.submit(dev, b.data(), b.size(), 1 << 19));
    CHECK(reader.settle(bounce) == Transfer::Done);
    CHECK(std::equal(a.begin(), a.end(), data.begin()));
    CHECK(std::equal(b.begin(), b.end(), data.begin() + (1 << 19)));
    // A failure among them reaches this settle, and only this one.
    const Device longer{f.fd(), 4ull << 20, false};
    REQUIRE(reader.submit(longer, a.data(), 4096, 2 << 20)); // past the file's end: EIO
    REQUIRE(reader.submit(dev, b.data(), 4096, 0));
    CHECK(reader.settle(bounce) == Transfer::Failed);
    CHECK(reader.settle(bounce) == Transfer::Done);
}

} // TEST_SUITE
