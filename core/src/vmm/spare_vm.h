// A created-but-never-run VM kept ready for the next run(): KVM_CREATE_VM, the RAM memslot and
// KVM_CREATE_VCPU cost ~0.5 ms, about half of a no-op run, and do not depend on the operation.
// Each spare is used once; no guest code ever ran in it, so "one fresh VM per operation" holds.
#pragma once

#include <cstdint>
#include <memory>

#include "vmm/guest_memory.h"
#include "vmm/kvm_system.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"

namespace instar::vmm {

struct PreparedVm {
    KvmSystem kvm;
    GuestMemory memory; // before vm: destroyed after the VM that maps it
    std::unique_ptr<Vm> vm;
};

// The spare if it has `ram` bytes of RAM, may grow to `limit` (0: ram) and has the same huge-page
// advice (waiting for one announced and being made), otherwise a VM created now (errors are
// reported here, e.g. a missing /dev/kvm).
Outcome<std::unique_ptr<PreparedVm>> take_prepared_vm(std::uint64_t ram, bool huge_pages, std::uint64_t limit = 0);

// From the first prewarm() on, every run() leaves a spare for the next one; before it, none is made
// (a process running one operation would only waste the work).
void enable_spares();
bool spares_enabled();

// Says a spare for `ram` is on its way (a queued prepare_spare_vm), so take_prepared_vm waits for
// it rather than creating a second VM concurrently.
void announce_spare_vm(std::uint64_t ram);

// Creates the spare for `ram` now (on the calling thread) unless one exists; failures are silent
// because take_prepared_vm() will meet and report them. Ends an announcement.
void prepare_spare_vm(std::uint64_t ram, bool huge_pages, std::uint64_t limit = 0);

} // namespace instar::vmm
