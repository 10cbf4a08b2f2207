// The KVM sandbox's reader thread (vmm/read_ahead_worker.h): reads land where they were asked,
// failures reach the next settle once, the queue is bounded, and a failed start loses nothing
// silently.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

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
    REQUIRE(reader.start({}));
    const std::uint64_t len = data.size() / 4;
    std::vector<unsigned char> got(2 * len, 0xee);
    for (int round = 0; round < 50; ++round) {
        // Two reads at a time, as compare's walk asks for both sides' next chunk.
        const std::uint64_t off = static_cast<std::uint64_t>(round) * 4099 % (data.size() / 2);
        REQUIRE(reader.submit(dev, got.data(), len, off));
        REQUIRE(reader.submit(dev, got.data() + len, len, off + len));
        REQUIRE(reader.settle() == Transfer::Done);
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
    REQUIRE(reader.start({}));
    std::vector<unsigned char> a(4096, 0), b(4096, 0);
    REQUIRE(reader.submit(dev, a.data(), a.size(), 1 << 19)); // past the file's end: EIO
    REQUIRE(reader.submit(dev, b.data(), b.size(), 4096));
    CHECK(reader.settle() == Transfer::Failed);
    CHECK(std::equal(b.begin(), b.end(), data.begin() + 4096));
    REQUIRE(reader.submit(dev, b.data(), b.size(), 0));
    CHECK(reader.settle() == Transfer::Done);
    CHECK(std::equal(b.begin(), b.end(), data.begin()));
}

TEST_CASE("the queue holds READ_AHEAD_MAX_JOBS reads; then the caller reads at once") {
    auto wd = long_watchdog();
    const auto data = pattern(4096);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    ReadAheadWorker reader(*wd); // not started: nothing leaves the queue
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
    std::vector<unsigned char> buf(64, 0);
    REQUIRE(reader.submit(dev, buf.data(), buf.size(), 0)); // taken before the thread ran
    REQUIRE(reader.start([] { return false; }));
    CHECK(reader.settle() == Transfer::Failed); // never read: the guest must not take it as read
    CHECK_FALSE(reader.submit(dev, buf.data(), buf.size(), 0));
    CHECK(reader.settle() == Transfer::Done);
}

} // TEST_SUITE
