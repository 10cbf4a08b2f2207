// /dev/kvm: opening it (telling "missing" from "no access"), the required-capability table, and the
// host CPUID the guest is given.
#pragma once

#include <linux/kvm.h>

#include <vector>

#include "vmm/sandbox.h"
#include "vmm/unique_fd.h"

namespace instar::vmm {

// <linux/kvm.h> declares kvm_cpuid2's entries with __DECLARE_FLEX_ARRAY, whose empty struct
// member makes sizeof(kvm_cpuid2) 12 in C++ instead of 8, so the ioctl numbers derived from it
// are wrong (the kernel answers EINVAL). These use the C layout: the 8-byte header.
struct KvmCpuid2Header {
    __u32 nent;
    __u32 padding;
};
static_assert(sizeof(KvmCpuid2Header) == 8);
inline constexpr unsigned long KVM_GET_SUPPORTED_CPUID_C = _IOWR(KVMIO, 0x05, KvmCpuid2Header);
inline constexpr unsigned long KVM_SET_CPUID2_C = _IOW(KVMIO, 0x90, KvmCpuid2Header);
static_assert(KVM_GET_SUPPORTED_CPUID_C == 0xc008ae05ul);
static_assert(KVM_SET_CPUID2_C == 0x4008ae90ul);

struct KvmCapability {
    int cap;
    const char* name;
    const char* why; // why the sandbox needs it
};

// Checked once per open, in this order; the first missing one is named in the error.
extern const KvmCapability REQUIRED_KVM_CAPS[];
extern const std::size_t REQUIRED_KVM_CAP_COUNT;

class KvmSystem {
public:
    static Outcome<KvmSystem> open();

    int fd() const { return fd_.get(); }
    int vcpu_mmap_size() const { return vcpu_mmap_size_; }
    // The guest's CPUID table (guest_cpuid_entries()), built once per process.
    const void* supported_cpuid() const { return cpuid_; }
    // KVM_CAP_SPLIT_IRQCHIP: an in-kernel local APIC without the PIC and IOAPIC (see Vm::create).
    bool split_irqchip() const { return split_irqchip_; }

private:
    UniqueFd fd_;
    int vcpu_mmap_size_ = 0;
    bool split_irqchip_ = false;
    const void* cpuid_ = nullptr; // a kvm_cpuid2 in the C layout
};

// The CPUID the guest gets: vendor, family/model and a fixed set of baseline features (SSE..SSE4.2,
// long mode, NX; AES-NI, SHA-NI and BMI1/2, which nettle and zstd pick by CPUID), each only if the host's own
// CPUID has it, and the address sizes. Not
// KVM_GET_SUPPORTED_CPUID: that ioctl costs ~0.4 ms on kvm-pvm (about a tenth of an `info`), and
// the guest's code is built for baseline x86-64, so the host's other features would go unused.
std::vector<kvm_cpuid_entry2> guest_cpuid_entries();

SandboxError kvm_error(const char* what); // "<what> failed: <strerror(errno)>" as KvmUnusable

} // namespace instar::vmm
