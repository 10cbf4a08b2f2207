// The hypercall server's file I/O on devices: whole-range pread/pwrite (buffered, or O_DIRECT
// through aligned bounce buffers), and the write-behind queue a host writer thread drains while the
// guest carries on. Nothing here looks at the bytes it moves.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vmm/sandbox.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

// O_DIRECT alignment of offsets, lengths and buffers: 4096 satisfies every logical block size Linux
// file systems use (512 and 4096), so no probing is needed.
inline constexpr std::uint64_t DIRECT_IO_ALIGN = 4096;
// One bounce buffer's size: a direct request moves in pieces of at most this much.
inline constexpr std::uint64_t DIRECT_BOUNCE_BYTES = 1u << 20;
// Large requests move in pieces this big, so the watchdog is checked at least this often.
inline constexpr std::uint64_t TRANSFER_PIECE = 64ull << 20;

enum class Transfer { Done, Failed, TimedOut };

// An aligned bounce buffer, allocated at first use (only runs with an O_DIRECT device need one).
class BounceBuffer {
public:
    BounceBuffer() = default;
    ~BounceBuffer();
    BounceBuffer(const BounceBuffer&) = delete;
    BounceBuffer& operator=(const BounceBuffer&) = delete;
    std::uint8_t* get(); // nullptr when memory is short
private:
    std::uint8_t* p_ = nullptr;
};

// Reads or writes the whole range [offset, offset + len) of `d` (retrying short transfers and
// signals); on Failed, errno says why (EIO when the file was shorter than the range). Direct
// devices go through `bounce`: partial blocks at the edges are read first and written back whole,
// and a write that padded the file past its old length and past the request's end truncates it
// back, so the file's length is what it would be without O_DIRECT.
Transfer device_transfer(const Device& d, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset, bool write,
                         const Watchdog& watchdog, BounceBuffer& bounce);

// Write-behind for output devices: the guest's INSTAR_WRITE_DEFERRABLE writes, done by one writer
// thread (started before the vCPU thread confines itself, and confined by its own filter:
// seccomp_filter.h) while the guest reads on. Nothing is copied: the writer reads the bytes from
// guest RAM, which the guest has promised to leave alone until its next settling call (guest_abi.h),
// and which outlives the writer (the sandbox makes it first). One write is in flight at most: the
// next one waits for it, so the promise covering only the last write is enough, and no memory is
// needed but the bytes' own. The first failure is kept: later requests are refused, and the vCPU
// thread hands the failure to the guest on its next call.
class WriteBehind {
public:
    struct Failure {
        Transfer kind = Transfer::Failed;
        int err = 0;
        std::uint64_t offset = 0;
    };
    explicit WriteBehind(const Watchdog& watchdog);
    ~WriteBehind(); // stops and joins the thread (a pending write is still written)
    WriteBehind(const WriteBehind&) = delete;
    WriteBehind& operator=(const WriteBehind&) = delete;

    // Starts the writer thread, which first runs `confine` (may be empty). False if no thread could
    // be made (the caller then writes synchronously).
    bool start(std::function<bool()> confine);
    bool running() const { return thread_.joinable(); }

    // Waits for the write in flight, then hands [src, src + len) to the writer thread, which reads
    // it later: the caller keeps it unchanged until the next enqueue() or drain() returns. False
    // (nothing queued) once a failure is known.
    bool enqueue(const Device& d, const std::uint8_t* src, std::uint64_t len, std::uint64_t offset);
    // Waits until the write in flight is done; returns the first failure, if any.
    std::optional<Failure> drain();
    std::optional<Failure> failure();

private:
    void loop();

    const Watchdog& watchdog_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool busy_ = false;               // a write is pending or being written (guarded by mu_)
    Device dev_{};                    // the pending write (guarded by mu_ until busy_)
    const std::uint8_t* src_ = nullptr;
    std::uint64_t len_ = 0;
    std::uint64_t offset_ = 0;
    bool stop_ = false;               // guarded by mu_
    std::optional<Failure> failure_;  // guarded by mu_
    BounceBuffer bounce_;             // the writer thread's
    std::thread thread_;
};

} // namespace instar::vmm
