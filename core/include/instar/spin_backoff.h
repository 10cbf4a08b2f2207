/* When each side of the process sandbox's answer handshake spins for the other (guest_abi.h,
 * INSTAR_PROC_TURN; docs/sandbox.md, "Spinning backs off"). Shared by the host's serving loop and
 * the guest runtime: header-only and freestanding.
 *
 * A spin pays only while the other side is running on another CPU and answers within the budget.
 * On a loaded machine (more runnable threads than CPUs) it often is not running: then the spin
 * misses, and it burnt a time slice that the other side, or another process, needed. So each miss
 * makes the following calls skip spinning, twice as many after each miss in a row (1, 2, 4, ... up
 * to SPIN_SKIP_MAX calls), and a hit spins again on the very next call. On an idle machine, where
 * spins hit, nothing changes; under load the CPU wasted is at most one budget per SPIN_SKIP_MAX
 * calls once misses persist. */
#pragma once

#include <stdint.h>

namespace instar {

class SpinBackoff {
public:
    /* The most calls skipped after one miss: after a run of misses, one call in this many still
     * tries a spin, so the handshake notices within that many calls when the load has gone. */
    static constexpr uint32_t SPIN_SKIP_MAX = 64;

    /* Whether this call should spin (false: go straight to the blocking wait). */
    bool should_spin() {
        if (skip_ == 0) return true;
        --skip_;
        return false;
    }
    /* The spin found the answer (or the call) within its budget. */
    void hit() { streak_ = 1; }
    /* The spin ran out its budget. */
    void miss() {
        skip_ = streak_;
        if (streak_ < SPIN_SKIP_MAX) streak_ *= 2;
    }

private:
    uint32_t skip_ = 0;   /* calls still to skip */
    uint32_t streak_ = 1; /* calls the next miss skips */
};

} // namespace instar
