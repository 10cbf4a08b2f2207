// The process sandbox's host side: lay out guest memory in a memfd, start the loader with the
// memfd and one end of a socket pair, then serve the hypercalls that arrive on the socket.
#include "vmm/process_sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include <instar/spin_backoff.h>

#include "vmm/compress_pool.h"
#include "vmm/device_io.h"
#include "vmm/guest_layout.h"
#include "vmm/guest_memory.h"
#include "vmm/hypercall_server.h"
#include "vmm/loader/process_loader.h"
#include "vmm/read_ahead_worker.h"
#include "vmm/unique_fd.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

namespace {

// The loader's fd numbers (process_loader.cpp): the channel, then the memfd.
constexpr int LOADER_MEMFD_FD = INSTAR_PROC_CHANNEL_FD + 1;

SandboxError host_error(const std::string& what) {
    return {ErrorKind::HostResource, "process sandbox: " + what + ": " + std::strerror(errno), {}};
}

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string describe(std::uint32_t applied) {
    static constexpr std::pair<std::uint32_t, const char*> NAMES[] = {
        {LOADER_SECCOMP_STRICT, "seccomp-strict"}, {LOADER_NO_NEW_PRIVS, "no-new-privs"},
        {LOADER_FDS_CLOSED, "only-channel-fd"},    {LOADER_RLIMITS, "rlimits"},
        {LOADER_NS_USER, "userns"},
    };
    std::string out;
    for (const auto& [bit, name] : NAMES) {
        if ((applied & bit) == 0) continue;
        if (!out.empty()) out += ',';
        out += name;
    }
    return out;
}

// The child: started, killed and reaped exactly once whatever happens.
class Child {
public:
    ~Child() { finish(); }
    pid_t pid = -1;
    bool killed_by_us = false;
    // Kills (if still running) and reaps; returns the wait status.
    int finish() {
        if (pid <= 0) return status_;
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, &status_, 0) < 0 && errno == EINTR) {
        }
        pid = -1;
        return status_;
    }
    // Kills without waiting: a one-shot process (SandboxConfig::detached_teardown) does not wait
    // for the guest process's teardown (its address space, its namespaces: 0.2-11 ms measured
    // under load); the zombie is reaped by whoever adopts it when this process exits.
    void kill_and_leave() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        pid = -1;
    }
    // Reaps a child that is dying by itself (the channel reached end of file).
    int reap() {
        if (pid <= 0) return status_;
        while (::waitpid(pid, &status_, 0) < 0 && errno == EINTR) {
        }
        pid = -1;
        return status_;
    }

private:
    int status_ = 0;
};

// Why the guest process ended without the exit hypercall, worded as the KVM sandbox words it.
SandboxError death(int status, bool timed_out) {
    if (timed_out) return {ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped", {}};
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        if (sig == SIGXCPU) return {ErrorKind::GuestTimeout, "guest used up its CPU time limit and was stopped", {}};
        if (sig == SIGKILL) {
            return {ErrorKind::GuestFault,
                    "guest process was killed: it made a system call the process sandbox forbids (seccomp strict)", {}};
        }
        return {ErrorKind::GuestFault, "guest process died of signal " + std::to_string(sig) + " (" + strsignal(sig) + ")", {}};
    }
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code >= 120 && code <= 123) {
        static constexpr const char* WHY[] = {"bad arguments", "cannot map guest memory at the guest addresses",
                                              "cannot set up its thread state or signal handlers",
                                              "cannot enter seccomp strict mode"};
        return {ErrorKind::HostResource, std::string("process sandbox: the loader failed: ") + WHY[code - 120], {}};
    }
    if (code == 127) return {ErrorKind::HostResource, "process sandbox: cannot start the loader " + process_loader_path(), {}};
    return {ErrorKind::GuestShutdown, "guest process stopped without the exit hypercall (status " + std::to_string(code) + ")", {}};
}

// How long each side spins for the other before it sleeps (guest_abi.h, INSTAR_PROC_TURN). A
// sleeping process costs a wake-up per call, and where an idle CPU must be woken for it (a halted
// vCPU under nested virtualisation: ~45 us per call measured, docs/sandbox.md) that cost is a
// fifth of a 1 GiB convert. The budgets cover one typical call: a 2 MiB read or write on the host
// side, a 2 MiB zero scan on the guest's, with room; past them both sides sleep as before, so a
// long call wastes at most one budget of CPU.
constexpr auto HOST_SPIN = std::chrono::microseconds(300);
// The guest counts pause iterations (no TSC: seccomp strict mode can disable rdtsc): a pause and a
// load take ~40-150 cycles (Zen ~40-65, Skylake and later ~140), so 8192 spin ~0.1-0.5 ms.
constexpr std::uint64_t GUEST_SPIN_PAUSES = 8192;

// Spins for the guest's next call: returns its size as recv() does, or -1 when none came within
// HOST_SPIN (the caller then polls). The guest stores POSTED just before it writes a call, so the
// spin reads memory until then and the channel only after.
ssize_t spin_receive(std::atomic_ref<std::uint32_t> turn, int fd, instar_hypercall& msg) {
    const auto deadline = std::chrono::steady_clock::now() + HOST_SPIN;
    for (;;) {
        if (turn.load(std::memory_order_acquire) == INSTAR_PROC_TURN_POSTED) {
            const ssize_t n = ::recv(fd, &msg, sizeof msg, MSG_TRUNC | MSG_DONTWAIT);
            if (n >= 0 || (errno != EAGAIN && errno != EINTR)) return n;
        }
        if (std::chrono::steady_clock::now() >= deadline) return -1;
        __builtin_ia32_pause();
    }
}

} // namespace

Outcome<RunResult> run_in_process(const SandboxConfig& config, std::uint64_t ram, std::span<const Device> devices,
                                  const GuestImage& runtime,
                                  const std::vector<std::shared_ptr<const GuestImage>>& images, std::uint32_t op,
                                  std::span<const std::uint8_t> arg) {
    auto memory = GuestMemory::create_shared(ram);
    if (!memory) return memory.error();
    GuestMemory& m = memory.value();
    if (auto bad = lay_out_guest(m, runtime, images, devices, op, arg, PROCESS_LAYOUT)) return *bad;

    // The answer handshake (guest_abi.h, INSTAR_PROC_TURN): spinning pays only where the guest
    // process and this thread can run at once.
    const bool spin = online_cpus() > 1;
    auto turn = std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(m.range(INSTAR_PROC_TURN, 4)));
    {
        const std::uint64_t pauses = spin ? GUEST_SPIN_PAUSES : 0;
        std::memcpy(m.range(INSTAR_PROC_SPIN, sizeof pauses), &pauses, sizeof pauses);
    }

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return host_error("socketpair");
    UniqueFd host_end(sv[0]);
    UniqueFd guest_end(sv[1]);

    const std::string loader = process_loader_path();
    const std::string ram_arg = hex(ram);
    const std::string entry_arg = hex(INSTAR_GPA_RUNTIME + runtime.entry);
    // RLIMIT_CPU backs the watchdog up: whole seconds, two more than the budget.
    const auto budget_s = std::chrono::duration_cast<std::chrono::seconds>(config.timeout).count() + 2;
    const std::string cpu_arg = std::to_string(budget_s);
    // The arena's start (written by lay_out_guest above; the guest has not run): the loader maps
    // only the pages below it executable.
    instar_boot_info boot{};
    std::memcpy(&boot, m.range(PROCESS_LAYOUT.boot_info, sizeof boot), sizeof boot);
    const std::string arena_arg = hex(boot.arena_base);
    // W^X: the pages that hold code, which the loader maps read+execute (and nothing else
    // executable): "start-end,..." for the runtime, then each module at its base.
    std::string code_arg;
    auto add_code = [&](const GuestImage& img, std::uint64_t base) {
        for (const auto& [start, end] : img.code_pages) {
            if (!code_arg.empty()) code_arg += ',';
            code_arg += hex(base + start) + '-' + hex(base + end);
        }
    };
    add_code(runtime, INSTAR_GPA_RUNTIME);
    for (std::size_t i = 0; i < images.size(); ++i) add_code(*images[i], boot.modules[i].base);
    char* const argv[] = {const_cast<char*>("instar-process-loader"), const_cast<char*>(ram_arg.c_str()),
                          const_cast<char*>(entry_arg.c_str()), const_cast<char*>(cpu_arg.c_str()),
                          const_cast<char*>(arena_arg.c_str()), const_cast<char*>(code_arg.c_str()), nullptr};
    char* const envp[] = {nullptr};

    // dup2 onto the fixed numbers clears close-on-exec; sources above them so none is overwritten
    // before it is copied. The loader closes everything else itself.
    UniqueFd chan_src(::fcntl(guest_end.get(), F_DUPFD_CLOEXEC, 10));
    UniqueFd mem_src(::fcntl(m.memfd(), F_DUPFD_CLOEXEC, 10));
    if (!chan_src.valid() || !mem_src.valid()) return host_error("fcntl(F_DUPFD_CLOEXEC)");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, chan_src.get(), INSTAR_PROC_CHANNEL_FD);
    posix_spawn_file_actions_adddup2(&fa, mem_src.get(), LOADER_MEMFD_FD);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);     // nothing blocked
    posix_spawnattr_setsigdefault(&attr, &all);   // no inherited handlers
    // Its own process group: a terminal's ^C reaches the host (which cleans up and ends the guest),
    // not the guest process behind its back.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    Child child;
    const int spawned = ::posix_spawn(&child.pid, loader.c_str(), &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (spawned != 0) {
        child.pid = -1;
        errno = spawned;
        return host_error("cannot start the loader " + loader);
    }
    guest_end.reset();
    chan_src.reset();
    mem_src.reset();

    auto watchdog = Watchdog::arm(config.timeout);
    if (!watchdog) return watchdog.error();
    // The same host threads as the KVM sandbox's (sandbox.cpp): write-behind when asked, and
    // INSTAR_HC_COMPRESS on one worker per online CPU beside this thread. This side of the process
    // sandbox is instar itself, not the confined guest, so the threads need no confinement of their
    // own. Without them -c compressed on this thread alone: twice qemu-img's -c -W on two CPUs.
    std::optional<WriteBehind> writer;
    if (config.write_behind) {
        writer.emplace(*watchdog.value());
        if (!writer->start({})) writer.reset(); // no thread: plain writes
    }
    std::optional<CompressPool> pool;
    if (config.compress_workers) {
        pool.emplace();
        if (const unsigned cpus = online_cpus(); cpus > 1) pool->start(cpus - 1, {});
    }
    HypercallServer server(m, devices, *watchdog.value(), config.outputs, config.progress, writer ? &*writer : nullptr);
    if (pool) server.set_compress_pool(&*pool);
    // Reads ahead on a reader thread when asked (as the KVM sandbox): made after each answer on this
    // thread, a read held up the guest's next call (compare's second side waited for the first
    // side's 2 MiB read; docs/sandbox.md, "KVM reader thread").
    std::optional<ReadAheadWorker> reader;
    if (config.read_ahead) {
        reader.emplace(*watchdog.value());
        if (!reader->start({})) reader.reset();
    }
    if (reader)
        server.set_read_ahead_worker(&*reader);
    else
        server.enable_read_ahead(); // answers leave before run_pending_reads(), below
    std::string confinement;
    bool hello = false;
    SpinBackoff backoff; // spins that keep missing (a loaded machine) back off (spin_backoff.h)
    auto fail = [&](SandboxError e) -> Outcome<RunResult> {
        child.finish();
        e.log = server.take_log(); // records are dropped: a failed guest's output is never used
        return e;
    };
    for (;;) {
        if (watchdog.value()->expired()) return fail(death(0, true));
        instar_hypercall msg{};
        ssize_t n = -1;
        // Not while the writer thread has work: on two CPUs the guest process and the writer need
        // them both, and a spinning server would take the writer's.
        if (spin && hello && (!writer || !writer->busy()) && backoff.should_spin()) {
            n = spin_receive(turn, host_end.get(), msg);
            if (n < 0)
                backoff.miss();
            else
                backoff.hit();
        }
        if (n < 0) {
            pollfd p{host_end.get(), POLLIN, 0};
            const int ready = ::poll(&p, 1, 50); // re-check the deadline at least this often
            if (ready < 0 && errno != EINTR) return fail(host_error("poll"));
            if (ready <= 0) continue;
            n = ::recv(host_end.get(), &msg, sizeof msg, MSG_TRUNC | MSG_DONTWAIT);
            if (n < 0 && errno == EAGAIN) continue;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(host_error("recv"));
        }
        if (n == 0) { // the guest process is gone
            const int status = child.reap();
            SandboxError e = death(status, false);
            e.log = server.take_log();
            return e;
        }
        if (!hello) {
            loader_hello h{};
            if (static_cast<std::size_t>(n) != sizeof h) return fail({ErrorKind::HostResource, "process sandbox: the loader did not report", {}});
            std::memcpy(&h, &msg, sizeof h);
            if (h.magic != LOADER_HELLO_MAGIC || (h.applied & LOADER_SECCOMP_STRICT) == 0)
                return fail({ErrorKind::HostResource, "process sandbox: the loader did not confine the guest process", {}});
            confinement = describe(h.applied);
            hello = true;
            continue;
        }
        if (static_cast<std::size_t>(n) != sizeof msg) {
            return fail({ErrorKind::GuestBadRequest,
                         "guest made a bad request: a hypercall message of " + std::to_string(n) + " bytes", {}});
        }
        // A call that waits for other host threads (the writer's queue, the compress workers)
        // sends a spinning guest to sleep: its spin would take the CPU they need (guest_abi.h,
        // INSTAR_PROC_TURN_WORKING). A guest that has already gone to sleep stays asleep.
        if ((writer && writer->busy()) || msg.nr == INSTAR_HC_COMPRESS) {
            std::uint32_t expected = INSTAR_PROC_TURN_POSTED;
            turn.compare_exchange_strong(expected, INSTAR_PROC_TURN_WORKING);
        }
        // The server serves the mailbox at its KVM address: put the message there (the guest
        // process cannot map that page), serve, send back what the server left there.
        std::uint8_t* slot = m.range(INSTAR_GPA_MAILBOX, sizeof msg);
        std::memcpy(slot, &msg, sizeof msg);
        auto next = server.serve();
        if (!next) return fail(next.error());
        if (next.value() == HypercallServer::Next::Exit) break;
        std::memcpy(&msg, slot, sizeof msg);
        // The answer goes into the guest's mailbox, then by message only to a guest that is
        // asleep (SLEEPING): one still spinning (POSTED), or not yet asleep after WORKING, finds
        // ANSWERED. A message that does not fit means the guest stopped reading its answers:
        // never block on it (the watchdog would not run).
        std::memcpy(m.range(INSTAR_PROC_MAILBOX, sizeof msg), &msg, sizeof msg);
        const std::uint32_t was = turn.exchange(INSTAR_PROC_TURN_ANSWERED);
        const bool sent = was == INSTAR_PROC_TURN_POSTED || was == INSTAR_PROC_TURN_WORKING ||
                          ::send(host_end.get(), &msg, sizeof msg, MSG_NOSIGNAL | MSG_DONTWAIT) ==
                              static_cast<ssize_t>(sizeof msg);
        if (sent) {
            // The guest has its answer: now the reads it asked to have read ahead, while it works.
            auto done = server.run_pending_reads();
            if (!done) return fail(done.error());
            continue;
        }
        if (errno == EAGAIN)
            return fail({ErrorKind::GuestBadRequest, "guest made a bad request: it does not read its answers", {}});
        if (errno != EPIPE && errno != ECONNRESET) return fail(host_error("send"));
        const int status = child.reap(); // the guest process is gone
        SandboxError e = death(status, false);
        e.log = server.take_log();
        return e;
    }
    if (config.detached_teardown)
        child.kill_and_leave();
    else
        child.finish();
    RunResult r = server.take_result();
    r.sandbox = SandboxKind::Process;
    r.confinement = confinement;
    return r;
}

} // namespace instar::vmm
