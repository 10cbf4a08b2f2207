// The per-run vCPU thread and its broker to the caller's thread.
#include "vmm/vcpu_thread.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

namespace instar::vmm {

void Broker::call(const std::function<void()>& job) {
    std::unique_lock lock(mu_);
    job_ = &job;
    cv_.notify_all();
    cv_.wait(lock, [&] { return job_ == nullptr; });
}

void Broker::serve() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return job_ != nullptr || done_; });
        if (job_ == nullptr) return; // done
        const std::function<void()>* job = job_;
        lock.unlock();
        try {
            (*job)();
        } catch (...) {
            // The job reports through what it captured; an exception leaves its answer empty.
        }
        lock.lock();
        job_ = nullptr;
        cv_.notify_all();
    }
}

void Broker::finish() {
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
}

BrokeredOutputs::~BrokeredOutputs() {
    for (int fd : dups_) ::close(fd);
}

std::optional<Device> BrokeredOutputs::add(const std::string& name, std::string& error) {
    std::optional<Device> dev;
    const std::function<void()> job = [&] {
        error = "Could not create '" + name + "'";
        dev = real_.add(name, error);
        if (!dev || dev->fd >= floor_) return;
        const int moved = ::fcntl(dev->fd, F_DUPFD_CLOEXEC, floor_);
        if (moved < 0) {
            error = "Could not create '" + name + "': " + std::strerror(errno);
            dev.reset();
            return;
        }
        dups_.push_back(moved);
        dev->fd = moved;
    };
    broker_.call(job);
    return dev;
}

Outcome<RunResult> run_on_fresh_thread(const std::function<Outcome<RunResult>()>& body, Broker* broker) {
    std::optional<Outcome<RunResult>> result;
    // The vCPU thread starts with every signal blocked (a new thread inherits its creator's mask),
    // so a process-directed signal (SIGINT, SIGTERM, SIGHUP: ops/signal_cleanup's handler unlinks
    // temporaries) is delivered to a thread whose handler may make those calls, never to the
    // confined one. Watchdog::arm unblocks only the watchdog's own signal there. Faults (SIGSEGV,
    // SIGBUS, ...) still reach the faulting thread: the kernel forces them.
    sigset_t all, caller_mask;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &caller_mask);
    struct RestoreMask {
        sigset_t* mask;
        ~RestoreMask() { ::pthread_sigmask(SIG_SETMASK, mask, nullptr); }
    };
    std::optional<RestoreMask> restore;
    restore.emplace(RestoreMask{&caller_mask});
    try {
        std::thread vcpu([&] {
            try {
                result.emplace(body());
            } catch (const std::exception& e) {
                result.emplace(SandboxError{ErrorKind::HostResource, std::string("the vCPU thread failed: ") + e.what(), {}});
            }
            if (broker != nullptr) broker->finish();
        });
        restore.reset(); // the caller's own mask again, before it serves the broker
        if (broker != nullptr) broker->serve();
        vcpu.join();
    } catch (const std::system_error& e) {
        return SandboxError{ErrorKind::HostResource, std::string("cannot start the vCPU thread: ") + e.what(), {}};
    }
    return std::move(*result);
}

} // namespace instar::vmm
