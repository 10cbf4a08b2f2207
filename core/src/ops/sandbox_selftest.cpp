// The sandbox self-test operation (the first end-to-end use of the VMM).
#include "ops/sandbox_selftest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ostream>

#include "vmm/unique_fd.h"

namespace instar::ops {

namespace {
vmm::SandboxError op_error(const std::string& msg) { return {vmm::ErrorKind::Config, msg, {}}; }
} // namespace

vmm::Outcome<SelftestReport> run_sandbox_selftest(const std::string& file, const vmm::SandboxConfig& config,
                                                  const std::string& raw_module) {
    const std::string module = raw_module.empty() ? vmm::find_guest_module("raw.gmod") : raw_module;
    if (module.empty()) {
        return op_error("cannot find the raw plugin's guest module raw.gmod (is instar-plugin-raw installed?)");
    }
    vmm::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return op_error("cannot open " + file + ": " + std::strerror(errno));
    const off_t end = ::lseek(fd.get(), 0, SEEK_END); // works for regular files and block devices
    if (end < 0) return op_error("cannot get the size of " + file + ": " + std::strerror(errno));
    const vmm::Device dev{fd.get(), static_cast<std::uint64_t>(end), false};
    const instar_selftest_arg arg{SELFTEST_CRC_LIMIT};
    const std::string modules[] = {module};
    // SAFETY: instar_selftest_arg is a trivially-copyable ABI struct; viewed as its bytes.
    auto ran = vmm::run(config, {&dev, 1}, modules, INSTAR_OP_SELFTEST,
                        {reinterpret_cast<const std::uint8_t*>(&arg), sizeof arg});
    if (!ran) return ran.error();
    const vmm::RunResult& r = ran.value();
    if (r.exit_status != 0) {
        std::string msg = "the self-test guest failed with status " + std::to_string(r.exit_status);
        if (!r.log.empty()) msg += ": " + r.log.back();
        return op_error(msg);
    }
    // The record is untrusted: exactly one, of the right type and size, consistent with the device.
    if (r.records.size() != 1 || r.records[0].type != INSTAR_REC_SELFTEST ||
        r.records[0].data.size() != sizeof(instar_selftest_record)) {
        return vmm::SandboxError{vmm::ErrorKind::GuestBadRecord, "the self-test guest sent a malformed result", r.log};
    }
    instar_selftest_record rec{};
    std::memcpy(&rec, r.records[0].data.data(), sizeof rec);
    const std::uint64_t expected_read = dev.size < SELFTEST_CRC_LIMIT ? dev.size : SELFTEST_CRC_LIMIT;
    if (rec.device_size != dev.size || rec.bytes_read != expected_read || (rec.flags & ~INSTAR_SELFTEST_MODULE_MATCH) != 0) {
        return vmm::SandboxError{vmm::ErrorKind::GuestBadRecord, "the self-test guest sent an inconsistent result", r.log};
    }
    return SelftestReport{rec.device_size, rec.bytes_read, rec.crc32, (rec.flags & INSTAR_SELFTEST_MODULE_MATCH) != 0,
                          vmm::sandbox_kind_name(r.sandbox), r.confinement};
}

int sandbox_selftest(const std::string& file, const vmm::SandboxConfig& config, std::ostream& out, std::ostream& err) {
    auto report = run_sandbox_selftest(file, config);
    if (!report) {
        err << "instar: " << report.error().message << "\n";
        return 1;
    }
    const SelftestReport& r = report.value();
    out << "{\"device-size\": " << r.device_size << ", \"bytes-read\": " << r.bytes_read << ", \"crc32\": " << r.crc32
        << ", \"raw-partition-table\": " << (r.raw_partition_table ? "true" : "false") << ", \"sandbox\": \""
        << r.sandbox << '"';
    if (!r.confinement.empty()) out << ", \"confinement\": \"" << r.confinement << '"';
    out << "}\n";
    return 0;
}

} // namespace instar::ops
