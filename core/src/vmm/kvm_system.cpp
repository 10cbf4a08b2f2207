// /dev/kvm: open, API version, capability table, cached CPUID.
#include "vmm/kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace instar::vmm {

namespace {
constexpr const char* KVM_PATH = "/dev/kvm";
constexpr int KVM_EXPECTED_API_VERSION = 12; // stable since Linux 2.6.22
constexpr int MAX_CPUID_ENTRIES = 256;       // hosts report ~60; KVM returns E2BIG past this
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

    // The supported CPUID is a property of the host: fetch it once, keep it for the process.
    static std::once_flag once;
    static std::vector<unsigned char> cpuid_storage;
    static int cpuid_errno = 0;
    std::call_once(once, [&] {
        cpuid_storage.assign(sizeof(KvmCpuid2Header) + MAX_CPUID_ENTRIES * sizeof(kvm_cpuid_entry2), 0);
        const KvmCpuid2Header header{MAX_CPUID_ENTRIES, 0};
        std::memcpy(cpuid_storage.data(), &header, sizeof header);
        // SAFETY: the buffer is the 8-byte header followed by room for MAX_CPUID_ENTRIES entries,
        // zeroed (KVM rejects entries with non-zero padding).
        if (::ioctl(k.fd_.get(), KVM_GET_SUPPORTED_CPUID_C, cpuid_storage.data()) < 0) cpuid_errno = errno;
    });
    if (cpuid_errno != 0) {
        errno = cpuid_errno;
        return kvm_error("KVM_GET_SUPPORTED_CPUID");
    }
    k.cpuid_ = cpuid_storage.data(); // filled by the successful ioctl above, never modified after
    return k;
}

std::optional<SandboxError> check_kvm() {
    auto k = KvmSystem::open();
    if (!k) return k.error();
    return std::nullopt;
}

} // namespace instar::vmm
