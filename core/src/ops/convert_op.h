// `convert` as an operation: open every source and its backing chain (through the path policy),
// write the plan, and run one sandbox in which the sources' formats read and the target's format
// creates and writes the new image. The target appears atomically (ops/atomic_output.h).
#pragma once

#include "ops/create_op.h"
#include "output/progress.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct ConvertSpec {
    std::vector<std::string> sources;          // SRC arguments, concatenated in order
    std::optional<std::string> source_format;  // -f
    std::optional<std::string> snapshot;       // -l (id or name)
    // The target as create would make it: filename, plugin, options, backing file/format (-B/-F or
    // -o backing_file/backing_fmt); size is filled in from the sources.
    CreateSpec target;
    std::uint64_t min_sparse = 4096;           // -S bytes; 0 writes everything
    bool compressed = false;                   // -c
    bool out_of_order = false;                 // -W
    // -t / -T: qemu's cache modes (none/off, writeback, writethrough, directsync, unsafe), already
    // checked; what each means for instar's files is in docs/convert.md ("Cache modes").
    std::string target_cache = "unsafe";
    std::string source_cache = "writeback";
    bool unsafe_quirks = false;
    std::vector<std::string> allow_paths;
    Progress* progress = nullptr;              // -p / --progress=json; nullptr: none
};

// Errors are qemu-img's messages without the "prog: " prefix.
Expected<bool> convert_image(const ConvertSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                             std::uint32_t qemu_version);

} // namespace instar
