// rebase's safe mode on the host (docs/rebase.md): opens the new backing file (resolved against the
// image's directory, as qemu does) with its chain, and runs INSTAR_OP_REBASE: the guest walks the
// image, and wherever the image does not allocate and its old and new backing chains read
// differently, writes the old chain's data into the image. The backing-file switch itself is the
// caller's next step (EditCommand::SetBacking), after this returned Ok: the data first, the header last.
#pragma once

#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct RebaseSpec {
    OpenedChain* chain = nullptr;                 // the image with its current backing chain (top first)
    std::string filename;                         // the image as the user named it, for messages
    std::string path;                             // its file's name as given (new names resolve against it)
    std::string display;                          // qemu's name for it: json:{...} with strong options
    std::string new_backing;                      // -b: "" detaches (the new backing reads as zeros)
    std::optional<std::string> new_backing_format; // -F
    // -b json:{...}: the file it names (opened as qemu opens it, from the working directory), and
    // the secret its key-secret option names, or why that lookup failed (reported only when the new
    // backing file is encrypted, as qemu looks the secret up only then).
    std::string new_backing_file;
    std::optional<std::string> new_backing_secret;
    std::string new_backing_secret_error;
    bool force_share = false;                     // -U
    bool compress = false;                        // -c (10.0)
    std::string cache = "writeback";              // -t, already checked: unsafe makes no flush
    bool unsafe_quirks = false;
    std::vector<std::string> allow_paths;
    std::function<void(std::uint64_t, std::uint64_t)> progress; // bytes walked of the image's size
};

// Ok when every differing range was copied (or there was none). Errors are the full message qemu-img
// prints after "qemu-img: ".
Expected<bool> rebase_copy(const RebaseSpec& spec, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                           std::uint32_t qemu_version);

} // namespace instar
