// The raw hypercall primitive: fill the mailbox at its fixed address, then ring the doorbell.
// Used by the runtime; tests' hostile modules use it directly to send requests the runtime never would.
#pragma once

#include <instar/guest_abi.h>
#include <instar/spin_backoff.h>

namespace instar::guest {

#ifndef INSTAR_GUEST_PROCESS
inline instar_hypercall* mailbox() {
    // SAFETY: the mailbox page is identity-mapped and reserved for this struct by the memory map.
    return reinterpret_cast<instar_hypercall*>(static_cast<uintptr_t>(INSTAR_GPA_MAILBOX));
}

// Issues the call already written into the mailbox; returns the host's `ret`.
inline int64_t hypercall_issue(instar_hypercall* mb) {
    uint32_t nr = mb->nr;
    // SAFETY: the doorbell page is mapped (to no memory) by the host's page tables; the store
    // exits to the host, which serves the mailbox before the next instruction runs.
    asm volatile("movl %0, (%1)" : : "r"(nr), "r"(static_cast<uintptr_t>(INSTAR_GPA_DOORBELL)) : "memory");
    return *static_cast<volatile int64_t*>(&mb->ret);
}
#else
// The process sandbox's transport (guest_abi.h): the mailbox travels over the channel. Raw system
// calls, no libc: seccomp strict mode allows read, write, exit and sigreturn only.
inline instar_hypercall* mailbox() {
    // SAFETY: the host maps this page read-write in the guest process (guest_abi.h).
    return reinterpret_cast<instar_hypercall*>(static_cast<uintptr_t>(INSTAR_PROC_MAILBOX));
}

[[noreturn]] inline void process_exit(int code) {
    for (;;) asm volatile("syscall" : : "a"(60), "D"(code) : "rcx", "r11", "memory"); // exit
}

inline long process_syscall3(long nr, long a, long b, long c) {
    long ret;
    asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

inline int64_t hypercall_issue(instar_hypercall* mb) {
    constexpr long SYS_READ = 0, SYS_WRITE = 1, SIZE = static_cast<long>(sizeof(instar_hypercall));
    const long mbp = static_cast<long>(reinterpret_cast<uintptr_t>(mb));
    // The host answers every call but EXIT and FAULT; when it stops answering (it closed the
    // channel: the run is over), the guest process ends.
    // SAFETY: both words are in the mailbox page the host maps read-write in the guest process.
    auto* turn = reinterpret_cast<uint32_t*>(static_cast<uintptr_t>(INSTAR_PROC_TURN));
    const uint64_t budget = *reinterpret_cast<volatile uint64_t*>(static_cast<uintptr_t>(INSTAR_PROC_SPIN));
    __atomic_store_n(turn, INSTAR_PROC_TURN_POSTED, __ATOMIC_SEQ_CST);
    if (process_syscall3(SYS_WRITE, INSTAR_PROC_CHANNEL_FD, mbp, SIZE) != SIZE) process_exit(125);
    // Spin for the answer (guest_abi.h, INSTAR_PROC_TURN): the host usually answers within the
    // budget, and an answer found here costs no wake-up of a sleeping process on either side.
    // Spins that keep missing (a loaded machine) back off (spin_backoff.h).
    static SpinBackoff backoff;
    // The budget counts pause iterations, not TSC ticks: kernels that keep seccomp strict mode's
    // TIF_NOTSC (6.18 here) make rdtsc fault in this process (docs/sandbox.md).
    const uint64_t spin = budget != 0 && backoff.should_spin() ? budget : 0;
    uint64_t spun = 0;
    bool slept = false;
    // The host may swap POSTED for WORKING (the answer waits for its other threads): then sleep
    // at once, without counting it as a spin that missed. A failed swap means the word changed
    // (to ANSWERED, or POSTED to WORKING): look again.
    for (;;) {
        uint32_t now = __atomic_load_n(turn, __ATOMIC_ACQUIRE);
        if (now == INSTAR_PROC_TURN_ANSWERED) break;
        if (now == INSTAR_PROC_TURN_POSTED && spun < spin) {
            ++spun;
            __builtin_ia32_pause();
            continue;
        }
        if (now == INSTAR_PROC_TURN_POSTED) slept = true;
        if (now != INSTAR_PROC_TURN_POSTED && now != INSTAR_PROC_TURN_WORKING) process_exit(126);
        if (__atomic_compare_exchange_n(turn, &now, INSTAR_PROC_TURN_SLEEPING, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
            if (process_syscall3(SYS_READ, INSTAR_PROC_CHANNEL_FD, mbp, SIZE) != SIZE) process_exit(126);
            break;
        }
    }
    if (spin != 0 && slept)
        backoff.miss();
    else if (spin != 0)
        backoff.hit();
    if (mb != mailbox()) __builtin_memcpy(mb, mailbox(), sizeof *mb);
    return *static_cast<volatile int64_t*>(&mb->ret);
}
#endif

} // namespace instar::guest
