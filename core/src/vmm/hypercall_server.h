// Serves the guest's hypercalls: validates every field of the mailbox, then does the I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "vmm/guest_memory.h"
#include "vmm/sandbox.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

class HypercallServer {
public:
    // `watchdog` bounds long transfers too: a huge request on a slow file stops at the deadline.
    HypercallServer(GuestMemory& mem, std::span<const Device> devices, const Watchdog& watchdog)
        : mem_(mem), devices_(devices), watchdog_(watchdog) {}

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
    const Device* device(std::uint32_t index) const;

    GuestMemory& mem_;
    std::span<const Device> devices_;
    const Watchdog& watchdog_;
    RunResult result_;
    std::uint64_t record_bytes_ = 0;
};

// "#PF page fault" for vector 14, etc.
std::string cpu_exception_name(std::uint64_t vector);

} // namespace instar::vmm
