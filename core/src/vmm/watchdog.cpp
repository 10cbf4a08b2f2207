// Watchdog timer: SIGEV_THREAD_ID delivery to the vCPU thread; the handler does nothing, the
// signal's only job is to interrupt KVM_RUN (installed without SA_RESTART).
#include "vmm/watchdog.h"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace instar::vmm {

namespace {

// A real-time signal near the top of the range: unlikely to be used by anything else in-process.
int watchdog_signal() { return SIGRTMAX - 1; }
// After the deadline, re-signal this often until the run loop notices (a signal can arrive while
// the host is serving a hypercall, outside KVM_RUN).
constexpr long WATCHDOG_REPEAT_NS = 10'000'000;

void on_signal(int) {}

bool install_handler() {
    static std::once_flag once;
    static bool ok = false;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
        ok = ::sigaction(watchdog_signal(), &sa, nullptr) == 0;
    });
    return ok;
}

SandboxError timer_error(const char* what) {
    return {ErrorKind::HostResource, std::string("watchdog: ") + what + " failed: " + std::strerror(errno), {}};
}

} // namespace

Outcome<std::unique_ptr<Watchdog>> Watchdog::arm(std::chrono::milliseconds budget) {
    if (!install_handler()) return timer_error("sigaction");
    std::unique_ptr<Watchdog> w(new Watchdog());
    w->deadline_ = std::chrono::steady_clock::now() + budget;
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, watchdog_signal());
    ::pthread_sigmask(SIG_UNBLOCK, &unblock, &w->old_mask_);

    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = watchdog_signal();
    sev._sigev_un._tid = ::gettid();
    if (::timer_create(CLOCK_MONOTONIC, &sev, &w->timer_) != 0) return timer_error("timer_create");
    w->have_timer_ = true;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(budget).count();
    itimerspec its{};
    its.it_value.tv_sec = ns / 1'000'000'000;
    its.it_value.tv_nsec = ns % 1'000'000'000;
    its.it_interval.tv_nsec = WATCHDOG_REPEAT_NS;
    if (::timer_settime(w->timer_, 0, &its, nullptr) != 0) return timer_error("timer_settime");
    return Outcome<std::unique_ptr<Watchdog>>(std::move(w));
}

Watchdog::~Watchdog() {
    if (have_timer_) ::timer_delete(timer_);
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

} // namespace instar::vmm
