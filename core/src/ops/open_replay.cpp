// The replay before a read-write open (open_replay.h): one INSTAR_OP_EDIT run.
#include "ops/open_replay.h"

#include "ops/edit_op.h"

#include <cerrno>
#include <cstring>

#include <sys/stat.h>

namespace instar {

Expected<bool> replay_on_open(const LoadedPlugin& plugin, OpenedFile& file, const std::string& name,
                              const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    if ((plugin->capabilities & CAP_OPEN_REPLAY) == 0)
        return true;
    ChainLink link{file, {}, &plugin, {}, name, {}};
    EditCall call;
    call.link = &link;
    call.filename = name;
    call.command = guest::EditCommand::ReplayLog;
    call.image_fd = file.fd; // already open for writing
    auto report = run_edit(call, sandbox, qemu_version);
    if (!report)
        return Error{"Could not open '" + name + "': " + report.error()};
    if (report->status != guest::Status::Ok) {
        std::string why = report->reason.empty() ? status_message(report->status) : report->reason;
        for (std::size_t at; (at = why.find("{image}")) != std::string::npos;)
            why.replace(at, 7, name);
        return Error{"Could not open '" + name + "': " + why};
    }
    struct stat st {};
    if (::fstat(file.fd, &st) != 0)
        return Error{"Could not open '" + name + "': " + std::strerror(errno)};
    if (S_ISREG(st.st_mode))
        file.size = static_cast<std::uint64_t>(st.st_size);
    return true;
}

} // namespace instar
