// The background reaper thread for finished VMs.
#include "vmm/reaper.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/futex.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <ctime>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace instar::vmm {

namespace {

// Two in flight at most: a run takes longer than a teardown, so the queue rarely exceeds one.
constexpr std::size_t MAX_PENDING_TEARDOWNS = 2;

struct Reaper {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> queue;
};

Reaper* start_reaper() {
    // Never destroyed: the detached thread may outlive static destruction at exit (the kernel
    // then reclaims whatever is still queued).
    auto* r = new Reaper();
    try {
        std::thread([r] {
            for (;;) {
                std::unique_lock lock(r->mu);
                r->cv.wait(lock, [r] { return !r->queue.empty(); });
                auto job = std::move(r->queue.front());
                r->queue.front() = nullptr; // stays queued while it runs, so the bound counts it
                lock.unlock();
                job();
                lock.lock();
                r->queue.pop_front();
            }
        }).detach();
    } catch (const std::system_error&) {
        delete r;
        return nullptr; // no thread: every teardown runs synchronously
    }
    return r;
}

} // namespace

void reap_later(std::function<void()> teardown) {
    static Reaper* reaper = start_reaper();
    if (reaper != nullptr) {
        std::lock_guard lock(reaper->mu);
        if (reaper->queue.size() < MAX_PENDING_TEARDOWNS) {
            reaper->queue.push_back(std::move(teardown));
            reaper->cv.notify_one();
            return;
        }
    }
    teardown();
}

namespace {

// Keepers that have closed their copies of this process's descriptors (a futex word in the
// address space they share); keepers started.
int keepers_closed = 0;
std::atomic<int> keepers_started{0};

// The keeper's whole life, on its own small stack in the shared address space: raw system calls
// only (it shares the caller's TLS, so nothing of libc's that touches errno or locks).
long raw4(long nr, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}

int keeper_main(void* parent) {
    raw4(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
    if (raw4(SYS_getppid, 0, 0, 0, 0) != reinterpret_cast<long>(parent)) return 0; // gone before the line above
    // Its copies of the descriptors first: a pipe on this process's stdout must reach end of file
    // when this process exits, not after the teardown.
    raw4(SYS_close_range, 0, ~0u, 0, 0);
    __atomic_add_fetch(&keepers_closed, 1, __ATOMIC_SEQ_CST);
    raw4(SYS_futex, reinterpret_cast<long>(&keepers_closed), FUTEX_WAKE_PRIVATE, 1 << 30, 0);
    for (;;) raw4(SYS_pause, 0, 0, 0, 0); // every signal blocked: only SIGKILL (the parent's death) ends it
    return 0;
}

// At exit: wait (briefly) until every keeper has closed its copies, so none holds a descriptor
// (an output pipe, a file) past this process's exit; its SIGKILL then comes with this exit.
void wait_for_keepers() {
    const int started = keepers_started.load();
    for (int waits = 0; waits < 20; ++waits) {
        const int closed = __atomic_load_n(&keepers_closed, __ATOMIC_SEQ_CST);
        if (closed >= started) return;
        const timespec limit{0, 5'000'000}; // 20 x 5 ms at most: a keeper that never runs is killed anyway
        raw4(SYS_futex, reinterpret_cast<long>(&keepers_closed), FUTEX_WAIT_PRIVATE, closed, reinterpret_cast<long>(&limit));
    }
}

// Registers wait_for_keepers() to run at exit, once (keepers and releasers alike).
bool exit_waits_for_keepers() {
    static const bool registered = std::atexit(wait_for_keepers) == 0;
    return registered;
}

constexpr std::size_t KEEPER_STACK = 64 << 10; // a few frames of raw system calls

// A releaser: a process sharing this address space that closes the last descriptors of files
// whose final close is slow (a replaced file's blocks are freed then), so that this process can
// exit first. Its stack and its job share one mapping; the job sits at the mapping's start.
constexpr std::size_t RELEASER_STACK = 16 << 10; // a few frames of raw system calls
struct ReleaseJob {
    int count = 0;
    int fds[MAX_BACKGROUND_RELEASES] = {}; // ascending
    int parent_done = 0;                   // futex word: the parent has closed its copies
};
static_assert(sizeof(ReleaseJob) < RELEASER_STACK / 4);
// How long a releaser waits for its parent to close its copies before it closes its own anyway
// (the parent does so right after clone; a parent killed in between never will).
constexpr long RELEASER_PARENT_WAIT_NS = 100'000'000;

int releaser_main(void* arg) {
    auto* job = static_cast<ReleaseJob*>(arg);
    // Every other descriptor at once: a pipe on this process's stdout must reach end of file when
    // the parent exits, not after the files are freed.
    unsigned from = 0;
    for (int i = 0; i < job->count; ++i) {
        const auto fd = static_cast<unsigned>(job->fds[i]);
        if (fd > from) raw4(SYS_close_range, from, fd - 1, 0, 0);
        from = fd + 1;
    }
    raw4(SYS_close_range, from, ~0u, 0, 0);
    __atomic_add_fetch(&keepers_closed, 1, __ATOMIC_SEQ_CST);
    raw4(SYS_futex, reinterpret_cast<long>(&keepers_closed), FUTEX_WAKE_PRIVATE, 1 << 30, 0);
    // The parent's copies go first, so that these are the last and the freeing happens here.
    const timespec limit{0, RELEASER_PARENT_WAIT_NS};
    if (__atomic_load_n(&job->parent_done, __ATOMIC_SEQ_CST) == 0)
        raw4(SYS_futex, reinterpret_cast<long>(&job->parent_done), FUTEX_WAIT_PRIVATE, 0, reinterpret_cast<long>(&limit));
    for (int i = 0; i < job->count; ++i) raw4(SYS_close, job->fds[i], 0, 0, 0);
    raw4(SYS_exit, 0, 0, 0, 0);
    return 0;
}

// Starts `fn(arg)` in a process sharing this address space (CLONE_VM) on the stack ending at
// `stack_top`, born with every signal blocked: this process's handlers (which clean up
// temporaries on ^C or SIGTERM) must never run a second time there. No exit signal: this process
// never waits for it (but to reap a releaser on a later call). The pid, or -1.
int clone_shared(int (*fn)(void*), void* stack_top, void* arg) {
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    const int pid = ::clone(fn, stack_top, CLONE_VM, arg);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return pid;
}

// Releasers not yet reaped (their mappings are freed when they are).
struct Releaser {
    int pid;
    void* mapping;
};
std::mutex releasers_mu;
std::vector<Releaser> releasers; // guarded by releasers_mu; at most MAX_LIVE_RELEASERS
constexpr std::size_t MAX_LIVE_RELEASERS = 4;

} // namespace

bool start_teardown_keeper() {
    if (keepers_started.load() > 0) return true;
    if (!exit_waits_for_keepers()) return false;
    void* stack = ::mmap(nullptr, KEEPER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return false;
    // The keeper outlives this process and is reaped by whoever adopts it.
    const int pid = clone_shared(keeper_main, static_cast<char*>(stack) + KEEPER_STACK,
                                 reinterpret_cast<void*>(static_cast<long>(::getpid())));
    if (pid < 0) {
        ::munmap(stack, KEEPER_STACK);
        return false;
    }
    keepers_started.fetch_add(1);
    return true; // the stack is the keeper's until the address space ends
}

bool release_in_background(std::span<const int> fds) {
    if (fds.empty() || fds.size() > MAX_BACKGROUND_RELEASES) return false;
    if (!exit_waits_for_keepers()) return false;
    std::lock_guard lock(releasers_mu);
    std::erase_if(releasers, [](const Releaser& r) { // reap the finished ones (a long-lived caller)
        if (::waitpid(r.pid, nullptr, WNOHANG | __WCLONE) != r.pid) return false;
        ::munmap(r.mapping, RELEASER_STACK);
        return true;
    });
    if (releasers.size() >= MAX_LIVE_RELEASERS) return false;
    void* mapping = ::mmap(nullptr, RELEASER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mapping == MAP_FAILED) return false;
    auto* job = new (mapping) ReleaseJob;
    job->count = static_cast<int>(fds.size());
    std::copy(fds.begin(), fds.end(), job->fds);
    std::sort(job->fds, job->fds + job->count);
    if (std::adjacent_find(job->fds, job->fds + job->count) != job->fds + job->count || job->fds[0] < 0) {
        ::munmap(mapping, RELEASER_STACK);
        return false;
    }
    try {
        releasers.reserve(releasers.size() + 1);
    } catch (const std::bad_alloc&) {
        ::munmap(mapping, RELEASER_STACK);
        return false;
    }
    const int pid = clone_shared(releaser_main, static_cast<char*>(mapping) + RELEASER_STACK, job);
    if (pid < 0) {
        ::munmap(mapping, RELEASER_STACK);
        return false;
    }
    keepers_started.fetch_add(1);
    for (const int fd : fds) ::close(fd);
    __atomic_store_n(&job->parent_done, 1, __ATOMIC_SEQ_CST);
    raw4(SYS_futex, reinterpret_cast<long>(&job->parent_done), FUTEX_WAKE_PRIVATE, 1, 0);
    releasers.push_back({pid, mapping});
    return true;
}

bool leave_to_keeper() {
    static std::atomic<int> left{0};
    if (keepers_started.load() == 0) return false;
    return left.fetch_add(1) < MAX_DETACHED_TEARDOWNS;
}

} // namespace instar::vmm
