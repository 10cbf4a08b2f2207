// The per-run watchdog: a POSIX timer signals the vCPU thread at the deadline (and every
// WATCHDOG_REPEAT after, in case one signal lands outside KVM_RUN), making KVM_RUN return EINTR.
#pragma once

#include <signal.h>
#include <time.h>

#include <chrono>
#include <memory>

#include "vmm/sandbox.h"

namespace instar::vmm {

class Watchdog {
public:
    // Arms a timer for the calling thread (which must be the one that calls KVM_RUN).
    static Outcome<std::unique_ptr<Watchdog>> arm(std::chrono::milliseconds budget);
    ~Watchdog();
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    bool expired() const { return std::chrono::steady_clock::now() >= deadline_; }

private:
    Watchdog() = default;
    timer_t timer_{};
    bool have_timer_ = false;
    sigset_t old_mask_{};
    std::chrono::steady_clock::time_point deadline_;
};

} // namespace instar::vmm
