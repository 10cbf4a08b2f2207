// The repair of a dirty qcow2 image on a read-write open (dirty_repair.h).
#include "ops/dirty_repair.h"

#include <cerrno>
#include <cstring>

namespace instar {

Expected<bool> repair_dirty_image(const DirtyRepair& image, const PluginRegistry& plugins,
                                  const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    CheckOptions opts;
    opts.filename = image.filename;
    opts.format = std::string("qcow2");
    opts.fix = INSTAR_CHECK_FIX_LEAKS | INSTAR_CHECK_FIX_ERRORS;
    opts.allow_paths = image.allow_paths;
    opts.unsafe_quirks = image.unsafe_quirks;
    opts.secret = image.secret;
    const std::string frame = "Could not open '" + image.name + "': ";
    auto report = run_check(opts, plugins, sandbox, qemu_version);
    if (!report)
        return Error{frame + report.error()};
    if (image.diagnostics && !report->diagnostics.empty())
        image.diagnostics(report->diagnostics);
    if (report->failure)
        return Error{frame + *report->failure};
    // qcow2_do_open: a negative return or any check error fails the open, -EIO when it was the latter.
    const int error = report->result.error < 0 ? -report->result.error
                      : report->result.check_errors != 0 ? EIO
                                                          : 0;
    if (error != 0)
        return Error{frame + "Could not repair dirty image: " + std::strerror(error)};
    return true;
}

} // namespace instar
