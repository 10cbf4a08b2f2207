// One KVM VM with one vCPU in long mode over a GuestMemory, and its single run loop.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "vmm/guest_memory.h"
#include "vmm/hypercall_server.h"
#include "vmm/kvm_system.h"
#include "vmm/unique_fd.h"
#include "vmm/watchdog.h"

namespace instar::vmm {

class Vm {
public:
    // Creates the VM, registers `mem` as its RAM, creates the vCPU and gives it the host CPUID.
    // The guest has not run: a created Vm may wait as a spare (spare_vm.h) before boot().
    static Outcome<std::unique_ptr<Vm>> create(const KvmSystem& kvm, GuestMemory& mem);
    // Grows `mem` (the RAM given to create()) to new_size and registers the new part as the next
    // memslot, while the vCPU is stopped (a hypercall's exit). False when either refused.
    bool grow_memory(GuestMemory& mem, std::uint64_t new_size);
    // Long-mode boot registers with rip = entry (x86_boot.h). Call once, before run().
    std::optional<SandboxError> boot(std::uint64_t entry);
    ~Vm();
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;

    // Runs until the guest exits, fails or runs out of time. One switch on the exit reason;
    // anything not expected is an error.
    Outcome<std::int32_t> run(HypercallServer& server, const Watchdog& watchdog);
    // The vCPU descriptor: the one the seccomp filter lets KVM_RUN reach (seccomp_filter.h).
    int vcpu_fd() const { return vcpu_.get(); }

private:
    Vm() = default;
    UniqueFd vm_;
    UniqueFd vcpu_;
    std::uint32_t next_slot_ = 1; // slot 0 is the RAM create() registered
    kvm_run* run_ = nullptr;
    std::size_t run_size_ = 0;
};

} // namespace instar::vmm
