// Serves the guest's hypercalls: validates every field of the mailbox, then does the I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/sandbox.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

class HypercallServer {
public:
    // `watchdog` bounds long transfers too: a huge request on a slow file stops at the deadline.
    // `outputs` serves INSTAR_HC_ADD_FILE (nullptr: refused).
    using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;
    HypercallServer(GuestMemory& mem, std::span<const Device> devices, const Watchdog& watchdog,
                    OutputFiles* outputs = nullptr, ProgressFn progress = {})
        : mem_(mem), devices_(devices.begin(), devices.end()), watchdog_(watchdog), outputs_(outputs),
          progress_(std::move(progress)) {}

    enum class Next { Resume, Exit };
    // Serves the request in the mailbox. An error ends the guest; records sent so far are discarded
    // by the caller (take_log() still returns the log for diagnosis).
    Outcome<Next> serve();

    RunResult take_result() { return std::move(result_); }
    std::vector<std::string> take_log() { return std::move(result_.log); }

private:
    Outcome<Next> read_or_write(const instar_hypercall& req, instar_hypercall& reply, bool write);
    Outcome<Next> record(const instar_hypercall& req);
    Outcome<Next> log(const instar_hypercall& req);
    Outcome<Next> set_length(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> add_file(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> allocation(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> discard(const instar_hypercall& req, instar_hypercall& reply);
    Outcome<Next> progress(const instar_hypercall& req);
    void host_failure(std::string message, int err);
    const Device* device(std::uint32_t index) const;

    GuestMemory& mem_;
    std::vector<Device> devices_; // grows as the guest adds files
    const Watchdog& watchdog_;
    OutputFiles* outputs_;
    ProgressFn progress_;
    std::uint32_t added_files_ = 0;
    RunResult result_;
    std::uint64_t record_bytes_ = 0;
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
