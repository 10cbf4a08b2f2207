// VMM benchmark (not a test): boot-to-exit latency of a no-op guest, and device-read throughput into
// guest RAM compared with a plain pread loop on the same file in the same run.
// Targets (issue 3): < 1 ms boot-to-exit; device reads >= 90% of pread.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "vmm/sandbox.h"

using namespace instar::vmm;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int BOOT_RUNS = 300;
constexpr std::uint64_t FILE_SIZE = 512ull << 20; // big enough that boot cost is noise
constexpr std::uint64_t CHUNK = 4ull << 20;       // a typical large request (a qcow2 cluster run)
constexpr int READ_PASSES = 9;
constexpr int ISOLATION_PAUSE_MS = 3; // longer than a VM teardown (~0.3 ms)

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    std::uint64_t file_size = FILE_SIZE, chunk = CHUNK;
    if (argc > 1) file_size = std::strtoull(argv[1], nullptr, 0) << 20; // MiB
    if (argc > 2) chunk = std::strtoull(argv[2], nullptr, 0) << 20;     // MiB
    if (chunk == 0 || file_size == 0 || file_size % chunk != 0) {
        std::fprintf(stderr, "usage: bench_vmm [FILE_MiB [REQUEST_MiB]] (file a multiple of the request)\n");
        return 2;
    }

    if (auto bad = check_kvm()) {
        std::fprintf(stderr, "bench_vmm: %s\n", bad->message.c_str());
        return 77;
    }
    // Boot-to-exit: run() of a no-op guest with the default 256 MiB, from the call until the result
    // is back (open /dev/kvm, VM + vCPU creation, guest RAM, runtime copy, boot, exit hypercall).
    // "cold": no prewarm(), each run creates its VM in the call (a CLI process's one operation);
    // "isolated": after prewarm() a spare VM is ready when the run starts; "back-to-back": runs
    // race the reaper thread that makes the next spare and tears the last VM down.
    enum class Mode { Cold, Isolated, BackToBack };
    for (const Mode mode : {Mode::Cold, Mode::Isolated, Mode::BackToBack}) {
        const bool isolated = mode != Mode::BackToBack;
        if (mode == Mode::Isolated) prewarm(SandboxConfig{}); // from here on a spare follows every run
        std::vector<double> boot_ms;
        for (int i = 0; i < BOOT_RUNS; ++i) {
            if (isolated) std::this_thread::sleep_for(std::chrono::milliseconds(ISOLATION_PAUSE_MS));
            const auto t0 = Clock::now();
            SandboxConfig cfg;
            auto r = run(cfg, {}, {}, INSTAR_OP_NOP, {});
            const auto t1 = Clock::now();
            if (!r.ok()) {
                std::fprintf(stderr, "bench_vmm: %s\n", r.error().message.c_str());
                return 1;
            }
            boot_ms.push_back(seconds(t1 - t0) * 1e3);
        }
        std::sort(boot_ms.begin(), boot_ms.end());
        std::printf("boot-to-exit, no-op guest, %s (%d runs): median %.3f ms, min %.3f ms, p90 %.3f ms\n",
                    mode == Mode::Cold ? "cold (VM created in the call)"
                    : mode == Mode::Isolated ? "isolated, spare VM ready" : "back-to-back",
                    BOOT_RUNS, median(boot_ms), boot_ms.front(),
                    boot_ms[boot_ms.size() * 9 / 10]);
    }

    // Throughput: one file in the page cache, read in chunk requests by the host and by the guest.
    char path[] = "/tmp/instar-bench-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) return 1;
    ::unlink(path);
    std::vector<unsigned char> buf(chunk, 0x5a);
    for (std::uint64_t off = 0; off < file_size; off += chunk) {
        if (::pwrite(fd, buf.data(), chunk, static_cast<off_t>(off)) != static_cast<ssize_t>(chunk)) return 1;
    }
    std::vector<double> host_gibs, guest_gibs, guest_marginal_gibs;
    const double gib = static_cast<double>(file_size) / (1ull << 30);
    const Device dev{fd, file_size, false};
    // One guest run reading `length` bytes, seconds from run() to its result.
    auto guest_read = [&](std::uint64_t length) -> double {
        const instar_read_bench_arg arg{0, 0, length, chunk};
        const auto t0 = Clock::now();
        auto r = run(SandboxConfig{}, {&dev, 1}, {}, INSTAR_OP_READ_BENCH,
                     {reinterpret_cast<const std::uint8_t*>(&arg), sizeof arg});
        const auto t1 = Clock::now();
        if (!r.ok() || r.value().exit_status != 0) {
            std::fprintf(stderr, "bench_vmm: read bench failed: %s\n", r.ok() ? "guest status" : r.error().message.c_str());
            std::exit(1);
        }
        return seconds(t1 - t0);
    };
    const std::uint64_t quarter = (file_size / 4 / chunk) * chunk; // for the marginal rate
    for (int pass = 0; pass < READ_PASSES; ++pass) {
        auto t0 = Clock::now();
        for (std::uint64_t off = 0; off < file_size; off += chunk) {
            if (::pread(fd, buf.data(), chunk, static_cast<off_t>(off)) != static_cast<ssize_t>(chunk)) return 1;
        }
        host_gibs.push_back(gib / seconds(Clock::now() - t0));
        const double whole = guest_read(file_size);
        guest_gibs.push_back(gib / whole);
        // Marginal rate: the extra bytes over the extra time, so per-run costs (boot, teardown,
        // first touch of the guest buffer) cancel out and only the per-request cost remains.
        if (quarter > 0) {
            const double part = guest_read(quarter);
            guest_marginal_gibs.push_back((gib - static_cast<double>(quarter) / (1ull << 30)) / (whole - part));
        }
    }
    ::close(fd);
    const double h = median(host_gibs), g = median(guest_gibs);
    const double m = guest_marginal_gibs.empty() ? 0.0 : median(guest_marginal_gibs);
    std::printf("read throughput (%llu MiB file in the page cache, %llu MiB requests, median of %d): host pread "
                "%.2f GiB/s, guest device %.2f GiB/s (%.1f%% of pread, whole run incl. boot); marginal "
                "%.2f GiB/s (%.1f%%)\n",
                static_cast<unsigned long long>(file_size >> 20), static_cast<unsigned long long>(chunk >> 20),
                READ_PASSES, h, g, 100.0 * g / h, m, 100.0 * m / h);
    return 0;
}
