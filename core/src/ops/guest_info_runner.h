// The real GuestInfoRunner: boots the sandbox with the candidates' guest modules and the image (plus
// any referenced files) as devices, and decodes what the guest reports.
#pragma once

#include "ops/info_op.h"
#include "vmm/sandbox.h"

namespace instar {

// Checks /dev/kvm first, so a missing or inaccessible KVM is reported once, with how to fix it.
// `qemu_version` is the profile's version, passed on to the format modules.
Expected<GuestInfoRunner> make_sandbox_info_runner(const vmm::SandboxConfig& config, std::uint32_t qemu_version);

} // namespace instar
