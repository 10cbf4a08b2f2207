// The KVM sandbox's reader thread (read_ahead_worker.h).
#include "vmm/read_ahead_worker.h"

namespace instar::vmm {

ReadAheadWorker::ReadAheadWorker(const Watchdog& watchdog) : watchdog_(watchdog) {}

ReadAheadWorker::~ReadAheadWorker() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool ReadAheadWorker::start(std::function<bool()> confine) {
    return start_worker_thread(thread_, std::move(confine), [this] {
        std::lock_guard lock(mu_);
        stop_ = true; // submit() refuses from now on: the vCPU thread reads at once
        if (!queue_.empty()) outcome_ = Transfer::Failed; // taken before the thread failed
        queue_.clear();
        cv_.notify_all();
    }, [this] { loop(); });
}

bool ReadAheadWorker::submit(const Device& d, std::uint8_t* dst, std::uint64_t len, std::uint64_t offset) {
    {
        std::lock_guard lock(mu_);
        if (stop_ || queue_.size() + reading_ >= READ_AHEAD_MAX_JOBS) return false;
        queue_.push_back(Job{d, dst, len, offset});
    }
    cv_.notify_all();
    return true;
}

void ReadAheadWorker::read_job(std::unique_lock<std::mutex>& lock, const Job& job, BounceBuffer& bounce) {
    ++reading_;
    lock.unlock();
    // SAFETY: the server checked [dst, dst + len) against guest RAM, which outlives this thread;
    // the guest leaves it alone until it settles (if it does not, it garbles only its own copy).
    const Transfer t = device_transfer(job.dev, job.dst, job.len, job.offset, false, watchdog_, bounce);
    lock.lock();
    --reading_;
    if (t == Transfer::TimedOut) {
        outcome_ = t;
        queue_.clear(); // past the budget: the run is ending, the rest is not read
    } else if (t == Transfer::Failed && outcome_ == Transfer::Done) {
        outcome_ = t;
    }
    cv_.notify_all();
}

Transfer ReadAheadWorker::settle(BounceBuffer& bounce) {
    std::unique_lock lock(mu_);
    while (!queue_.empty() || reading_ != 0) {
        if (queue_.empty()) {
            cv_.wait(lock);
            continue;
        }
        const Job job = queue_.front(); // not started by the thread: read it here
        queue_.pop_front();
        read_job(lock, job, bounce);
    }
    const Transfer t = outcome_;
    outcome_ = Transfer::Done;
    return t;
}

void ReadAheadWorker::loop() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return !queue_.empty() || stop_; });
        if (stop_) {
            queue_.clear(); // the run is over: its guest reads nothing more
            cv_.notify_all();
            return;
        }
        const Job job = queue_.front();
        queue_.pop_front();
        read_job(lock, job, bounce_);
    }
}

} // namespace instar::vmm
