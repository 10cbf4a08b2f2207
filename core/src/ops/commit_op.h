// `commit` as an operation: open the top image's whole chain (through the path policy), find the base
// (-b or the immediate backing file), reopen the base for writing, copy everything allocated above it
// into it in one sandbox run (INSTAR_OP_COMMIT), make it durable, then empty the top in place
// (INSTAR_OP_EDIT, EditCommand::MakeEmpty) unless -d. docs/commit.md.
#pragma once

#include "ops/dirty_repair.h"

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

struct CommitSpec {
    std::string filename;              // the top image (a plain path)
    std::optional<std::string> format; // -f
    std::optional<std::string> base;   // -b: a name in the chain, matched as qemu's bdrv_find_backing_image
    // The top's name as the user gave it (json:, --image-opts), for "Did not find"; empty: filename.
    std::string given;
    // How many levels below the top were named with options (backing.…, e.g. their secrets): qemu
    // compares -b with those images' json: filenames, which no plain name matches.
    std::size_t overridden_levels = 0;
    // The json: filename qemu gives the image `depth` levels down, named with options; `below` holds
    // (format, file name) of that image and every one under it. Unset: none is named so.
    std::function<std::string(std::size_t depth, const std::vector<std::pair<std::string, std::string>>& below)>
        level_name;
    bool drop = false;                 // -d (and -b): leave the top as it is
    // -t: qemu's cache mode, already checked. Every mode but unsafe makes the base durable before the
    // top is emptied; none/off/directsync write the base with O_DIRECT.
    std::string cache = "writeback";
    std::uint64_t rate_limit = 0;      // -r bytes per second; 0 = none
    // -p: bytes done of bytes to walk; nullptr: none.
    std::function<void(std::uint64_t, std::uint64_t)> progress;
    // A dirty qcow2 top is repaired first, as qemu's read-write open does (dirty_repair.h): check's
    // stderr text goes here.
    DiagnosticsFn diagnostics;
    bool unsafe_quirks = false;
    std::vector<std::string> allow_paths;
    std::optional<std::string> secret; // the top image's (--object secret), never printed
    // The secret for the encrypted image `depth` levels below the top (the --object secret its
    // backing.[…]encrypt.key-secret / key-secret names, as `format` reads it), or qemu's lookup
    // error ("No secret with id 'ID'"). Empty: no secrets for the backing chain.
    BackingSecretFn backing_secret;
    std::vector<BackingKey> backing_keys; // what the levels name for keys (InfoOptions's)
};

// Errors are qemu-img's messages without the "prog: " prefix.
Expected<bool> commit_image(const CommitSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                            std::uint32_t qemu_version);

} // namespace instar
