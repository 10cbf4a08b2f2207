// Device I/O: O_DIRECT transfers through bounce buffers give the bytes and the file length a plain
// transfer gives; the write-behind queue writes in order (copied metadata writes behind a data
// write included), stays bounded and reports failures.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cstring>
#include <random>

#include "hostile_attacks.h"
#include "vmm/compress_pool.h"
#include "vmm/device_io.h"
#include "vmm_test_support.h"

using namespace instar::vmm;
using vmm_test::long_watchdog;
using vmm_test::TempFile;

namespace {

std::uint64_t length(int fd) {
    struct stat st{};
    REQUIRE(::fstat(fd, &st) == 0);
    return static_cast<std::uint64_t>(st.st_size);
}

std::vector<unsigned char> bytes(std::size_t n, unsigned seed) {
    std::vector<unsigned char> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) b = static_cast<unsigned char>(rng());
    return v;
}

// A second descriptor on the same file with O_DIRECT; nullopt where the file system refuses it.
std::optional<int> direct_fd(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    return fd;
}

} // namespace

TEST_SUITE("device_io") {

TEST_CASE("O_DIRECT writes and reads at any offset and length equal plain ones, length included") {
    auto wd = long_watchdog();
    // Unaligned heads and tails, requests inside one block, across blocks, past the end, larger
    // than the bounce buffer, and writes that extend the file by less than a block.
    struct Op {
        std::uint64_t off, len;
    };
    const Op ops[] = {{0, 104},       {100, 10},         {4000, 200},          {4096, 4096},
                      {12345, 70000}, {1000000, 3 << 20}, {5000000, 1},         {5000003, 4093},
                      {65536, 512},   {8 << 20, 12345},  {(8 << 20) + 100, 5}, {3, (2 << 20) + 77}};
    TempFile plain(std::vector<unsigned char>{});
    TempFile direct(std::vector<unsigned char>{});
    auto dfd = direct_fd(direct.path());
    if (!dfd) {
        MESSAGE("O_DIRECT refused on /tmp: direct path not tested");
        return;
    }
    const Device p{plain.fd(), 1ull << 40, true, true, false};
    const Device d{*dfd, 1ull << 40, true, true, true};
    BounceBuffer b1, b2;
    unsigned seed = 1;
    for (const Op& op : ops) {
        auto data = bytes(op.len, seed++);
        CHECK(device_transfer(p, data.data(), op.len, op.off, true, *wd, b1) == Transfer::Done);
        CHECK(device_transfer(d, data.data(), op.len, op.off, true, *wd, b2) == Transfer::Done);
        CHECK(length(plain.fd()) == length(*dfd));
    }
    CHECK(plain.contents() == direct.contents());
    // Reads, unaligned, through the direct descriptor.
    for (const Op& op : ops) {
        std::vector<unsigned char> a(op.len), c(op.len);
        CHECK(device_transfer(p, a.data(), op.len, op.off, false, *wd, b1) == Transfer::Done);
        CHECK(device_transfer(d, c.data(), op.len, op.off, false, *wd, b2) == Transfer::Done);
        CHECK(a == c);
    }
    // Past the end: both fail.
    std::vector<unsigned char> buf(10);
    const std::uint64_t end = length(plain.fd());
    CHECK(device_transfer(p, buf.data(), 10, end - 5, false, *wd, b1) == Transfer::Failed);
    CHECK(device_transfer(d, buf.data(), 10, end - 5, false, *wd, b2) == Transfer::Failed);
    ::close(*dfd);
}

TEST_CASE("write-behind writes every request in order, each done before the next is taken") {
    auto wd = long_watchdog();
    TempFile out(std::vector<unsigned char>{});
    const Device dev{out.fd(), 1ull << 40, true, true, false};
    WriteBehind wb(*wd);
    REQUIRE(wb.start({}));
    std::vector<unsigned char> model(1 << 20, 0);
    std::vector<unsigned char> bufs[2];
    std::uint64_t last_off = 0;
    std::mt19937 rng(7);
    for (int i = 0; i < 500; ++i) {
        // Even requests in the first half, odd ones in the second: the one in flight never overlaps
        // the one checked below.
        const std::uint64_t half = model.size() / 2;
        const std::uint64_t len = 1 + rng() % (64 << 10);
        const std::uint64_t off = (i % 2) * half + rng() % (half - len);
        auto& data = bufs[i % 2]; // the caller's two buffers, as convert's engine alternates them
        data = bytes(len, static_cast<unsigned>(i));
        REQUIRE(wb.enqueue(dev, data.data(), len, off));
        if (i > 0) { // the write before is done: its bytes are in the file, its buffer is free
            auto& prev = bufs[(i + 1) % 2];
            std::vector<unsigned char> got(prev.size());
            REQUIRE(::pread(out.fd(), got.data(), got.size(), static_cast<off_t>(last_off)) ==
                    static_cast<ssize_t>(got.size()));
            CHECK(got == prev);
            prev.assign(prev.size(), 0xee);
        }
        std::memcpy(model.data() + off, data.data(), len); // later writes win where they overlap
        last_off = off;
    }
    CHECK_FALSE(wb.drain().has_value());
    auto got = out.contents();
    got.resize(model.size());
    CHECK(got == model);
}

TEST_CASE("write-behind reports the first failure and refuses later requests") {
    auto wd = long_watchdog();
    TempFile out(std::vector<unsigned char>(4096, 1));
    const int ro = ::open(out.path().c_str(), O_RDONLY | O_CLOEXEC); // pwrite fails: EBADF
    REQUIRE(ro >= 0);
    const Device bad{ro, 1ull << 40, true, true, false};
    WriteBehind wb(*wd);
    REQUIRE(wb.start({}));
    std::vector<unsigned char> data(4096, 9);
    CHECK(wb.enqueue(bad, data.data(), data.size(), 0));
    auto f = wb.drain();
    REQUIRE(f.has_value());
    CHECK(f->kind == Transfer::Failed);
    CHECK(f->err == EBADF);
    CHECK_FALSE(wb.enqueue(bad, data.data(), data.size(), 0)); // refused once failed
    CHECK(out.contents() == std::vector<unsigned char>(4096, 1));
    ::close(ro);
}

namespace {

// Holds the writer thread in its confine step until release(): requests queue up behind it.
struct Latch {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    std::function<bool()> hold() {
        return [this] {
            std::unique_lock lock(mu);
            cv.wait(lock, [this] { return open; });
            return true;
        };
    }
    void release() {
        {
            std::lock_guard lock(mu);
            open = true;
        }
        cv.notify_all();
    }
};

} // namespace

TEST_CASE("write-behind copies small writes behind a queued one and writes them in order") {
    auto wd = long_watchdog();
    TempFile out(std::vector<unsigned char>{});
    const Device dev{out.fd(), 1ull << 40, true, true, false};
    Latch latch;
    WriteBehind wb(*wd);
    REQUIRE(wb.start(latch.hold()));
    std::vector<unsigned char> small(100, 0x5a);
    CHECK_FALSE(wb.enqueue_copy(dev, small.data(), small.size(), 10)); // nothing queued: write it now
    auto data = bytes(1 << 20, 1);
    REQUIRE(wb.enqueue(dev, data.data(), data.size(), 0));
    REQUIRE(wb.enqueue_copy(dev, small.data(), small.size(), 10)); // over the queued write: lands after it
    small.assign(small.size(), 0x11);                               // a copy: the caller's buffer is free
    CHECK_FALSE(wb.enqueue_copy(dev, data.data(), WRITE_BEHIND_COPY_MAX + 1, 0)); // data, not metadata
    CHECK_FALSE(wb.enqueue_copy(dev, data.data(), 0, 0));
    CHECK(wb.overlaps(out.fd(), 5, 10));
    CHECK(wb.overlaps(out.fd(), (1 << 20) - 1, 10));
    CHECK_FALSE(wb.overlaps(out.fd(), 1 << 20, 10));
    CHECK_FALSE(wb.overlaps(out.fd() + 1000, 5, 10));
    latch.release();
    CHECK_FALSE(wb.drain().has_value());
    CHECK_FALSE(wb.overlaps(out.fd(), 5, 10));
    auto expect = data;
    std::fill(expect.begin() + 10, expect.begin() + 110, 0x5a);
    CHECK(out.contents() == expect);
}

TEST_CASE("write-behind writes nothing queued after a failed write") {
    auto wd = long_watchdog();
    TempFile out(std::vector<unsigned char>(4096, 1));
    TempFile other(std::vector<unsigned char>(4096, 2));
    const int ro = ::open(out.path().c_str(), O_RDONLY | O_CLOEXEC); // pwrite fails: EBADF
    REQUIRE(ro >= 0);
    const Device bad{ro, 1ull << 40, true, true, false};
    const Device good{other.fd(), 1ull << 40, true, true, false};
    Latch latch;
    WriteBehind wb(*wd);
    REQUIRE(wb.start(latch.hold()));
    std::vector<unsigned char> data(4096, 9);
    REQUIRE(wb.enqueue(bad, data.data(), data.size(), 0));
    REQUIRE(wb.enqueue_copy(good, data.data(), 16, 0)); // e.g. the L2 entry for the failed data write
    latch.release();
    auto f = wb.drain();
    REQUIRE(f.has_value());
    CHECK(f->err == EBADF);
    CHECK(other.contents() == std::vector<unsigned char>(4096, 2)); // dropped, as if the process died there
    CHECK_FALSE(wb.enqueue_copy(good, data.data(), 16, 0));
    ::close(ro);
}

TEST_CASE("a writer thread that cannot confine itself fails the queue instead of writing") {
    auto wd = long_watchdog();
    TempFile out(std::vector<unsigned char>{});
    const Device dev{out.fd(), 1ull << 40, true, true, false};
    WriteBehind wb(*wd);
    REQUIRE(wb.start([] { return false; }));
    std::vector<unsigned char> data(100, 3);
    (void)wb.enqueue(dev, data.data(), data.size(), 0);
    REQUIRE(wb.drain().has_value());
    CHECK(out.contents().empty());
}

TEST_CASE("early writeback starts every EARLY_WRITEBACK_BYTES, on flushed buffered devices only") {
    TempFile f(std::vector<unsigned char>{});
    const std::vector<unsigned char> piece(EARLY_WRITEBACK_BYTES / 4, 0x5a);
    Device flushed = output_device(f.fd());
    flushed.early_writeback = true;
    WritebackStarter starter;
    std::uint64_t at = 0;
    int started = 0;
    for (int i = 0; i < 9; ++i) { // 2.25 x the threshold: two starts, at the 4th and 8th write
        REQUIRE(::pwrite(f.fd(), piece.data(), piece.size(), static_cast<off_t>(at)) ==
                static_cast<ssize_t>(piece.size()));
        at += piece.size();
        const bool now = starter.wrote(flushed, piece.size());
        CHECK(now == (i == 3 || i == 7));
        started += now;
    }
    CHECK(started == 2);
    // The pages are the file's as written (writeback changes nothing a reader sees).
    CHECK(length(f.fd()) == at);
    // Not flushed by the operation (-t unsafe, convert -n), or O_DIRECT (no dirty pages): never.
    Device unsafe = output_device(f.fd());
    Device direct = flushed;
    direct.direct = true;
    WritebackStarter other;
    for (int i = 0; i < 8; ++i) {
        CHECK_FALSE(other.wrote(unsafe, EARLY_WRITEBACK_BYTES));
        CHECK_FALSE(other.wrote(direct, EARLY_WRITEBACK_BYTES));
    }
}

TEST_CASE("sandbox write-behind: deferred writes arrive; a failed deferred write fails the run") {
    if (!vmm_test::need_kvm()) return;
    const std::string modules[] = {vmm_test::hostile_module()};
    const std::vector<std::uint8_t> arg{static_cast<std::uint8_t>(Attack::WriteOutputDeferred)};
    TempFile in(std::vector<unsigned char>(8192, 5));
    SandboxConfig cfg;
    cfg.write_behind = true;
    {
        TempFile out(std::vector<unsigned char>{});
        const Device devs[] = {{in.fd(), 8192, false}, output_device(out.fd())};
        auto r = run(cfg, devs, modules, INSTAR_OP_MODULE_RUN, arg);
        REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
        CHECK(r.value().exit_status == 0);
        CHECK(r.value().bytes_written == 8192);
        const auto written = out.contents();
        REQUIRE(written.size() == 8192);
        // The guest overwrote its first buffer while the host may have been writing it: each byte
        // is one of the two (its own output, nothing else), the second write exact.
        for (unsigned i = 0; i < 4096; ++i)
            REQUIRE((written[i] == static_cast<unsigned char>(i * 7) || written[i] == 0xee));
        for (unsigned i = 0; i < 4096; ++i) REQUIRE(written[4096 + i] == static_cast<unsigned char>(i * 11));
    }
    {
        TempFile out(std::vector<unsigned char>{});
        const int ro = ::open(out.path().c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(ro >= 0);
        const Device devs[] = {{in.fd(), 8192, false}, output_device(ro)};
        auto r = run(cfg, devs, modules, INSTAR_OP_MODULE_RUN, arg);
        // The guest exited 0 whatever its writes answered; the host must not call the run a success.
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == ErrorKind::HostIo);
        CHECK(r.error().message.find("could not write") != std::string::npos);
        ::close(ro);
    }
}

} // TEST_SUITE

TEST_SUITE("compress") {

namespace {

std::vector<unsigned char> compress_pattern() {
    constexpr std::size_t IN = 16 << 10, JOBS = 64;
    std::vector<unsigned char> v(IN * JOBS);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<unsigned char>((i / 7) % 13 + (i / IN));
    return v;
}

Outcome<RunResult> compress_run(Attack a, std::uint8_t kind, bool pool) {
    const std::string modules[] = {vmm_test::hostile_module()};
    const std::vector<std::uint8_t> arg{static_cast<std::uint8_t>(a), kind};
    SandboxConfig cfg;
    cfg.compress_workers = pool;
    return run(cfg, {}, modules, INSTAR_OP_MODULE_RUN, arg);
}

} // namespace

TEST_CASE("HC_COMPRESS gives exactly what compressing each job alone gives, with and without workers") {
    if (!vmm_test::need_kvm()) return;
    const auto pattern = compress_pattern();
    for (std::uint8_t kind : {std::uint8_t{INSTAR_COMPRESS_QCOW2_ZLIB}, std::uint8_t{INSTAR_COMPRESS_QCOW2_ZSTD},
                              std::uint8_t{INSTAR_COMPRESS_ZLIB}}) {
        for (bool pool : {false, true}) {
            auto r = compress_run(Attack::CompressGood, kind, pool);
            REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
            REQUIRE(r.value().exit_status == 0);
            REQUIRE(r.value().records.size() == 64);
            for (std::size_t j = 0; j < 64; ++j) {
                const auto& rec = r.value().records[j].data;
                REQUIRE(rec.size() >= 16);
                std::int64_t status = 0;
                std::uint64_t out_len = 0;
                std::memcpy(&status, rec.data(), 8);
                std::memcpy(&out_len, rec.data() + 8, 8);
                CHECK(status == 0);
                std::vector<std::uint8_t> want(20 << 10);
                std::size_t n = 0;
                REQUIRE(compress_one(kind, pattern.data() + j * (16 << 10), 16 << 10, want.data(), want.size(), &n) == 0);
                want.resize(n);
                CHECK(std::vector<std::uint8_t>(rec.begin() + 16, rec.end()) == want);
                CHECK(out_len == n);
            }
        }
    }
}

TEST_CASE("HC_COMPRESS results that do not fit say so") {
    std::vector<std::uint8_t> src(4096);
    std::mt19937 rng(3);
    for (auto& b : src) b = static_cast<std::uint8_t>(rng());
    std::vector<std::uint8_t> dst(100);
    std::size_t n = 0;
    for (std::uint32_t kind : {1u, 2u, 3u}) CHECK(compress_one(kind, src.data(), src.size(), dst.data(), dst.size(), &n) == -INSTAR_ENOSPC);
    CHECK(compress_one(99, src.data(), src.size(), dst.data(), dst.size(), &n) == -INSTAR_EIO);
}

TEST_CASE("deflate results read back through qemu's inflaters, distances past 4 KiB included") {
    // An 8 KiB random block eight times: only matches 8 KiB back shrink it, farther than qcow2's
    // 4 KiB deflate window; qemu inflates a cluster in one call (window 12), which must accept them.
    std::vector<std::uint8_t> block(8 << 10);
    std::mt19937 rng(5);
    for (auto& b : block) b = static_cast<std::uint8_t>(rng());
    std::vector<std::uint8_t> src;
    for (int i = 0; i < 8; ++i) src.insert(src.end(), block.begin(), block.end());
    std::vector<std::uint8_t> dst(src.size() - 1), back(src.size());
    std::size_t n = 0;
    // vmdk's grains: a zlib stream, read with uncompress() as qemu's vmdk driver does.
    REQUIRE(compress_one(INSTAR_COMPRESS_ZLIB, src.data(), src.size(), dst.data(), dst.size(), &n) == 0);
    uLongf len = back.size();
    CHECK(uncompress(back.data(), &len, dst.data(), n) == Z_OK);
    CHECK(len == src.size());
    CHECK(back == src);
    std::fill(back.begin(), back.end(), 0);
    const std::int64_t rc = compress_one(INSTAR_COMPRESS_QCOW2_ZLIB, src.data(), src.size(), dst.data(), dst.size(), &n);
    if (deflate_like_qemu()) {
        CHECK(rc == -INSTAR_ENOSPC); // qemu's own window cannot reach the repeats: stored plainly
        return;
    }
    REQUIRE(rc == 0);
    CHECK(n < (12u << 10)); // the far matches were taken
    z_stream zs{};
    REQUIRE(inflateInit2(&zs, -12) == Z_OK);
    zs.next_in = dst.data();
    zs.avail_in = static_cast<uInt>(n);
    zs.next_out = back.data();
    zs.avail_out = static_cast<uInt>(back.size());
    CHECK(::inflate(&zs, Z_FINISH) == Z_STREAM_END);
    CHECK(zs.total_out == src.size());
    inflateEnd(&zs);
    CHECK(back == src);
}

TEST_CASE("hostile HC_COMPRESS arguments end the guest with a clear error") {
    if (!vmm_test::need_kvm()) return;
    const std::pair<Attack, const char*> cases[] = {
        {Attack::CompressTableOutsideRam, "job table"},
        {Attack::CompressBufferOutsideRam, "outside guest RAM"},
        {Attack::CompressHugeCount, "jobs at once"},
        {Attack::CompressOverlap, "destinations overlap"},
        {Attack::CompressDstOverSrc, "overlaps a source"},
        {Attack::CompressTooBig, "compress job of"},
        {Attack::CompressBadKind, "unknown kind"},
    };
    for (const auto& [a, text] : cases) {
        auto r = compress_run(a, INSTAR_COMPRESS_QCOW2_ZLIB, true);
        REQUIRE_FALSE(r.ok());
        INFO("message: ", r.error().message);
        CHECK(r.error().kind == ErrorKind::GuestBadRequest);
        CHECK(r.error().message.find(text) != std::string::npos);
    }
}

} // TEST_SUITE
