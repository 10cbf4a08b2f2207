// The per-run vCPU thread and its broker to the caller's thread.
#include "vmm/vcpu_thread.h"

#include <fcntl.h>
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
    try {
        std::thread vcpu([&] {
            try {
                result.emplace(body());
            } catch (const std::exception& e) {
                result.emplace(SandboxError{ErrorKind::HostResource, std::string("the vCPU thread failed: ") + e.what(), {}});
            }
            if (broker != nullptr) broker->finish();
        });
        if (broker != nullptr) broker->serve();
        vcpu.join();
    } catch (const std::system_error& e) {
        return SandboxError{ErrorKind::HostResource, std::string("cannot start the vCPU thread: ") + e.what(), {}};
    }
    return std::move(*result);
}

} // namespace instar::vmm
