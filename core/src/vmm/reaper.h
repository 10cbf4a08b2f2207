// Tears finished VMs down off the caller's critical path: closing a KVM VM takes ~0.3 ms (freeing
// its MMU state), which would otherwise be a third of an operation's boot-to-result latency.
#pragma once

#include <functional>

namespace instar::vmm {

// Runs `teardown` on the background reaper thread, or right here when MAX_PENDING_TEARDOWNS are
// already queued (so a burst of runs can never pile up unbounded guest memory).
void reap_later(std::function<void()> teardown);

} // namespace instar::vmm
