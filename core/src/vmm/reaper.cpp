// The background reaper thread for finished VMs.
#include "vmm/reaper.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

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

} // namespace instar::vmm
