// The process sandbox (docs/sandbox.md): the guest runtime and modules in a confined child process
// instead of a KVM VM, for hosts without /dev/kvm. Same hypercall ABI, same HypercallServer, same
// records: the operations cannot tell the two apart.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "vmm/guest_image.h"
#include "vmm/sandbox.h"

namespace instar::vmm {

// Runs `op` with `runtime` (the INSTAR_GUEST_PROCESS build) and `images` (loaded already); the
// request was checked by run().
Outcome<RunResult> run_in_process(const SandboxConfig& config, std::uint64_t ram, std::span<const Device> devices,
                                  const GuestImage& runtime,
                                  const std::vector<std::shared_ptr<const GuestImage>>& images, std::uint32_t op,
                                  std::span<const std::uint8_t> arg);

} // namespace instar::vmm
