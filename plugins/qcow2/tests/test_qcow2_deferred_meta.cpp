// The existing-image writer's deferred metadata (qcow2_deferred_meta.h): small refcount and L2
// writes wait and go out merged, refcounts before L2 entries, data at once, and anything else the
// device is asked writes what waits first.
#include <doctest/doctest.h>

#include "hosted_support.h"
#include "qcow2_deferred_meta.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

using instar::guest::Status;

namespace {

// Records every request that reaches the file: 'r'ead or 'w'rite, offset, length.
class Recorder final : public instar::guest::BlockDevice {
public:
    std::vector<std::uint8_t> bytes = std::vector<std::uint8_t>(1 << 20, 0);
    std::vector<std::string> log;
    std::uint64_t size() const override { return bytes.size(); }
    Status read(std::uint64_t off, void* buf, std::size_t len) override {
        log.push_back("r" + std::to_string(off) + "+" + std::to_string(len));
        std::memcpy(buf, bytes.data() + off, len);
        return Status::Ok;
    }
    Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        log.push_back("w" + std::to_string(off) + "+" + std::to_string(len));
        std::memcpy(bytes.data() + off, buf, len);
        return Status::Ok;
    }
};

} // namespace

TEST_CASE("qcow2 deferred metadata: runs merge, refcounts go before L2 entries, data at once") {
    Recorder file;
    instar::hosted::BudgetAllocator alloc(1 << 20);
    constexpr std::uint64_t CS = 65536;
    instar::qcow2::DeferredMeta m(file, alloc, CS);
    std::vector<std::uint8_t> table(CS, 0); // the writer's copy of the L2 table at 0x40000
    const std::uint8_t rc[2] = {0, 1};
    const std::vector<std::uint8_t> data(4096, 0x5a);
    // Three runs: refcounts contiguous, L2 entries with gaps (every other entry).
    for (int run = 0; run < 3; ++run) {
        REQUIRE(m.defer_refcounts(0x20000 + 2 * run, rc, 2) == Status::Ok);
        REQUIRE(m.write_data(0x80000 + 4096 * run, data.data(), data.size()) == Status::Ok);
        table[16 * run + 7] = static_cast<std::uint8_t>(run + 1);
        REQUIRE(m.defer_table(0x40000, table.data(), 16 * run, 16 * run + 8) == Status::Ok);
    }
    CHECK(file.log == std::vector<std::string>{"w524288+4096", "w528384+4096", "w532480+4096"});
    // A read writes what waits first: the refcounts, then the table's range (gaps from the copy).
    std::uint8_t b[8];
    REQUIRE(m.read(0x40000, b, 8) == Status::Ok);
    CHECK(file.log == std::vector<std::string>{"w524288+4096", "w528384+4096", "w532480+4096", "w131072+6",
                                               "w262144+40", "r262144+8"});
    CHECK(file.bytes[0x40000 + 7] == 1);
    CHECK(file.bytes[0x40000 + 39] == 3);
    CHECK(b[7] == 1);
    // Another table, or a write elsewhere, settles too; settle() with nothing waiting writes nothing.
    file.log.clear();
    REQUIRE(m.defer_table(0x40000, table.data(), 0, 8) == Status::Ok);
    REQUIRE(m.defer_l2(0x30000, rc, 2) == Status::Ok); // (an L1 entry: waits on its own)
    REQUIRE(m.write(0x50000, rc, 2) == Status::Ok);
    REQUIRE(m.settle() == Status::Ok);
    CHECK(file.log == std::vector<std::string>{"w262144+8", "w196608+2", "w327680+2"});
    m.release();
}
