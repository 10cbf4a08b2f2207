// /dev/kvm: open, API version, capability table, cached CPUID.
#include "vmm/kvm_system.h"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace instar::vmm {

namespace {
constexpr const char* KVM_PATH = "/dev/kvm";
constexpr int KVM_EXPECTED_API_VERSION = 12; // stable since Linux 2.6.22
} // namespace

namespace {
const void* guest_cpuid_table();
} // namespace

const KvmCapability REQUIRED_KVM_CAPS[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM is one mapping of ours"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "Intel hosts need the TSS pages placed"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "the guest gets the host CPUID (SSE for zlib)"},
};
const std::size_t REQUIRED_KVM_CAP_COUNT = std::size(REQUIRED_KVM_CAPS);

SandboxError kvm_error(const char* what) {
    return {ErrorKind::KvmUnusable, std::string(what) + " failed: " + std::strerror(errno), {}};
}

Outcome<KvmSystem> KvmSystem::open() {
    // The first successful open is checked fully and kept; later opens (check_kvm, then each VM)
    // duplicate it: /dev/kvm and its capabilities do not change while we run.
    static std::mutex mu;
    static int checked_fd = -1;
    static int checked_mmap_size = 0;
    static bool checked_split_irqchip = false;
    {
        std::lock_guard lock(mu);
        if (checked_fd >= 0) {
            KvmSystem k;
            k.fd_ = UniqueFd(::fcntl(checked_fd, F_DUPFD_CLOEXEC, 0));
            if (!k.fd_.valid()) return kvm_error("dup of the /dev/kvm descriptor");
            k.vcpu_mmap_size_ = checked_mmap_size;
            k.split_irqchip_ = checked_split_irqchip;
            k.cpuid_ = guest_cpuid_table();
            return k;
        }
    }
    KvmSystem k;
    k.fd_ = UniqueFd(::open(KVM_PATH, O_RDWR | O_CLOEXEC));
    if (!k.fd_.valid()) {
        int e = errno;
        if (e == ENOENT || e == ENODEV || e == ENXIO) {
            return SandboxError{ErrorKind::KvmMissing,
                                "/dev/kvm does not exist: instar parses images inside a KVM virtual "
                                "machine. Enable virtualization (VT-x/AMD-V) in the firmware and load "
                                "the kvm_intel or kvm_amd module (or give this VM nested virtualization).",
                                {}};
        }
        if (e == EACCES || e == EPERM) {
            return SandboxError{ErrorKind::KvmNoAccess,
                                std::string("/dev/kvm is not accessible (") + std::strerror(e) +
                                    "): add your user to the kvm group (sudo usermod -aG kvm $USER) "
                                    "and log in again.",
                                {}};
        }
        return SandboxError{ErrorKind::KvmUnusable,
                            std::string("cannot open /dev/kvm: ") + std::strerror(e), {}};
    }
    // SAFETY: KVM_GET_API_VERSION and KVM_CHECK_EXTENSION take no pointer arguments.
    int version = ::ioctl(k.fd_.get(), KVM_GET_API_VERSION, 0);
    if (version != KVM_EXPECTED_API_VERSION) {
        return SandboxError{ErrorKind::KvmUnusable,
                            "/dev/kvm has API version " + std::to_string(version) + ", instar needs " +
                                std::to_string(KVM_EXPECTED_API_VERSION),
                            {}};
    }
    for (const KvmCapability& c : REQUIRED_KVM_CAPS) {
        if (::ioctl(k.fd_.get(), KVM_CHECK_EXTENSION, c.cap) <= 0) {
            return SandboxError{ErrorKind::KvmUnusable,
                                std::string("KVM lacks ") + c.name + " (needed because " + c.why + ")", {}};
        }
    }
    // SAFETY: no pointer argument.
    k.vcpu_mmap_size_ = ::ioctl(k.fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (k.vcpu_mmap_size_ < static_cast<int>(sizeof(kvm_run))) return kvm_error("KVM_GET_VCPU_MMAP_SIZE");
    // SAFETY: no pointer argument. Optional (Linux 4.5+): without it vCPUs have no in-kernel APIC.
    k.split_irqchip_ = ::ioctl(k.fd_.get(), KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_IRQCHIP) > 0;

    k.cpuid_ = guest_cpuid_table();
    std::lock_guard lock(mu);
    if (checked_fd < 0) {
        checked_fd = ::fcntl(k.fd_.get(), F_DUPFD_CLOEXEC, 0); // kept for the process; -1: check again next time
        checked_mmap_size = k.vcpu_mmap_size_;
        checked_split_irqchip = k.split_irqchip_;
    }
    return k;
}

namespace {
// The kvm_cpuid2 (C layout) for KVM_SET_CPUID2, built once per process.
const void* guest_cpuid_table() {
    static const std::vector<unsigned char> table = [] {
        const auto entries = guest_cpuid_entries();
        std::vector<unsigned char> t(sizeof(KvmCpuid2Header) + entries.size() * sizeof(kvm_cpuid_entry2), 0);
        const KvmCpuid2Header header{static_cast<__u32>(entries.size()), 0};
        std::memcpy(t.data(), &header, sizeof header);
        std::memcpy(t.data() + sizeof header, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
        return t;
    }();
    return table.data();
}
} // namespace

std::vector<kvm_cpuid_entry2> guest_cpuid_entries() {
    // Feature bits the guest may see, each also required to be in the host's own CPUID: what code
    // built for baseline x86-64 (the runtime, zlib, the modules) and KVM's checks of our boot state
    // (long mode, PAE, FXSR for CR4.OSFXSR) need, and nothing that needs more state (no XSAVE/AVX).
    // Also the instructions that need no state beyond SSE's and that the guest's libraries choose
    // at run time by CPUID: AES-NI and SHA-NI (nettle's "fat" dispatch: the LUKS ciphers, PBKDF2,
    // LUKS2's digests), BMI1/BMI2 (zstd's and libdeflate's decoders). Without AES-NI and SHA-NI the
    // luks module ran ~3x slower under KVM than in the process sandbox (the host's own CPUID).
    constexpr std::uint32_t LEAF1_EDX = 1u << 0 /* FPU */ | 1u << 3 /* PSE */ | 1u << 4 /* TSC */ |
                                        1u << 5 /* MSR */ | 1u << 6 /* PAE */ | 1u << 8 /* CX8 */ |
                                        1u << 13 /* PGE */ | 1u << 15 /* CMOV */ | 1u << 16 /* PAT */ |
                                        1u << 19 /* CLFSH */ | 1u << 23 /* MMX */ | 1u << 24 /* FXSR */ |
                                        1u << 25 /* SSE */ | 1u << 26 /* SSE2 */;
    constexpr std::uint32_t LEAF1_ECX = 1u << 0 /* SSE3 */ | 1u << 1 /* PCLMULQDQ */ | 1u << 9 /* SSSE3 */ |
                                        1u << 13 /* CX16 */ | 1u << 19 /* SSE4.1 */ | 1u << 20 /* SSE4.2 */ |
                                        1u << 23 /* POPCNT */ | 1u << 25 /* AES */;
    constexpr std::uint32_t LEAF7_EBX = 1u << 3 /* BMI1 */ | 1u << 8 /* BMI2 */ | 1u << 29 /* SHA */;
    constexpr std::uint32_t EXT1_EDX = 1u << 11 /* SYSCALL */ | 1u << 20 /* NX */ | 1u << 29 /* LM */;
    constexpr std::uint32_t EXT1_ECX = 1u << 0 /* LAHF/SAHF in long mode */ | 1u << 5 /* LZCNT */;
    auto leaf = [](std::uint32_t fn) {
        kvm_cpuid_entry2 e{};
        e.function = fn;
        __cpuid_count(fn, 0, e.eax, e.ebx, e.ecx, e.edx);
        return e;
    };
    std::vector<kvm_cpuid_entry2> v;
    kvm_cpuid_entry2 l0 = leaf(0); // vendor: KVM emulates some instructions the vendor's way
    const bool has_leaf7 = l0.eax >= 7;
    l0.eax = has_leaf7 ? 7 : 1; // leaves 2-6 read as zeros (none in the table)
    v.push_back(l0);
    kvm_cpuid_entry2 l1 = leaf(1);
    l1.ebx &= 0xffff; // brand index and CLFLUSH size; no APIC ID or logical-processor count
    l1.ecx &= LEAF1_ECX;
    l1.edx &= LEAF1_EDX;
    v.push_back(l1);
    if (has_leaf7) { // structured extended features, subleaf 0 only
        kvm_cpuid_entry2 l7 = leaf(7);
        l7.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        l7.index = 0;
        l7.eax = 0; // no further subleaves
        l7.ebx &= LEAF7_EBX;
        l7.ecx = l7.edx = 0;
        v.push_back(l7);
    }
    kvm_cpuid_entry2 e0 = leaf(0x80000000);
    const std::uint32_t ext_max = e0.eax;
    e0.eax = ext_max >= 0x80000008 ? 0x80000008 : 0x80000001;
    v.push_back(e0);
    kvm_cpuid_entry2 e1 = leaf(0x80000001);
    e1.eax = e1.ebx = 0;
    e1.ecx &= EXT1_ECX;
    e1.edx &= EXT1_EDX;
    v.push_back(e1);
    if (ext_max >= 0x80000008) { // address sizes: guest page-table checks use MAXPHYADDR
        kvm_cpuid_entry2 e8 = leaf(0x80000008);
        e8.eax &= 0xffff;
        e8.ebx = e8.ecx = e8.edx = 0;
        v.push_back(e8);
    }
    return v;
}

std::optional<SandboxError> check_kvm() {
    auto k = KvmSystem::open();
    if (!k) return k.error();
    return std::nullopt;
}

} // namespace instar::vmm
