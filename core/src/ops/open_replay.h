// qemu's read-write open of an existing image may change it before anything reads it (vhdx replays
// its log). For a format declaring CAP_OPEN_REPLAY the host runs the guest half's
// EditCommand::ReplayLog on the writable file before the open that inspects it (convert -n).
#pragma once

#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <optional>
#include <string>

namespace instar {

// `file` is open read-write; its size is updated when the replay changed the file's length. True
// when a replay changed the image (EDIT_DATA_REPLAYED; check -r counts it), false when there was
// nothing to replay. Errors are qemu's "Could not open 'NAME': ..." (NAME: the user's name for
// the image).
Expected<bool> replay_on_open(const LoadedPlugin& plugin, OpenedFile& file, const std::string& name,
                              const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version);

// check -r: qemu-img opens the named image read-write, and the format's open replays first. The
// format is `format` (-f) or the first host-probe candidate declaring CAP_OPEN_REPLAY; nothing
// happens (false) for any other format, or when the file cannot be opened read-write (the open
// that follows reports it). True when the image was changed.
Expected<bool> replay_named_image(const PluginRegistry& plugins, const std::string& name,
                                  const std::optional<std::string>& format, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version);

} // namespace instar
