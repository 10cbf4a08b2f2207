// The temporary-file registry and the SIGINT/SIGTERM/SIGHUP handler that empties it.
//
// Everything the handler touches is a lock-free atomic or a string a registered caller keeps alive;
// it calls only async-signal-safe functions (unlink, getpid, sigaction, raise, pthread_sigmask).
#include "ops/signal_cleanup.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>

namespace instar::signal_cleanup {
namespace {

constexpr std::array CLEANUP_SIGNALS{SIGINT, SIGTERM, SIGHUP};

// The process-wide cleanup state: IDLE, a Section open (signals deferred), or cleanup under way
// (the process is ending; nothing may start).
enum : int { IDLE = 0, BUSY = 1, DYING = 2 };
std::atomic<int> state{IDLE};
std::atomic<int> pending{0}; // a signal that arrived during a Section
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<const char*>::is_always_lock_free &&
                  std::atomic<pid_t>::is_always_lock_free,
              "the signal handler may use only lock-free atomics");

// The registry: a slot holds a path to unlink, or null. Slots are claimed only inside a Section, so
// the handler (which acts only outside one) never sees a slot being filled.
std::array<std::atomic<const char*>, MAX_TEMP_PATHS> slots{};
std::atomic<std::size_t> high_water{0}; // slots at or above this index have never been used
std::size_t next_hint = 0;              // where the next search for a free slot starts (Section only)

std::mutex section_mutex; // one Section at a time
// The process the registered paths belong to: a child made by a raw clone() shares the registry's
// copy but must not unlink them; fork() children start empty (forget_parent).
std::atomic<pid_t> owner{0};
std::atomic<unsigned> installed{0}; // bit k: our handler is on CLEANUP_SIGNALS[k]
constexpr unsigned ALL_INSTALLED = (1u << CLEANUP_SIGNALS.size()) - 1;

[[noreturn]] void reraise(int sig) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::raise(sig); // pending while this handler runs with it blocked ...
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr); // ... and delivered here: the default action ends us
    ::_exit(128 + sig); // not reached
}

void remove_registered() {
    const std::size_t used = high_water.load();
    for (std::size_t i = 0; i < used; ++i)
        if (const char* path = slots[i].load())
            ::unlink(path);
}

// From the handler, or from a closing Section that found a deferred signal.
void act_on(int sig) {
    const int saved_errno = errno;
    for (;;) {
        int expected = IDLE;
        if (state.compare_exchange_strong(expected, DYING)) {
            if (::getpid() == owner.load())
                remove_registered();
            reraise(sig);
        }
        if (expected == DYING)
            break; // another thread is cleaning up and will end the process
        // A Section is open: its close acts on the signal. If it closed between the exchange above
        // and this store, it may have missed the note: look again.
        pending.store(sig);
        if (state.load() == BUSY)
            break;
    }
    errno = saved_errno;
}

void on_signal(int sig) { act_on(sig); }

// In a fork() child: the parent's temporaries are not its own.
void forget_parent() {
    const std::size_t used = high_water.load();
    for (std::size_t i = 0; i < used; ++i)
        slots[i].store(nullptr);
    high_water.store(0);
    next_hint = 0;
    state.store(IDLE);
    pending.store(0);
    owner.store(::getpid());
}

// Called at each Section: until the handler is on all three signals, looks again at the ones it is
// not on (cheap, and a library caller may have reset a disposition to the default meanwhile).
void install() {
    static std::once_flag once;
    std::call_once(once, [] {
        owner.store(::getpid());
        ::pthread_atfork(nullptr, nullptr, forget_parent);
    });
    if (installed.load() == ALL_INSTALLED)
        return;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (const int s : CLEANUP_SIGNALS)
        sigaddset(&sa.sa_mask, s); // one handler at a time per thread
    sa.sa_flags = SA_RESTART; // a deferred signal must not make the writer's calls fail with EINTR
    for (std::size_t k = 0; k < CLEANUP_SIGNALS.size(); ++k) {
        if (installed.load() & (1u << k))
            continue;
        struct sigaction old {};
        // Only over the default action: an ignored signal stays ignored (as qemu-img's would), and
        // a caller's own handler is left alone.
        if (::sigaction(CLEANUP_SIGNALS[k], nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
            old.sa_handler == SIG_DFL && ::sigaction(CLEANUP_SIGNALS[k], &sa, nullptr) == 0)
            installed.fetch_or(1u << k);
    }
}

} // namespace

int register_path(const char* path) {
    for (std::size_t n = 0; n < MAX_TEMP_PATHS; ++n) {
        const std::size_t i = (next_hint + n) % MAX_TEMP_PATHS;
        if (slots[i].load() == nullptr) {
            slots[i].store(path);
            if (high_water.load() <= i)
                high_water.store(i + 1);
            next_hint = i + 1;
            return static_cast<int>(i);
        }
    }
    return -1;
}

void unregister(int slot) {
    if (slot >= 0 && static_cast<std::size_t>(slot) < MAX_TEMP_PATHS)
        slots[static_cast<std::size_t>(slot)].store(nullptr);
}

Section::Section() {
    install();
    section_mutex.lock();
    int expected = IDLE;
    if (!state.compare_exchange_strong(expected, BUSY))
        for (;;)
            ::pause(); // DYING: another thread is removing the temporaries and ending the process
}

Section::~Section() {
    state.store(IDLE);
    const int sig = pending.exchange(0);
    section_mutex.unlock();
    if (sig != 0)
        act_on(sig);
}

void block_cleanup_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (const int s : CLEANUP_SIGNALS)
        sigaddset(&set, s);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

} // namespace instar::signal_cleanup
