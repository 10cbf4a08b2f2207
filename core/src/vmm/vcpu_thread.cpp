// The per-run vCPU thread and its broker to the caller's thread.
#include "vmm/vcpu_thread.h"

#include <fcntl.h>
#include <pthread.h>
#include <memory>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

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

bool BrokeredOutputs::above_floor(Device& dev, const std::string& name, std::string& error) {
    if (dev.fd >= floor_) return true;
    const int moved = ::fcntl(dev.fd, F_DUPFD_CLOEXEC, floor_);
    if (moved < 0) {
        error = "Could not create '" + name + "': " + std::strerror(errno);
        return false;
    }
    dups_.push_back(moved);
    dev.fd = moved;
    return true;
}

std::optional<Device> BrokeredOutputs::add(const std::string& name, std::string& error) {
    std::optional<Device> dev;
    const std::function<void()> job = [&] {
        error = "Could not create '" + name + "'";
        dev = real_.add(name, error);
        if (dev && !above_floor(*dev, name, error)) dev.reset();
    };
    broker_->call(job);
    return dev;
}

std::optional<NextImage> BrokeredOutputs::next_image(const std::vector<Record>& records, std::uint32_t image) {
    std::optional<NextImage> next;
    const std::function<void()> job = [&] {
        next = real_.next_image(records, image);
        std::string unused;
        if (next && !above_floor(next->device, "backing file", unused)) next.reset();
    };
    broker_->call(job);
    return next;
}

namespace {

// What the caller and the vCPU thread share. The thread holds a reference until it ends, so the
// caller may return as soon as the result is in (the thread's own exit, ~1 ms under kvm-pvm for
// releasing its stack, then overlaps the caller's work).
struct Shared {
    Broker broker;
    std::optional<Outcome<RunResult>> result;
};

struct VcpuStart {
    std::shared_ptr<Shared> shared;
    const std::function<Outcome<RunResult>(Broker&)>* body; // the caller's: used only before finish()
};

void* vcpu_main(void* arg) {
    std::unique_ptr<VcpuStart> start(static_cast<VcpuStart*>(arg));
    const std::shared_ptr<Shared> shared = std::move(start->shared);
    try {
        shared->result.emplace((*start->body)(shared->broker));
    } catch (const std::exception& e) {
        shared->result.emplace(SandboxError{ErrorKind::HostResource, std::string("the vCPU thread failed: ") + e.what(), {}});
    }
    start.reset();
    shared->broker.finish(); // from here on nothing of the caller's is touched
    return nullptr;
}

} // namespace

Outcome<RunResult> run_on_fresh_thread(const std::function<Outcome<RunResult>(Broker&)>& body,
                                       const std::function<void()>& meanwhile) {
    auto shared = std::make_shared<Shared>();
    pthread_attr_t attr;
    if (int err = ::pthread_attr_init(&attr); err != 0)
        return SandboxError{ErrorKind::HostResource, std::string("cannot start the vCPU thread: ") + std::strerror(err), {}};
    struct DestroyAttr {
        pthread_attr_t* a;
        ~DestroyAttr() { ::pthread_attr_destroy(a); }
    } destroy_attr{&attr};
    ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // Every signal blocked on the vCPU thread, so a process-directed signal (SIGINT, SIGTERM,
    // SIGHUP: ops/signal_cleanup's handler unlinks temporaries) is delivered to a thread whose
    // handler may make those calls, never to the confined one. Watchdog::arm unblocks only the
    // watchdog's own signal there. Faults (SIGSEGV, SIGBUS, ...) still reach the faulting thread.
    sigset_t all;
    sigfillset(&all);
    ::pthread_attr_setsigmask_np(&attr, &all);
    auto* start = new VcpuStart{shared, &body};
    pthread_t vcpu;
    if (int err = ::pthread_create(&vcpu, &attr, vcpu_main, start); err != 0) {
        delete start;
        return SandboxError{ErrorKind::HostResource, std::string("cannot start the vCPU thread: ") + std::strerror(err), {}};
    }
    // Nothing may leave this frame while the thread runs: it uses the caller's objects by reference.
    if (meanwhile) {
        try {
            meanwhile();
        } catch (...) {
            // Only an optimisation (the body does the work itself without it).
        }
    }
    shared->broker.serve(); // ADD_FILE and PROGRESS jobs, until the thread has its result
    return std::move(*shared->result);
}

} // namespace instar::vmm
