// The sandbox self-test: boot a guest with the raw module on a file, read its first sectors through
// device 0, crc32 them with zlib inside the guest, run the raw probe, return one validated record.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "vmm/sandbox.h"

namespace instar::ops {

// The guest checksums at most this much: enough to cover every partition-table and format header.
inline constexpr std::uint64_t SELFTEST_CRC_LIMIT = 64 * 1024;

struct SelftestReport {
    std::uint64_t device_size = 0;
    std::uint64_t bytes_read = 0;
    std::uint32_t crc32 = 0;
    bool raw_partition_table = false; // the raw module's probe found an MBR or GPT
    std::string sandbox;     // which sandbox ran it: "kvm" or "process"
    std::string confinement; // the process sandbox's: what its guest process applied
};

// raw_module: path of raw.gmod; empty means vmm::find_guest_module("raw.gmod").
vmm::Outcome<SelftestReport> run_sandbox_selftest(const std::string& file, const vmm::SandboxConfig& config,
                                                  const std::string& raw_module = {});

// For `instar formats --probe FILE`: prints one JSON line
//   {"device-size": N, "bytes-read": N, "crc32": N, "raw-partition-table": true|false}
// on `out` and returns 0, or prints "instar: <reason>" on `err` and returns 1.
int sandbox_selftest(const std::string& file, const vmm::SandboxConfig& config, std::ostream& out,
                     std::ostream& err);

} // namespace instar::ops
