// Guest memory layout shared by the KVM and process sandboxes.
#include "vmm/guest_layout.h"

#include <sys/random.h>

#include <chrono>
#include <cstring>

namespace instar::vmm {

namespace {
std::uint64_t random_canary() {
    std::uint64_t v = 0;
    if (::getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
        v = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ull;
    }
    return v & ~0xffull; // a zero low byte stops string overruns from copying past it
}
} // namespace

std::optional<SandboxError> lay_out_guest(GuestMemory& m, const GuestImage& rt,
                                          const std::vector<std::shared_ptr<const GuestImage>>& images,
                                          std::span<const Device> devices, std::uint32_t op,
                                          std::span<const std::uint8_t> arg, const GuestLayout& where) {
    if (!place_guest_image(rt, m, INSTAR_GPA_RUNTIME)) {
        return SandboxError{ErrorKind::GuestImage, "the guest runtime does not fit in guest memory", {}};
    }
    instar_boot_info boot{};
    boot.magic = INSTAR_BOOT_MAGIC;
    boot.abi_version = INSTAR_GUEST_ABI_VERSION;
    boot.ram_size = m.size();
    std::uint64_t next = INSTAR_GPA_MODULES;
    for (std::size_t i = 0; i < images.size(); ++i) {
        const GuestImage& img = *images[i];
        if (!place_guest_image(img, m, next)) {
            return SandboxError{ErrorKind::Config, "guest memory is too small for the guest modules", {}};
        }
        boot.modules[i] = instar_module_slot{next, img.size, next + img.entry};
        next += img.size; // page-rounded by the loader
    }
    boot.module_count = static_cast<std::uint32_t>(images.size());
    boot.device_count = static_cast<std::uint32_t>(devices.size());
    for (std::size_t i = 0; i < devices.size() && i < INSTAR_BOOT_DEVICES; ++i)
        boot.devices[i] = instar_boot_info::instar_boot_device{devices[i].size, device_flags(devices[i])};
    boot.arena_base = next;
    boot.arena_size = m.size() - next;
    boot.op = op;
    boot.arg_len = static_cast<std::uint32_t>(arg.size());
    if (!arg.empty()) std::memcpy(boot.arg, arg.data(), arg.size());
    std::memcpy(m.range(where.boot_info, sizeof boot), &boot, sizeof boot);
    const std::uint64_t canary = random_canary();
    std::memcpy(m.range(where.tls + INSTAR_TLS_CANARY_OFFSET, sizeof canary), &canary, sizeof canary);
    return std::nullopt;
}

} // namespace instar::vmm
