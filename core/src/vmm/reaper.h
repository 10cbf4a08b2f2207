// Tears finished VMs down off the caller's critical path: closing a KVM VM takes ~0.3 ms (freeing
// its MMU state), which would otherwise be a third of an operation's boot-to-result latency.
#pragma once

#include <functional>

namespace instar::vmm {

// Runs `teardown` on the background reaper thread, or right here when MAX_PENDING_TEARDOWNS are
// already queued (so a burst of runs can never pile up unbounded guest memory).
void reap_later(std::function<void()> teardown);

// How many finished VMs one process may leave to keepers (each stays until the process exits).
inline constexpr int MAX_DETACHED_TEARDOWNS = 4;

// Starts a keeper: a process sharing this address space (CLONE_VM) that holds it until this
// process exits (PR_SET_PDEATHSIG), so whatever the caller then leaks on purpose (a VM whose
// kvm_run page stays mapped, its guest RAM) is torn down by the kernel when the keeper dies, not
// before this process's parent sees it exit. The keeper closes its copies of every descriptor and
// blocks every signal first. False (nothing started) past MAX_DETACHED_TEARDOWNS or when clone
// fails: the caller tears down itself.
bool start_teardown_keeper();

} // namespace instar::vmm
