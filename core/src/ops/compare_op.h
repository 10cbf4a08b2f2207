// `compare` as an operation: open both images with their backing chains (through the path policy),
// write one plan holding both chains, and run one sandbox in which the formats' readers answer
// block status and data while the guest walks both disks as qemu-img compare does.
#pragma once

#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct CompareSpec {
    std::string file1, file2;
    std::optional<std::string> format1, format2; // -f, -F
    std::vector<std::optional<std::string>> secrets; // FILE1's and FILE2's secrets (--object secret), if any
    std::optional<std::string> headers[2];       // luks's header= of FILE1 and FILE2 (InfoOptions::header)
    bool no_backing[2] = {false, false};          // "backing": null: that image alone (unallocated reads zeros)
    bool strict = false;                          // -s
    bool unsafe_quirks = false;
    std::vector<std::string> allow_paths;
    // Bytes of the larger image walked so far, of that image's length (qemu's chunks); empty: none.
    std::function<void(std::uint64_t done, std::uint64_t total)> progress;
    // Called once both images are open, with the lengths qemu-img compares (whole sectors).
    std::function<void(std::uint64_t size1, std::uint64_t size2)> opened;
};

// How the walk ended; `size1`/`size2` are the lengths qemu-img compares (whole sectors).
struct CompareReport {
    std::uint32_t outcome = INSTAR_COMPARE_IDENTICAL; // enum instar_compare_outcome
    std::uint32_t side = 0;                           // STATUS/READ_FAILED: 0 FILE1, 1 FILE2
    std::uint64_t offset = 0;
    bool size_mismatch = false;
    std::uint32_t read_status = 0; // READ_FAILED: the guest Status (status_errno_text)
    std::uint64_t size1 = 0, size2 = 0;
};

// Errors are qemu-img's messages without the "prog: " prefix (opening failures: exit status 2).
Expected<CompareReport> compare_images(const CompareSpec& spec, const PluginRegistry& plugins,
                                       vmm::SandboxConfig sandbox, std::uint32_t qemu_version);

} // namespace instar
