// The repair of a dirty qcow2 image on a read-write open (dirty_repair.h).
#include "ops/dirty_repair.h"

#include <cerrno>
#include <cstring>

namespace instar {

Expected<bool> repair_dirty_image(CheckOptions opts, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version, const DiagnosticsFn& diagnostics) {
    opts.fix = INSTAR_CHECK_FIX_LEAKS | INSTAR_CHECK_FIX_ERRORS;
    auto report = run_check(opts, plugins, sandbox, qemu_version);
    if (!report)
        return Error{report.error()};
    if (diagnostics && !report->diagnostics.empty())
        diagnostics(report->diagnostics);
    if (report->failure)
        return Error{*report->failure};
    // qcow2_do_open: a negative return or any check error fails the open, -EIO when it was the latter.
    const int error = report->result.error < 0 ? -report->result.error
                      : report->result.check_errors != 0 ? EIO
                                                          : 0;
    if (error != 0)
        return Error{std::string("Could not repair dirty image: ") + std::strerror(error)};
    return true;
}

} // namespace instar
