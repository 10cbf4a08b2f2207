// `check` as an operation: detect the format as info does (same open errors), then have the
// format's guest half check the image in the sandbox and decode what it reports (docs/check.md).
#pragma once

#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <instar/guest_abi.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace instar {

struct CheckOptions {
    std::string filename;
    std::optional<std::string> format; // -f
    std::uint32_t fix = 0;             // INSTAR_CHECK_FIX_*
    bool flush = true;                 // false: -T unsafe, the repair's flushes are not made
    std::vector<std::string> allow_paths;
    bool unsafe_quirks = false; // qemu's raw fallback for unrecognised files (as info's)
    std::optional<std::string> secret; // the image's (--object secret): qemu unlocks its key first
    // The secret of the encrypted backing image `depth` levels down (format: its driver), named by
    // backing.[…]encrypt.key-secret / key-secret: qemu opens the chain with every key. Unset: none.
    BackingSecretFn backing_secret;
    std::vector<BackingKey> backing_keys; // what the levels name for keys (InfoOptions's)
};

struct CheckReport {
    std::string format;     // the driver name qemu prints ("qcow2")
    std::string diagnostics; // stderr lines, in order, each ending in '\n' (control bytes replaced)
    bool truncated = false; // the guest dropped lines past its text bound
    instar_check_result result{};
    // Set when the guest could not finish (a named limit, memory, a repair instar does not
    // implement): print `diagnostics`, then this error. `result` is then meaningless.
    std::optional<std::string> failure;
};

// Decodes INSTAR_REC_CHECK records: text chunks then exactly one result, nothing after it.
// host_errno: the run's first failed device operation (vmm::RunResult::host_errno, 0: none), whose
// text ends each line the guest marked with 0x02 (append_check_text).
Expected<CheckReport> decode_check_records(std::span<const vmm::Record> records, int host_errno = 0);

// Appends a check text chunk to `out`: a line that starts with 0x02 (after the program-name marker
// 0x01, if any) ends with strerror(host_errno) ("Input/output error" when the host saw no failure):
// the guest only learns that a device operation failed, qemu prints why. The rest as
// append_guest_text (control bytes replaced, 0x01 kept at a line start).
void append_check_text(std::string& out, const std::uint8_t* data, std::size_t len, int host_errno);

Expected<CheckReport> run_check(const CheckOptions& opts, const PluginRegistry& plugins,
                                const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version);

} // namespace instar
