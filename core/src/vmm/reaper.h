// Tears finished VMs down off the caller's critical path: closing a KVM VM takes ~0.3 ms (freeing
// its MMU state), which would otherwise be a third of an operation's boot-to-result latency.
#pragma once

#include <functional>

namespace instar::vmm {

// Runs `teardown` on the background reaper thread, or right here when MAX_PENDING_TEARDOWNS are
// already queued (so a burst of runs can never pile up unbounded guest memory).
void reap_later(std::function<void()> teardown);

// How many finished VMs one process may leave to its keeper (each stays until the process exits).
inline constexpr int MAX_DETACHED_TEARDOWNS = 4;

// Starts this process's keeper, once (later calls: true if it exists): a process sharing this
// address space (CLONE_VM) that holds it until this process exits (PR_SET_PDEATHSIG), so whatever
// the caller then leaks on purpose (a VM whose kvm_run page stays mapped, its guest RAM) is torn
// down by the kernel when the keeper dies, not before this process's parent sees it exit. The
// address space is what it holds, so one keeper started before any VM exists covers every VM
// made later; started early, it closes its copies of every descriptor (which the exit waits for)
// while this process is still busy. It blocks every signal. False when clone fails: the caller
// tears down itself.
bool start_teardown_keeper();

// Whether a finished VM may be left to the keeper: one was started and fewer than
// MAX_DETACHED_TEARDOWNS VMs were left to it so far (counts this one).
bool leave_to_keeper();

} // namespace instar::vmm
