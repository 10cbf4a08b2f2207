// The hypercall server's file I/O on devices: whole-range pread/pwrite (buffered, or O_DIRECT
// through aligned bounce buffers), and the write-behind queue a host writer thread drains while the
// guest carries on. Nothing here looks at the bytes it moves.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
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

// Early writeback: a write to a file only dirties the page cache; the disk sees it at the kernel's
// leisure or when the operation's final flush (fdatasync) forces it, which then waits for all of it:
// a rebase copying 384 MiB spent half its time in that one call. On a device marked early_writeback
// (the operation will flush it), once this many bytes have been written since the last start, the
// host asks the kernel to start writing the file's dirty pages (sync_file_range with
// SYNC_FILE_RANGE_WRITE: queued to the disk, not waited for), so the disk works while the guest goes
// on. The flush's guarantee is unchanged (it still waits for every page); no write is made that the
// flush would not have made, and the order of states on disk is no different from the kernel's own
// background writeback. Small enough that the disk starts early, large enough that the call (one walk
// of the file's dirty pages) stays rare.
inline constexpr std::uint64_t EARLY_WRITEBACK_BYTES = 4u << 20;

// Counts one thread's writes and starts writeback when EARLY_WRITEBACK_BYTES have gathered (the
// serving thread and the write-behind writer have one each).
class WritebackStarter {
public:
    // After `len` bytes were written to `d`. True when it started writeback of d's file now (its
    // result is not looked at: a failing disk fails the flush, which reports it).
    bool wrote(const Device& d, std::uint64_t len);

private:
    std::uint64_t pending_ = 0; // bytes written to early_writeback devices since the last start
};

// Starts `thread` (the write-behind writer, the read-ahead reader): it runs `confine` first (may be
// empty), then `body`, or `refused` when confine fails. False if no thread could be made.
bool start_worker_thread(std::thread& thread, std::function<bool()> confine, std::function<void()> refused,
                         std::function<void()> body);

// Write-behind for output devices: the guest's INSTAR_WRITE_DEFERRABLE writes, done by one writer
// thread (started before the vCPU thread confines itself, and confined by its own filter:
// seccomp_filter.h) while the guest reads on. Nothing is copied: the writer reads the bytes from
// guest RAM, which the guest has promised to leave alone until its next settling call (guest_abi.h),
// and which outlives the writer (the sandbox makes it first). One such write is queued at most: the
// next one waits for it, so the promise covering only the last write is enough. Behind it, small
// writes (a format writer's metadata: an L2 entry, a refcount, a header) are copied into the queue
// instead of waiting for it, bounded in size and number, and written in the order they came: the
// file goes through the same sequence of states as with synchronous writes, one write at a time.
// The first failure is kept, the writes queued after it are dropped (as if the process had died
// there: nothing written after a failed write), later requests are refused, and the vCPU thread
// hands the failure to the guest on its next call.
// A write copied into the queue is at most this long: metadata, not data (a qcow2 L2 table or
// refcount block of 64 KiB clusters is the largest a format writer writes in one piece).
inline constexpr std::uint64_t WRITE_BEHIND_COPY_MAX = 64u << 10;
// All copied writes in the queue together: the host memory write-behind may take beyond guest RAM.
inline constexpr std::uint64_t WRITE_BEHIND_COPY_BYTES = 1u << 20;
// Writes queued at once (each copied one is a heap block): a bound on the bookkeeping.
inline constexpr std::size_t WRITE_BEHIND_MAX_JOBS = 64;

class WriteBehind {
public:
    struct Failure {
        Transfer kind = Transfer::Failed;
        int err = 0;
        std::uint64_t offset = 0;
    };
    explicit WriteBehind(const Watchdog& watchdog);
    ~WriteBehind(); // stops and joins the thread (queued writes are still written)
    WriteBehind(const WriteBehind&) = delete;
    WriteBehind& operator=(const WriteBehind&) = delete;

    // Starts the writer thread, which first runs `confine` (may be empty). False if no thread could
    // be made (the caller then writes synchronously).
    bool start(std::function<bool()> confine);
    bool running() const { return thread_.joinable(); }

    // Waits until no earlier write from guest RAM is queued, then queues [src, src + len), which the
    // writer thread reads later: the caller keeps it unchanged until the next enqueue() or drain()
    // returns. False (nothing queued) once a failure is known.
    bool enqueue(const Device& d, const std::uint8_t* src, std::uint64_t len, std::uint64_t offset);
    // Queues a copy of [src, src + len) behind the writes already queued (waiting while the copies'
    // bounds are reached). False (nothing queued: the caller waits with drain() and writes it
    // itself) when the queue is empty (nothing to keep order with), len is 0 or more than
    // WRITE_BEHIND_COPY_MAX, memory is short, or a failure is known.
    bool enqueue_copy(const Device& d, const std::uint8_t* src, std::uint64_t len, std::uint64_t offset);
    // Whether a queued write to descriptor `fd` overlaps [offset, offset + len).
    bool overlaps(int fd, std::uint64_t offset, std::uint64_t len);
    // Whether any write is queued or being written (the writer thread needs a CPU).
    bool busy();
    // Waits until every queued write is done; returns the first failure, if any.
    std::optional<Failure> drain();
    std::optional<Failure> failure();

private:
    struct Job {
        Device dev{};
        const std::uint8_t* src = nullptr; // guest RAM, or copy's bytes
        std::uint64_t len = 0;
        std::uint64_t offset = 0;
        std::unique_ptr<std::uint8_t[]> copy; // set for a copied write
    };
    void loop();

    const Watchdog& watchdog_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;           // guarded by mu_; the front one is being written
    std::uint64_t copied_bytes_ = 0;  // guarded by mu_: the copies' bytes in queue_
    bool from_guest_queued_ = false;  // guarded by mu_: a write from guest RAM is in queue_
    bool stop_ = false;               // guarded by mu_
    std::optional<Failure> failure_;  // guarded by mu_
    BounceBuffer bounce_;             // the writer thread's
    WritebackStarter writeback_;      // the writer thread's
    std::thread thread_;
};

} // namespace instar::vmm
