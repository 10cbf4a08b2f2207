// qemu's read-write open of a qcow2 image with the dirty bit (lazy refcounts not yet written back):
// qcow2_do_open runs qcow2_co_check_locked(BDRV_FIX_ERRORS | BDRV_FIX_LEAKS) before anything else,
// printing check's lines on stderr, and fails the open with "Could not repair dirty image: EIO"
// when the repair leaves check errors. Commands that open an image read-write call this first
// (commit's top); the repair is `check -r all`'s (docs/check.md), in a start of its own.
#pragma once

#include "ops/check_op.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instar {

// check's stderr text, in order (the guest's program-name markers 0x01 kept: the command prints
// its prefix there, as cmd_check does).
using DiagnosticsFn = std::function<void(const std::string&)>;

// Whether qemu's read-write open refuses the image outright: a qcow2 image with the corrupt bit
// ("qcow2: Image is corrupt; cannot be opened read/write"), as info's format-specific data says.
inline bool refuses_read_write(const NodeInfo& node) {
    const auto* corrupt = node.specific.if_contains("corrupt");
    return node.format == "qcow2" && corrupt != nullptr && corrupt->is_bool() && corrupt->get_bool();
}

// qemu's words for that refusal, for the image qemu names `name`.
inline std::string read_write_refusal(const std::string& name) {
    return "Could not open '" + name + "': qcow2: Image is corrupt; cannot be opened read/write";
}

// Whether qemu's read-write open repairs the image first: a qcow2 image with the dirty bit (and
// not the corrupt bit: qcow2_do_open refuses that before it would repair anything).
inline bool needs_dirty_repair(const NodeInfo& node) {
    return node.format == "qcow2" && node.dirty_flag && !refuses_read_write(node);
}

// The image to repair, as the command opened it.
struct DirtyRepair {
    std::string filename;                 // its file
    std::string name;                     // as qemu names it ("Could not open 'NAME': ...")
    std::vector<std::string> allow_paths; // the command's path policy (--allow-path)
    bool unsafe_quirks = false;
    std::optional<std::string> secret;    // its key, for an encrypted image
    DiagnosticsFn diagnostics;            // gets check's stderr text as soon as the repair ends;
                                          // unset: not printed (commit's base)
};

// Repairs the image with check -r all's repair. An error is the open's, in qemu's words.
Expected<bool> repair_dirty_image(const DirtyRepair& image, const PluginRegistry& plugins,
                                  const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version);

} // namespace instar
