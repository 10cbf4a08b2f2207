// Tears finished VMs down off the caller's critical path: closing a KVM VM takes ~0.3 ms (freeing
// its MMU state), which would otherwise be a third of an operation's boot-to-result latency.
#pragma once

#include <functional>
#include <span>

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

// How many descriptors one release_in_background() call takes (an image and its extent files;
// more: the caller closes them itself).
inline constexpr std::size_t MAX_BACKGROUND_RELEASES = 64;

// Closes `fds` (distinct, open) in a short-lived process sharing this address space, after this
// process has closed its own copies, so that the work of their last close (a replaced or deleted
// file's blocks freed: 0.1 s for 512 MiB on ext4) is not on this process's path to its exit. The
// releaser first closes its copies of every other descriptor (this process's exit waits for that,
// as for the keeper, so a pipe on stdout still ends with this process). True: the descriptors are
// closed here and released there. False (too many, four releasers still running, clone failed):
// nothing was done; the caller closes them.
bool release_in_background(std::span<const int> fds);

} // namespace instar::vmm
