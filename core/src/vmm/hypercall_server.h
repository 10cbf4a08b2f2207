// Serves the guest's hypercalls: validates every field of the mailbox, then does the I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/compress_pool.h"
#include "vmm/device_io.h"
#include "vmm/guest_memory.h"
#include "vmm/read_ahead_worker.h"
#include "vmm/sandbox.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

class HypercallServer {
public:
    // `watchdog` bounds long transfers too: a huge request on a slow file stops at the deadline.
    // `outputs` serves INSTAR_HC_ADD_FILE (nullptr: refused). `write_behind` (nullptr: none, or a
    // started writer) takes the guest's deferrable writes to output devices; every other call that
    // could see their bytes waits for it first, and its failures reach the guest on the next call
    // (docs/sandbox.md).
    using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;
    HypercallServer(GuestMemory& mem, std::span<const Device> devices, const Watchdog& watchdog,
                    OutputFiles* outputs = nullptr, ProgressFn progress = {}, WriteBehind* write_behind = nullptr)
        : mem_(mem), devices_(devices.begin(), devices.end()), watchdog_(watchdog), outputs_(outputs),
          progress_(std::move(progress)), write_behind_(write_behind), bounce_(std::make_unique<BounceBuffer>()) {}

    enum class Next { Resume, Exit };
    // Serves the request in the mailbox. An error ends the guest; records sent so far are discarded
    // by the caller (take_log() still returns the log for diagnosis).
    Outcome<Next> serve();

    // INSTAR_HC_GROW_MEMORY: `grow` makes the RAM `new_size` bytes (GuestMemory::limit(), the
    // only size asked), off this thread if it must (the vCPU thread is confined); false when it
    // could not. Without one (the process sandbox, a run whose RAM is all there from the start)
    // the call is refused.
    using GrowFn = std::function<bool(std::uint64_t new_size)>;
    void set_memory_grower(GrowFn grow) { grow_ = std::move(grow); }

    // INSTAR_HC_COMPRESS runs its jobs on `pool` (and this thread); without one, on this thread.
    void set_compress_pool(CompressPool* pool) { compress_pool_ = pool; }

    // Read-ahead (guest_abi.h, INSTAR_READ_AHEAD): once enabled, serve() answers a checked AHEAD
    // read of an input device at once and keeps it; the caller runs the kept reads with
    // run_pending_reads() after the guest has its answer and before it serves the next call. Only
    // a caller that answers the guest before serve() returns can use this (the process sandbox);
    // otherwise every read is done inside serve().
    void enable_read_ahead() { read_ahead_ = true; }
    Outcome<bool> run_pending_reads();
    // Read-ahead in the KVM sandbox: a checked AHEAD read of an input device is answered at once
    // and made by `worker`'s thread while the guest runs on; INSTAR_HC_SETTLE_READS waits for it.
    void set_read_ahead_worker(ReadAheadWorker* worker) { reader_ = worker; }

    RunResult take_result() { return std::move(result_); }
    std::vector<std::string> take_log() { return std::move(result_.log); }

private:
    Outcome<Next> read_or_write(const instar_hypercall& req, instar_hypercall& reply, bool write);
    // An INSTAR_READ_AHEAD read of input `d` into checked guest RAM `buf`, taken to be made after
    // the answer: kept for run_pending_reads() (process sandbox) or queued for the reader thread
    // (KVM). False: it is made now.
    bool take_read_ahead(const Device& d, const instar_hypercall& req, std::uint8_t* buf);
    Outcome<bool> transfer(const Device& d, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset, bool write);
    template <class Entry, std::size_t MAX>
    std::optional<SandboxError> copy_table(const instar_hypercall& req, Entry (&out)[MAX], const char* call,
                                           const char* entries, const char* table_name);
    Outcome<Next> write_segments(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> record(const instar_hypercall& req);
    Outcome<Next> record_one(std::uint64_t type, std::uint64_t gpa, std::uint64_t len);
    Outcome<Next> records(const instar_hypercall& req);
    Outcome<Next> log(const instar_hypercall& req);
    Outcome<Next> set_length(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> add_file(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> next_image(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> allocation(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> discard(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> discard_ranges(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<bool> discard_range(const Device& d, std::uint64_t offset, std::uint64_t len, std::uint64_t length);
    static std::optional<std::uint64_t> file_length(const Device& d);
    Outcome<Next> progress(const instar_hypercall& req);
    void grow_memory(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> compress(const instar_hypercall& req);
    void host_failure(std::string message, int err);
    // Waits for the write-behind queue; a failure not yet reported becomes the host error and, when
    // it was a timeout, the run's error. True when a write failed (now or earlier).
    Outcome<bool> settle_writes();
    // Whether a read of written device `d` may skip settle_writes() (no queued write can change it).
    bool read_misses_queue(const Device& d, const instar_hypercall& req);
    const Device* device(std::uint32_t index) const;

    GuestMemory& mem_;
    std::vector<Device> devices_; // grows as the guest adds files
    const Watchdog& watchdog_;
    OutputFiles* outputs_;
    ProgressFn progress_;
    WriteBehind* write_behind_;
    CompressPool* compress_pool_ = nullptr;
    GrowFn grow_;
    ReadAheadWorker* reader_ = nullptr;
    std::unique_ptr<BounceBuffer> bounce_; // the vCPU thread's, for O_DIRECT devices
    WritebackStarter writeback_;           // the vCPU thread's synchronous writes
    std::uint32_t added_files_ = 0;
    RunResult result_;
    std::uint64_t record_bytes_ = 0;
    // Read-ahead: the reads answered but not yet done, and the first failure since the last settle.
    struct PendingRead {
        std::uint32_t device; // an index: devices_ grows (ADD_FILE), so no pointer into it is kept
        std::uint8_t* buf;
        std::uint64_t len;
        std::uint64_t offset;
    };
    // The process sandbox runs the kept reads after every answer, so one is kept at a time; this
    // bounds the list for a caller that runs them less often. Past it a read is done at once (the
    // guest cannot tell, but for time).
    static constexpr std::size_t MAX_PENDING_READS = 64;
    bool read_ahead_ = false;
    std::vector<PendingRead> pending_reads_;
    std::int64_t pending_read_error_ = 0;
};

#ifdef INSTAR_VMM_TEST_HOOKS
// Compiled only into tests/vmm/test_vmm_seccomp: called on the vCPU thread at the start of every
// hypercall, so a test can make the host code path attempt a forbidden system call after the drop.
namespace test_hooks {
inline std::function<void(std::uint32_t nr)> on_hypercall;
} // namespace test_hooks
#endif

// "#PF page fault" for vector 14, etc.
std::string cpu_exception_name(std::uint64_t vector);

} // namespace instar::vmm
