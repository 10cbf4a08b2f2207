// Read-ahead: the guest's INSTAR_READ_AHEAD reads of input devices, made by one host reader thread
// while the guest runs on (docs/sandbox.md, "KVM reader thread"; the process sandbox too).
// Nothing here looks at the bytes it moves.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "vmm/device_io.h"
#include "vmm/sandbox.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

// Reads taken and not yet settled: the guest's walks keep two at a time (compare reads both sides'
// next chunk); past this bound a read is made at once by the caller (only slower).
inline constexpr std::size_t READ_AHEAD_MAX_JOBS = 64;

// In the KVM sandbox the vCPU thread serves the call, so a read made there overlaps nothing. The
// process sandbox's serving thread is not the guest's CPU, but a read it makes after an answer
// holds up the next call (compare's second side waited for the first side's read). This thread
// makes the reads instead, in both. It writes into guest RAM the guest promised to leave alone until its next
// INSTAR_HC_SETTLE_READS (guest_abi.h) and which outlives the thread (the sandbox makes the memory
// first and destroys the worker before it returns). Started before the vCPU thread confines itself,
// and confined by its own filter (seccomp_filter.h, confine_worker_thread): it only reads the
// devices and waits on its lock.
class ReadAheadWorker {
public:
    explicit ReadAheadWorker(const Watchdog& watchdog);
    ~ReadAheadWorker(); // stops and joins the thread; reads still queued are dropped
    ReadAheadWorker(const ReadAheadWorker&) = delete;
    ReadAheadWorker& operator=(const ReadAheadWorker&) = delete;

    // Starts the reader thread, which first runs `confine` (may be empty). False if no thread could
    // be made (the caller then reads at once).
    bool start(std::function<bool()> confine);

    // Queues a read of [offset, offset + len) of `d` into `dst` (checked by the caller against the
    // device and guest RAM). False (nothing queued: the caller reads at once) when READ_AHEAD_MAX_JOBS
    // reads are queued or the thread has stopped.
    bool submit(const Device& d, std::uint8_t* dst, std::uint64_t len, std::uint64_t offset);

    // Waits until every queued read is done, making the reads the thread has not started itself
    // (through `bounce`, the calling thread's): compare queues both sides' next chunk and settles
    // after comparing the current one, so the thread reads one side while the caller reads the
    // other instead of waiting for the thread to read both in turn. Done, or the first failure
    // since the last settle: Failed (some read failed) or TimedOut (the watchdog stopped one; the
    // rest were dropped).
    Transfer settle(BounceBuffer& bounce);

private:
    struct Job {
        Device dev{};
        std::uint8_t* dst = nullptr;
        std::uint64_t len = 0;
        std::uint64_t offset = 0;
    };
    void loop();
    // Reads `job` with the lock released, then records its outcome (mu_ held on entry and exit).
    void read_job(std::unique_lock<std::mutex>& lock, const Job& job, BounceBuffer& bounce);

    const Watchdog& watchdog_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;                // guarded by mu_: reads nobody has started
    std::uint32_t reading_ = 0;            // guarded by mu_: reads started and not finished (at most 2)
    Transfer outcome_ = Transfer::Done;    // guarded by mu_: the first failure since the last settle
    bool stop_ = false;                    // guarded by mu_
    BounceBuffer bounce_;                  // the reader thread's, for O_DIRECT devices
    std::thread thread_;
};

} // namespace instar::vmm
