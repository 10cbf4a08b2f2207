// The vCPU thread's seccomp filter, seen from a hostile host code path: the test-only hook
// (INSTAR_VMM_TEST_HOOKS, compiled into this binary only) runs on the vCPU thread while it serves a
// hypercall, i.e. after the drop, and attempts what a compromised VMM would. Each attempt runs in a
// forked child, which must die of SIGSYS without the call taking effect.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hostile_attacks.h"
#include "vmm/hypercall_server.h"
#include "vmm/seccomp_filter.h"
#include "vmm_test_support.h"

using namespace instar::vmm;

namespace {

// Runs a no-op guest in a forked child with `attempt` hooked into the first hypercall; returns the
// child's wait status. The parent never runs a guest itself, so each child starts clean.
int run_hooked_child(const std::function<void()>& attempt, bool filter_off = false) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core); // a SIGSYS death would otherwise dump core
        if (filter_off) ::setenv("INSTAR_SECCOMP", "off", 1);
        test_hooks::on_hypercall = [&](std::uint32_t) { attempt(); };
        auto r = run(SandboxConfig{}, {}, {}, INSTAR_OP_NOP, {});
        ::_exit(r.ok() && r.value().exit_status == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return status;
}

bool killed_by_sigsys(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS; }
bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string marker_path() { return "/tmp/instar-seccomp-marker-" + std::to_string(::getpid()); }
bool exists(const std::string& p) {
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0;
}

} // namespace

TEST_SUITE("seccomp") {

TEST_CASE("a normal run passes the filter") {
    if (!vmm_test::need_kvm()) return;
    CHECK(exited_ok(run_hooked_child([] {})));
}

TEST_CASE("malloc churn on the vCPU thread passes the filter (no thread-arena heap shrink)") {
    // Regression: glibc shrinking a thread arena's heap reads /proc/sys/vm/overcommit_memory once
    // per process, an openat the filter kills. A hostile vdi's long check did this in production.
    if (!vmm_test::need_kvm()) return;
    CHECK(exited_ok(run_hooked_child([] {
        std::vector<void*> blocks;
        for (int round = 0; round < 4; ++round) {
            for (int i = 0; i < 64; ++i)
                blocks.push_back(std::malloc(100 * 1024)); // below the mmap threshold: arena memory
            for (void* b : blocks)
                std::free(b); // the top chunk passes the trim threshold: the heap shrinks
            blocks.clear();
        }
    })));
}

TEST_CASE("a write-behind run (writer thread, O_DIRECT output) passes the filter") {
    if (!vmm_test::need_kvm()) return;
    vmm_test::TempFile in(std::vector<unsigned char>(8192, 5));
    vmm_test::TempFile out(std::vector<unsigned char>{});
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core);
        SandboxConfig cfg;
        cfg.write_behind = true;
        cfg.compress_workers = true; // the workers confine themselves too (and idle)
        Device target = output_device(out.fd());
        const int direct = ::open(out.path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
        if (direct >= 0) { // the writer thread's bounce buffer and length fix-up under the filter too
            target.fd = direct;
            target.direct = true;
        }
        const Device devs[] = {{in.fd(), 8192, false}, target};
        const std::string modules[] = {vmm_test::hostile_module()};
        const std::vector<std::uint8_t> arg{static_cast<std::uint8_t>(Attack::WriteOutputDeferred)};
        auto r = run(cfg, devs, modules, INSTAR_OP_MODULE_RUN, arg);
        ::_exit(r.ok() && r.value().exit_status == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("wait status ", status);
    CHECK(exited_ok(status));
    CHECK(out.contents().size() == 8192); // the attack writes two 4 KiB pieces
}

TEST_CASE("openat on the vCPU thread after the drop kills the process and opens nothing") {
    if (!vmm_test::need_kvm()) return;
    const std::string marker = marker_path();
    ::unlink(marker.c_str());
    const int status = run_hooked_child([&] { ::open(marker.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600); });
    INFO("wait status ", status);
    CHECK(killed_by_sigsys(status));
    CHECK_FALSE(exists(marker));
    // The control: the same hook with the filter off does create the file, so the hook really ran
    // on the hypercall path and the filter is what stopped it.
    CHECK(exited_ok(run_hooked_child([&] { ::open(marker.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600); }, true)));
    CHECK(exists(marker));
    ::unlink(marker.c_str());
}

TEST_CASE("other forbidden calls after the drop kill the process") {
    if (!vmm_test::need_kvm()) return;
    // KVM_RUN is allowed only on the vCPU descriptor, not on any other.
    CHECK(killed_by_sigsys(run_hooked_child([] { ::ioctl(0, KVM_RUN, 0); })));
    // A vCPU ioctl other than KVM_RUN / KVM_GET_REGS (on whatever descriptor).
    CHECK(killed_by_sigsys(run_hooked_child([] {
        kvm_regs regs{};
        for (int fd = 3; fd < 64; ++fd) ::ioctl(fd, KVM_SET_REGS, &regs);
    })));
    // pread on a descriptor that is not a device (stdin).
    CHECK(killed_by_sigsys(run_hooked_child([] {
        char c;
        (void)!::pread(0, &c, 1, 0);
    })));
    // Executable memory.
    CHECK(killed_by_sigsys(run_hooked_child(
        [] { ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); })));
    // A new program, the network, other processes.
    CHECK(killed_by_sigsys(run_hooked_child([] { ::execl("/bin/true", "true", nullptr); })));
    CHECK(killed_by_sigsys(run_hooked_child([] { ::socket(AF_INET, SOCK_STREAM, 0); })));
    const pid_t self = ::getpid(); // the parent's pid, taken here: getpid itself is not allowed there
    CHECK(killed_by_sigsys(run_hooked_child([self] { ::kill(self, 0); })));
    // Writing to the terminal (stderr is not a device).
    CHECK(killed_by_sigsys(run_hooked_child([] { (void)!::write(2, "x", 1); })));
}

TEST_CASE("fd_blocks: the fewest aligned power-of-two blocks, exactly the set") {
    auto check_exact = [](const std::vector<int>& fds) {
        const auto blocks = fd_blocks(fds);
        std::set<int> want;
        for (int fd : fds)
            if (fd >= 0) want.insert(fd);
        std::set<int> got;
        for (const FdRange& b : blocks) {
            REQUIRE(b.count > 0);
            CHECK((b.count & (b.count - 1)) == 0); // a power of two
            CHECK(b.first % b.count == 0);         // aligned: one masked compare
            for (int fd = b.first; fd < b.first + b.count; ++fd) CHECK(got.insert(fd).second);
        }
        CHECK(got == want);
        return blocks.size();
    };
    CHECK(check_exact({}) == 0);
    CHECK(check_exact({-1, 5}) == 1);
    CHECK(check_exact({7, 7, 7}) == 1);
    std::vector<int> range;
    for (int fd = 1024; fd < 1024 + 15360; ++fd) range.push_back(fd);
    CHECK(check_exact(range) == 4); // 1024 + 2048 + 4096 + 8192: a 30 TiB twoGbMaxExtentFlat vmdk
    range.clear();
    for (int fd = 32768; fd < 65536; ++fd) range.push_back(fd);
    CHECK(check_exact(range) == 1); // 64 TiB: 32768 extents from a multiple of 32768
    range.clear();
    for (int fd = 3; fd < 3 + 32768; ++fd) range.push_back(fd);
    CHECK(check_exact(range) <= 2 * 15 + 2); // any range: at most ~2 log2(count)
    std::mt19937 rng(14);
    for (int round = 0; round < 50; ++round) {
        std::vector<int> fds;
        const int n = static_cast<int>(rng() % 200);
        for (int i = 0; i < n; ++i) fds.push_back(static_cast<int>(rng() % 600) - 5);
        check_exact(fds);
    }
}

namespace {

// A guest run with `count` devices at descriptors [base, base + count) (dups of one file), and
// `attempt` hooked into the first hypercall; returns the child's wait status. Descriptors base - 1
// and base + count are open too (on the same file), so a call on them would succeed but for the filter.
int run_block_child(int base, int count, const std::function<void()>& attempt) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core);
        rlimit files{};
        ::getrlimit(RLIMIT_NOFILE, &files);
        files.rlim_cur = files.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &files);
        char tmpl[] = "/tmp/instar-seccomp-block-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        if (fd < 0) ::_exit(4);
        ::unlink(tmpl);
        if (::write(fd, "instar!!", 8) != 8) ::_exit(4);
        std::vector<Device> devs;
        for (int at = base - 1; at <= base + count; ++at) {
            if (::fcntl(fd, F_DUPFD_CLOEXEC, at) != at) ::_exit(5);
            if (at >= base && at < base + count) devs.push_back({at, 8, false});
        }
        test_hooks::on_hypercall = [&](std::uint32_t) { attempt(); };
        auto r = run(SandboxConfig{}, devs, {}, INSTAR_OP_NOP, {});
        ::_exit(r.ok() && r.value().exit_status == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return status;
}

int pread_one(int fd) {
    char c;
    return static_cast<int>(::pread(fd, &c, 1, 0));
}

} // namespace

TEST_CASE("device descriptors in a block: every one allowed, its neighbours kill") {
    if (!vmm_test::need_kvm()) return;
    // 200 devices from 300: blocks 300+4, 304+16, 320+64, 384+64, 448+32, 480+16, 496+4.
    const int base = 300, count = 200;
    CHECK(exited_ok(run_block_child(base, count, [] {
        for (int fd = base; fd < base + count; ++fd)
            if (pread_one(fd) != 1) ::_exit(6);
    })));
    CHECK(killed_by_sigsys(run_block_child(base, count, [] { pread_one(base - 1); })));
    CHECK(killed_by_sigsys(run_block_child(base, count, [] { pread_one(base + count); })));
    CHECK(killed_by_sigsys(run_block_child(base, count, [] { (void)::fdatasync(base + count); })));
    // Early writeback (device_io.h) on a device, and on its neighbour.
    CHECK(exited_ok(run_block_child(base, count, [] {
        if (::sync_file_range(base + count - 1, 0, 0, SYNC_FILE_RANGE_WRITE) != 0) ::_exit(6);
    })));
    CHECK(killed_by_sigsys(run_block_child(base, count, [] {
        (void)::sync_file_range(base + count, 0, 0, SYNC_FILE_RANGE_WRITE);
    })));
    // The upper half of the register is compared too: the kernel would take 2^32 + base as base.
    CHECK(killed_by_sigsys(run_block_child(base, count, [] {
        char c;
        ::syscall(SYS_pread64, (1ull << 32) + base, &c, 1, 0);
    })));
}

namespace {

// A thread confined by the worker filter (the write-behind writer's) on `devices` runs `attempt`,
// in a forked child; returns the child's wait status. Needs no /dev/kvm.
int run_confined_worker(std::vector<int> devices, const std::function<void()>& attempt, int dup_last = -1) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core);
        // `dup_last`: a file placed at the last device descriptor, for the attempt to use.
        if (dup_last >= 0 && ::dup2(dup_last, devices.back()) != devices.back()) ::_exit(5);
        VcpuFilter filter;
        filter.device_fds = std::move(devices);
        std::thread worker([&] {
            if (confine_worker_thread(filter)) ::_exit(4);
            attempt();
        });
        worker.join();
        ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return status;
}

} // namespace

TEST_CASE("the writer thread may start writeback of a device, of nothing else") {
    // The write-behind writer starts early writeback (device_io.h, WritebackStarter) under its
    // filter: allowed on its devices, SIGSYS on any other descriptor.
    vmm_test::TempFile dev(std::vector<unsigned char>(8192, 1));
    vmm_test::TempFile other(std::vector<unsigned char>(8192, 2));
    const int d = dev.fd(), o = other.fd();
    CHECK(exited_ok(run_confined_worker({d}, [d] {
        if (::pwrite(d, "x", 1, 0) != 1 || ::sync_file_range(d, 0, 0, SYNC_FILE_RANGE_WRITE) != 0) ::_exit(6);
    })));
    CHECK(killed_by_sigsys(run_confined_worker({d}, [o] { (void)::sync_file_range(o, 0, 0, SYNC_FILE_RANGE_WRITE); })));
}

TEST_CASE("the most device blocks a filter takes still load, with every device call") {
    // MAX_DEVICE_FD_BLOCKS scattered descriptors (every other one: one block each) times every call
    // on the device list must stay under the kernel's 4096 BPF instructions: the filter loads and
    // the calls work on the last block.
    vmm_test::TempFile dev(std::vector<unsigned char>(8192, 1));
    std::vector<int> fds;
    for (std::size_t i = 0; i < MAX_DEVICE_FD_BLOCKS; ++i) fds.push_back(301 + 2 * static_cast<int>(i));
    REQUIRE(fd_blocks(fds).size() == MAX_DEVICE_FD_BLOCKS);
    const int last = fds.back();
    const int src = dev.fd();
    CHECK(exited_ok(run_confined_worker(fds, [last] {
        if (::pwrite(last, "x", 1, 0) != 1 || ::sync_file_range(last, 0, 0, SYNC_FILE_RANGE_WRITE) != 0 ||
            ::fdatasync(last) != 0)
            ::_exit(6);
    }, src)));
}

TEST_CASE("15360 device descriptors (a 30 TiB twoGbMaxExtentFlat vmdk) load as one filter, quickly") {
    // One rule per descriptor made a BPF program the kernel refused ("seccomp_load failed:
    // Operation canceled") after minutes in libseccomp; a block is 4 rules per call.
    if (!vmm_test::need_kvm()) return;
    rlimit files{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    const int base = 1024;
    int count = 15360;
    if (files.rlim_max != RLIM_INFINITY && files.rlim_max < static_cast<rlim_t>(base + count + 64))
        count = static_cast<int>(files.rlim_max) - base - 64;
    REQUIRE(count > 1000);
    CHECK(fd_blocks([&] {
              std::vector<int> v;
              for (int fd = base; fd < base + count; ++fd) v.push_back(fd);
              return v;
          }()).size() <= 8);
    CHECK(exited_ok(run_block_child(base, count, [count] {
        if (pread_one(base) != 1 || pread_one(base + count - 1) != 1) ::_exit(6);
    })));
    CHECK(killed_by_sigsys(run_block_child(base, count, [count] { pread_one(base + count); })));
}

} // TEST_SUITE

namespace {

// In a forked child: confines the child with `filter`, compiled ahead when `ahead_ready` (the path
// run() takes when the caller's thread finished first) or not (the vCPU thread compiles it), then
// runs `attempt`; returns the child's wait status.
int confined_child(bool ahead_ready, const std::function<void()>& attempt) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core);
        const int dev = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (dev < 0) ::_exit(4);
        VcpuFilter filter;
        filter.vcpu_fd = 1000; // no KVM here: only the device rules matter
        filter.device_fds = {dev};
        AheadFilter ahead;
        if (ahead_ready) {
            compile_vcpu_filter(filter, ahead);
            if (!ahead.ready.load() || ahead.program.empty()) ::_exit(5);
        }
        if (confine_vcpu_thread(filter, ahead)) ::_exit(6);
        char c;
        // Only `exit` (this thread) is on the list, not exit_group (what _exit makes).
        if (::pread(dev, &c, 1, 0) != 1) ::syscall(SYS_exit, 7); // a device: allowed
        attempt();
        ::syscall(SYS_exit, 0);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return status;
}

} // namespace

TEST_CASE("a filter compiled ahead on another thread confines exactly as one compiled in place") {
    for (const bool ready : {true, false}) {
        CAPTURE(ready);
        CHECK(exited_ok(confined_child(ready, [] {})));
        CHECK(killed_by_sigsys(confined_child(ready, [] { (void)::open("/etc/hostname", O_RDONLY); })));
        CHECK(killed_by_sigsys(confined_child(ready, [] {
            char c;
            (void)::pread(0, &c, 1, 0); // not a device
        })));
    }
    // The program is what libseccomp would load: a KILL_PROCESS default and well within the limit.
    VcpuFilter filter;
    filter.vcpu_fd = 7;
    filter.device_fds = {8, 9, 10};
    AheadFilter ahead;
    compile_vcpu_filter(filter, ahead);
    REQUIRE(ahead.ready.load());
    CHECK(ahead.program.size() > 10);
    CHECK(ahead.program.size() < BPF_MAXINSNS);
}
