// qemu's read-write open of a qcow2 image with the dirty bit (lazy refcounts not yet written back):
// qcow2_do_open runs qcow2_co_check_locked(BDRV_FIX_ERRORS | BDRV_FIX_LEAKS) before anything else,
// printing check's lines on stderr, and fails the open with "Could not repair dirty image: EIO"
// when the repair leaves check errors. Commands that open an image read-write call this first
// (commit's top); the repair is `check -r all`'s (docs/check.md), in a start of its own.
#pragma once

#include "ops/check_op.h"

#include <functional>
#include <string>

namespace instar {

// check's stderr text, in order (the guest's program-name markers 0x01 kept: the command prints
// its prefix there, as cmd_check does).
using DiagnosticsFn = std::function<void(const std::string&)>;

// Repairs `opts.filename` (opts.fix is set to all here), handing check's stderr text to
// `diagnostics` as soon as the repair ends. An error is the open's, in qemu's words.
Expected<bool> repair_dirty_image(CheckOptions opts, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version, const DiagnosticsFn& diagnostics);

} // namespace instar
