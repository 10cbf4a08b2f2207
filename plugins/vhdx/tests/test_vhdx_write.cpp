// Tests of the VHDX writer: headers updated as qemu's open and first write do, blocks allocated at
// the file end with the BAT sector journalled through the log (entry bytes checked field by
// field), fixed disks written in place, the log wrapping, bounds and refusals; the result is read
// back by the plugin's own info().
#include "hosted_create.h"
#include "hosted_support.h"
#include "vhdx_crc32c.h"
#include "vhdx_create_ids.h"
#include "vhdx_format.h"
#include "vhdx_create.h"
#include "vhdx_write.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Status;

namespace {

constexpr std::uint64_t KiB = 1024, MiB = 1u << 20;
constexpr std::uint64_t H1 = 64 * KiB, H2 = 128 * KiB, LOG = MiB, BAT = 2 * MiB;

std::uint64_t le(const std::vector<std::uint8_t>& b, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
    return v;
}

class OutputView final : public guest::BlockDevice {
public:
    explicit OutputView(hosted::MemoryOutput& out) : out_(out) {}
    std::uint64_t size() const override { return out_.length(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override { return out_.read(offset, buf, len); }
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }

private:
    hosted::MemoryOutput& out_;
};

struct Session {
    hosted::CreateParams p;
    hosted::MemoryTarget target{512 * MiB};
    hosted::BudgetAllocator alloc{8 * MiB};
    std::vector<guest::CreateOption> opts;
    guest::ImageWriter* w = nullptr;
    Status status = Status::Invalid;

    explicit Session(std::uint64_t size, std::vector<std::pair<std::string, std::string>> options = {},
                     std::string backing = {}) {
        p.size = size;
        p.options = std::move(options);
        p.backing_file = std::move(backing);
        for (const auto& [k, v] : p.options)
            opts.push_back({k.c_str(), v.c_str()});
        guest::CreateRequest req{};
        req.size = p.size;
        req.options = opts.data();
        req.option_count = static_cast<std::uint32_t>(opts.size());
        req.file_name = p.file_name.c_str();
        req.backing_file = p.backing_file.empty() ? nullptr : p.backing_file.c_str();
        req.unix_time = p.unix_time;
        req.random = p.random;
        req.qemu_version = p.qemu_version;
        req.allocator = &alloc;
        status = vhdx::create_writer(req, target, &w);
    }
    ~Session() {
        if (w != nullptr)
            w->close();
    }
    std::vector<std::uint8_t> bytes() { return target.image_output().bytes(); }
    std::uint64_t length() { return target.image_output().length(); }
    std::uint32_t create_sequence() const {
        vhdx::VhdxCreateIds ids{};
        vhdx::vhdx_create_ids(p.random, &ids);
        return ids.sequence_number;
    }
};

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::uint8_t>(seed + i * 13 + (i >> 10));
    return v;
}

bool header_valid(const std::vector<std::uint8_t>& b, std::size_t at) {
    return std::memcmp(b.data() + at, "head", 4) == 0 &&
           le(b, at + 4, 4) == vhdx::crc32c_skipping(b.data() + at, 4096, 4);
}

bool guid_zero(const std::vector<std::uint8_t>& b, std::size_t at) {
    for (int i = 0; i < 16; ++i)
        if (b[at + i] != 0)
            return false;
    return true;
}

} // namespace

TEST_CASE("vhdx writer: open updates both headers, as qemu's vhdx_open does for a writable image") {
    Session s(8 * MiB, {{"block_size", std::to_string(MiB)}});
    REQUIRE(s.status == Status::Ok);
    CHECK(s.w->cluster_size() == MiB);
    CHECK(s.w->zero_init());
    const auto b = s.bytes();
    const std::uint64_t seq = s.create_sequence();
    CHECK(le(b, H1 + 8, 8) == seq + 2);
    CHECK(le(b, H2 + 8, 8) == seq + 3);
    CHECK(header_valid(b, H1));
    CHECK(header_valid(b, H2));
    // One session's file write GUID in both; the data write GUIDs are still create's.
    CHECK(std::memcmp(b.data() + H1 + 16, b.data() + H2 + 16, 16) == 0);
    CHECK(std::memcmp(b.data() + H1 + 32, b.data() + H2 + 32, 16) == 0);
    CHECK(guid_zero(b, H1 + 48));
    CHECK(s.length() == 8 * MiB); // the dynamic disk's payload starts at 8 MiB; nothing allocated
}

TEST_CASE("vhdx writer: a dynamic block is allocated at the end and its BAT sector journalled") {
    Session s(8 * MiB, {{"block_size", std::to_string(MiB)}});
    REQUIRE(s.status == Status::Ok);
    const auto a = pattern(8192, 3);
    REQUIRE(s.w->write(3 * MiB + 4096, a.data(), a.size()) == Status::Ok);
    REQUIRE(s.w->write(3 * MiB + 65536, a.data(), 512) == Status::Ok); // same block: nothing new
    REQUIRE(s.w->write(0, a.data(), 512) == Status::Ok);
    REQUIRE(s.w->finish() == Status::Ok);
    const auto b = s.bytes();
    REQUIRE(b.size() == 10 * MiB);

    // BAT: block 3 at 8 MiB, block 0 at 9 MiB, both FULLY_PRESENT (6).
    CHECK(le(b, BAT + 3 * 8, 8) == (8 * MiB | 6));
    CHECK(le(b, BAT + 0, 8) == (9 * MiB | 6));
    CHECK(le(b, BAT + 8, 8) == 2); // block_state_zero's ZERO entries elsewhere
    CHECK(std::memcmp(b.data() + 8 * MiB + 4096, a.data(), a.size()) == 0);
    CHECK(std::memcmp(b.data() + 9 * MiB, a.data(), 512) == 0);

    // Headers: open (+2), first data write (+2, new data write GUIDs), two log writes (+4 each).
    const std::uint64_t seq = s.create_sequence();
    CHECK(le(b, H1 + 8, 8) == seq + 12);
    CHECK(le(b, H2 + 8, 8) == seq + 13);
    CHECK(header_valid(b, H1));
    CHECK(header_valid(b, H2));
    CHECK(guid_zero(b, H1 + 48));
    CHECK(guid_zero(b, H2 + 48));
    CHECK(std::memcmp(b.data() + H1 + 32, b.data() + H2 + 32, 16) != 0); // one data GUID each

    // Two log entries of 8 KiB, the second after the first.
    for (int k = 0; k < 2; ++k) {
        const std::size_t e = LOG + k * 8192;
        CAPTURE(k);
        CHECK(std::memcmp(b.data() + e, "loge", 4) == 0);
        CHECK(le(b, e + 4, 4) == vhdx::crc32c_skipping(b.data() + e, 8192, 4));
        CHECK(le(b, e + 8, 4) == 8192);               // entry length
        CHECK(le(b, e + 12, 4) == k * 8192u);         // tail: the entry's own start
        CHECK(le(b, e + 16, 8) == k + 1u);            // sequence number
        CHECK(le(b, e + 24, 4) == 1);                 // one descriptor
        CHECK(!guid_zero(b, e + 32));                 // the entry's log GUID
        CHECK(le(b, e + 48, 8) == (9 + k) * MiB);     // flushed file offset: the file after allocation
        CHECK(le(b, e + 56, 8) == (9 + k) * MiB);     // last file offset
        CHECK(std::memcmp(b.data() + e + 64, "desc", 4) == 0);
        CHECK(le(b, e + 64 + 16, 8) == BAT);          // the BAT sector's file offset
        CHECK(le(b, e + 64 + 24, 8) == k + 1u);
        CHECK(std::memcmp(b.data() + e + 4096, "data", 4) == 0);
        CHECK(le(b, e + 4096 + 4092, 4) == k + 1u);   // sequence low half
    }
    // The second entry's data sector is the BAT sector as it is now.
    const std::size_t e = LOG + 8192;
    CHECK(std::memcmp(b.data() + e + 4096 + 8, b.data() + BAT + 8, 4084) == 0);
    CHECK(le(b, e + 64 + 8, 8) == le(b, BAT, 8)); // leading bytes

    OutputView view(s.target.image_output());
    const auto r = hosted::run_info(&vhdx::info, view, {}, 1u << 20);
    CHECK(r.status == Status::Ok);
    CHECK(r.info.virtual_size == 8 * MiB);
}

TEST_CASE("vhdx writer: fixed disks") {
    SUBCASE("block_state_zero=off: FULLY_PRESENT blocks written in place, nothing logged") {
        Session s(4 * MiB, {{"subformat", "fixed"}, {"block_state_zero", "off"}, {"block_size", std::to_string(MiB)}});
        REQUIRE(s.status == Status::Ok);
        const std::uint64_t len = s.length();
        const auto a = pattern(4096, 7);
        REQUIRE(s.w->write(2 * MiB + 512, a.data(), a.size()) == Status::Ok);
        const auto b = s.bytes();
        CHECK(b.size() == len);
        const std::uint64_t block2 = le(b, BAT + 16, 8) & ~(MiB - 1);
        CHECK(std::memcmp(b.data() + block2 + 512, a.data(), a.size()) == 0);
        CHECK(guid_zero(b, LOG)); // the log is untouched
        CHECK(le(b, H2 + 8, 8) == s.create_sequence() + 5u);
    }
    SUBCASE("block_state_zero (qemu's default): ZERO entries, so blocks are appended after the payload") {
        Session s(4 * MiB, {{"subformat", "fixed"}, {"block_size", std::to_string(MiB)}});
        REQUIRE(s.status == Status::Ok);
        const std::uint64_t len = s.length();
        const auto a = pattern(4096, 7);
        REQUIRE(s.w->write(MiB, a.data(), a.size()) == Status::Ok);
        const auto b = s.bytes();
        CHECK(b.size() == len + MiB);
        CHECK(le(b, BAT + 8, 8) == (len | 6));
        CHECK(std::memcmp(b.data() + len, a.data(), a.size()) == 0);
    }
}

TEST_CASE("vhdx writer: the log wraps at its end, as qemu's circular log does") {
    // 130 blocks of 1 MiB: 130 entries of 8 KiB in a 1 MiB log (128 fit).
    Session s(130 * MiB, {{"block_size", std::to_string(MiB)}});
    REQUIRE(s.status == Status::Ok);
    const auto a = pattern(512, 1);
    for (int i = 0; i < 130; ++i)
        REQUIRE(s.w->write(i * MiB, a.data(), a.size()) == Status::Ok);
    const auto b = s.bytes();
    CHECK(le(b, LOG + 16, 8) == 129);          // entry 129 overwrote the first
    CHECK(le(b, LOG + 8192 + 16, 8) == 130);
    CHECK(le(b, LOG + 2 * 8192 + 16, 8) == 3); // then the old ones
    CHECK(le(b, LOG + 127 * 8192 + 16, 8) == 128);
    CHECK(le(b, LOG + 8192 + 12, 4) == 8192);
}

TEST_CASE("vhdx writer: write_zeroes writes zeros as data (qemu's vhdx has no zero write)") {
    Session s(8 * MiB, {{"block_size", std::to_string(MiB)}});
    REQUIRE(s.status == Status::Ok);
    REQUIRE(s.w->write_zeroes(5 * MiB, 200 * KiB, true) == Status::Ok);
    const auto b = s.bytes();
    CHECK(le(b, BAT + 5 * 8, 8) == (8 * MiB | 6));
    CHECK(b.size() == 9 * MiB);
}

TEST_CASE("vhdx writer: bounds, compression and differencing disks are refused") {
    Session s(3 * MiB + 512);
    REQUIRE(s.status == Status::Ok);
    CHECK(s.w->cluster_size() == 8 * MiB);
    std::uint8_t buf[1024] = {};
    CHECK(s.w->write(3 * MiB, buf, 1024) == Status::Invalid);
    CHECK(s.w->write(UINT64_MAX - 10, buf, 512) == Status::Invalid);
    CHECK(s.w->write_zeroes(0, 4 * MiB, false) == Status::Invalid);
    CHECK(s.w->write_compressed(0, buf, 512) == Status::Unsupported);
    CHECK(s.w->write(3 * MiB, buf, 512) == Status::Ok);

    Session d(4 * MiB, {}, "base.vhdx");
    CHECK(d.status == Status::Unsupported);
    CHECK(d.target.reason_text() == "Backing file not supported for file format 'vhdx'");

    Session bad(4 * MiB, {{"block_size", std::to_string(3 * MiB)}});
    CHECK(bad.status == Status::Invalid);
    CHECK(bad.w == nullptr);
}

TEST_CASE("vhdx writer: before any write the image is create's, but for the two headers open rewrote") {
    for (const auto& opts : std::vector<std::vector<std::pair<std::string, std::string>>>{
             {}, {{"subformat", "fixed"}}, {{"block_state_zero", "off"}, {"log_size", std::to_string(2 * MiB)}}}) {
        Session s(5 * MiB + 1000, opts);
        REQUIRE(s.status == Status::Ok);
        hosted::MemoryTarget t(64 * MiB);
        REQUIRE(hosted::run_create(vhdx::create, s.p, t) == Status::Ok);
        auto mine = s.bytes(), theirs = t.image_output().bytes();
        REQUIRE(mine.size() == theirs.size());
        for (std::uint64_t h : {H1, H2}) {
            CHECK(le(mine, h + 8, 8) == le(theirs, h + 8, 8) + 2); // sequence numbers moved on by 2
            std::fill(mine.begin() + h, mine.begin() + h + 4096, 0);
            std::fill(theirs.begin() + h, theirs.begin() + h + 4096, 0);
        }
        CHECK(mine == theirs);
    }
}
