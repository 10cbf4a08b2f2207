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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "hostile_attacks.h"
#include "vmm/hypercall_server.h"
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
        const std::vector<std::uint8_t> arg{static_cast<std::uint8_t>(Attack::WriteOutput)};
        auto r = run(cfg, devs, modules, INSTAR_OP_MODULE_RUN, arg);
        ::_exit(r.ok() && r.value().exit_status == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("wait status ", status);
    CHECK(exited_ok(status));
    CHECK(out.contents().size() == 4096);
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

} // TEST_SUITE
