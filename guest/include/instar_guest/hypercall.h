// The raw hypercall primitive: fill the mailbox at its fixed address, then ring the doorbell.
// Used by the runtime; tests' hostile modules use it directly to send requests the runtime never would.
#pragma once

#include <instar/guest_abi.h>

namespace instar::guest {

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

} // namespace instar::guest
