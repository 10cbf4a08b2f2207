// qemu's read-write open of an existing image may change it before anything reads it (vhdx replays
// its log). For a format declaring CAP_OPEN_REPLAY the host runs the guest half's
// EditCommand::ReplayLog on the writable file before the open that inspects it (convert -n).
#pragma once

#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <string>

namespace instar {

// `file` is open read-write; its size is updated when the replay changed the file's length. Errors
// are qemu's "Could not open 'NAME': ..." (NAME: the user's name for the image).
Expected<bool> replay_on_open(const LoadedPlugin& plugin, OpenedFile& file, const std::string& name,
                              const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version);

} // namespace instar
