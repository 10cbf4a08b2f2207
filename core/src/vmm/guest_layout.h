// Guest memory's contents before the first instruction, shared by both sandboxes: the runtime,
// the modules, the boot information and the stack-protector canary (guest_abi.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "vmm/guest_image.h"
#include "vmm/guest_memory.h"
#include "vmm/sandbox.h"

namespace instar::vmm {

// Where the pages that differ between the sandboxes are (the process sandbox cannot map the
// pages below 64 KiB: guest_abi.h, INSTAR_PROC_*).
struct GuestLayout {
    std::uint64_t boot_info;
    std::uint64_t tls;
};
inline constexpr GuestLayout KVM_LAYOUT{INSTAR_GPA_BOOT_INFO, INSTAR_GPA_TLS};
inline constexpr GuestLayout PROCESS_LAYOUT{INSTAR_PROC_BOOT_INFO, INSTAR_PROC_TLS};

// Places the runtime and modules, writes the boot info and a fresh canary.
std::optional<SandboxError> lay_out_guest(GuestMemory& m, const GuestImage& runtime,
                                          const std::vector<std::shared_ptr<const GuestImage>>& images,
                                          std::span<const Device> devices, std::uint32_t op,
                                          std::span<const std::uint8_t> arg, const GuestLayout& where);

} // namespace instar::vmm
