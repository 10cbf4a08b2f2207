// VM and vCPU creation, and the run loop.
#include "vmm/vm.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "vmm/x86_boot.h"

namespace instar::vmm {

namespace {
// Where KVM (Intel) keeps its three TSS pages: just below 4 GiB, above any RAM we allow.
constexpr std::uint64_t KVM_TSS_ADDRESS = 0xfffbd000;
static_assert(INSTAR_MAX_GUEST_MEMORY <= KVM_TSS_ADDRESS, "RAM must not overlap KVM's TSS pages");

SandboxError exit_error(ErrorKind kind, const std::string& msg) { return {kind, msg, {}}; }
// Memslots a run may add by growing (INSTAR_HC_GROW_MEMORY): KVM guarantees at least 32; the
// sandbox grows once, to the limit, so a handful is plenty.
constexpr std::uint32_t MAX_MEMORY_SLOTS = 8;
} // namespace

bool Vm::grow_memory(GuestMemory& mem, std::uint64_t new_size) {
    const std::uint64_t old_size = mem.size();
    if (next_slot_ >= MAX_MEMORY_SLOTS || !mem.grow(new_size)) return false;
    kvm_userspace_memory_region region{};
    region.slot = next_slot_;
    region.guest_phys_addr = old_size;
    region.memory_size = new_size - old_size;
    // SAFETY: the range was just opened inside `mem`, which outlives the VM (as slot 0's).
    region.userspace_addr = reinterpret_cast<std::uintptr_t>(mem.host_base() + old_size);
    if (::ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        mem.ungrow(old_size);
        return false;
    }
    ++next_slot_;
    return true;
}

Outcome<std::unique_ptr<Vm>> Vm::create(const KvmSystem& kvm, GuestMemory& mem) {
    std::unique_ptr<Vm> vm(new Vm());
    // SAFETY: each ioctl below gets either no pointer or a pointer to a fully initialised struct of
    // the type the request code names; return values are checked.
    vm->vm_ = UniqueFd(::ioctl(kvm.fd(), KVM_CREATE_VM, 0));
    if (!vm->vm_.valid()) return kvm_error("KVM_CREATE_VM");
    if (::ioctl(vm->vm_.get(), KVM_SET_TSS_ADDR, KVM_TSS_ADDRESS) < 0) return kvm_error("KVM_SET_TSS_ADDR");
    kvm_userspace_memory_region region{};
    region.slot = 0;
    region.guest_phys_addr = 0;
    region.memory_size = mem.size();
    // SAFETY: `mem` outlives the VM (PreparedVm destroys the VM first), so KVM never sees a
    // stale mapping.
    region.userspace_addr = reinterpret_cast<std::uintptr_t>(mem.host_base());
    if (::ioctl(vm->vm_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) return kvm_error("KVM_SET_USER_MEMORY_REGION");
    if (kvm.split_irqchip()) {
        // An in-kernel local APIC, which the guest never uses (no interrupts; its only HLT follows
        // the fault hypercall, which ends the run): a vCPU created without one increments KVM's
        // kvm_has_noapic_vcpu static key and its destruction decrements it, and each 0 <-> 1 flip
        // patches kernel text on every CPU (IPIs; ~0.4 ms per one-shot run on kvm-pvm, two thirds
        // of the start-up gap to qemu-img). The APIC's own keys are rate-limited (flipped back at
        // most once a second), so back-to-back runs pay none. The split form adds no PIC or IOAPIC
        // devices. Must precede KVM_CREATE_VCPU; if KVM refuses, the vCPU simply has no APIC.
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_SPLIT_IRQCHIP;
        cap.args[0] = 0; // IOAPIC routes reserved for userspace: none
        // SAFETY: KVM_ENABLE_CAP reads one initialised kvm_enable_cap.
        (void)::ioctl(vm->vm_.get(), KVM_ENABLE_CAP, &cap);
    }
    vm->vcpu_ = UniqueFd(::ioctl(vm->vm_.get(), KVM_CREATE_VCPU, 0));
    if (!vm->vcpu_.valid()) return kvm_error("KVM_CREATE_VCPU");
    vm->run_size_ = static_cast<std::size_t>(kvm.vcpu_mmap_size());
    void* p = ::mmap(nullptr, vm->run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_.get(), 0);
    if (p == MAP_FAILED) return kvm_error("mmap of kvm_run");
    // SAFETY: KVM maps a struct kvm_run at offset 0 of the vCPU fd; size checked >= sizeof(kvm_run).
    vm->run_ = static_cast<kvm_run*>(p);

    if (::ioctl(vm->vcpu_.get(), KVM_SET_CPUID2_C, kvm.supported_cpuid()) < 0) return kvm_error("KVM_SET_CPUID2");
    return Outcome<std::unique_ptr<Vm>>(std::move(vm));
}

std::optional<SandboxError> Vm::boot(std::uint64_t entry) {
    // SAFETY: as above: each ioctl gets a pointer to an initialised struct of the named type.
    kvm_sregs sregs{};
    if (::ioctl(vcpu_.get(), KVM_GET_SREGS, &sregs) < 0) return kvm_error("KVM_GET_SREGS");
    x86::set_boot_sregs(sregs);
    if (::ioctl(vcpu_.get(), KVM_SET_SREGS, &sregs) < 0) return kvm_error("KVM_SET_SREGS");
    kvm_regs regs = x86::boot_regs(entry);
    if (::ioctl(vcpu_.get(), KVM_SET_REGS, &regs) < 0) return kvm_error("KVM_SET_REGS");
    kvm_fpu fpu = x86::boot_fpu();
    if (::ioctl(vcpu_.get(), KVM_SET_FPU, &fpu) < 0) return kvm_error("KVM_SET_FPU");
    return std::nullopt;
}

Vm::~Vm() {
    if (run_ != nullptr) ::munmap(run_, run_size_);
}

Outcome<std::int32_t> Vm::run(HypercallServer& server, const Watchdog& watchdog) {
    for (;;) {
        if (watchdog.expired()) return exit_error(ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped");
        // SAFETY: KVM_RUN takes no argument; the vCPU fd is ours and run_ is its shared kvm_run.
        if (::ioctl(vcpu_.get(), KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue; // the watchdog's signal; checked above
            return kvm_error("KVM_RUN");
        }
        // SAFETY: run_ is KVM's kvm_run for this vCPU; KVM filled the union member that
        // exit_reason names. Its contents (addresses, data) come from the guest: checked below.
        switch (run_->exit_reason) {
        case KVM_EXIT_MMIO: {
            const auto& mmio = run_->mmio;
            if (mmio.phys_addr != INSTAR_GPA_DOORBELL || !mmio.is_write || mmio.len != 4) {
                return exit_error(ErrorKind::GuestBadRequest,
                                  "guest accessed physical address " + std::to_string(mmio.phys_addr) +
                                      ", which is neither RAM nor the doorbell");
            }
            auto next = server.serve();
            if (!next) return next.error();
            if (next.value() == HypercallServer::Next::Exit) return std::int32_t{0};
            break;
        }
        case KVM_EXIT_IO:
            return exit_error(ErrorKind::UnexpectedExit,
                              "guest accessed I/O port " + std::to_string(run_->io.port) + " (there are none)");
        case KVM_EXIT_HLT:
            return exit_error(ErrorKind::GuestShutdown, "guest halted without the exit hypercall");
        case KVM_EXIT_SHUTDOWN:
            return exit_error(ErrorKind::GuestShutdown, "guest shut down (triple fault: a fault while handling a fault)");
        case KVM_EXIT_FAIL_ENTRY:
            return exit_error(ErrorKind::KvmUnusable,
                              "KVM could not enter the guest (hardware reason " +
                                  std::to_string(run_->fail_entry.hardware_entry_failure_reason) + ")");
        case KVM_EXIT_INTERNAL_ERROR: {
            kvm_regs regs{};
            // SAFETY: KVM_GET_REGS fills a kvm_regs; used only to name the failing address.
            ::ioctl(vcpu_.get(), KVM_GET_REGS, &regs);
            return exit_error(ErrorKind::UnexpectedExit,
                              "KVM internal error " + std::to_string(run_->internal.suberror) +
                                  " while running the guest at rip " + std::to_string(regs.rip));
        }
        case KVM_EXIT_INTR:
            break; // a signal; the deadline is checked at the top of the loop
        default:
            return exit_error(ErrorKind::UnexpectedExit, "unexpected VM exit " + std::to_string(run_->exit_reason));
        }
    }
}

} // namespace instar::vmm
