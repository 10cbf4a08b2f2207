// The replay before a read-write open (open_replay.h): one INSTAR_OP_EDIT run.
#include "ops/open_replay.h"

#include "ops/edit_op.h"
#include "ops/host_probe.h"

#include <instar/guest/edit_api.h>
#include <instar/guest_abi.h>

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static_assert(instar::guest::EDIT_DATA_REPLAYED == INSTAR_EDIT_COMMAND_DATA, "edit_api.h spells the first command data kind");

namespace instar {

Expected<bool> replay_on_open(const LoadedPlugin& plugin, OpenedFile& file, const std::string& name,
                              const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    if ((plugin->capabilities & CAP_OPEN_REPLAY) == 0)
        return false;
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
    bool replayed = false;
    for (const auto& [kind, bytes] : report->data)
        replayed = replayed || kind == guest::EDIT_DATA_REPLAYED;
    if (!replayed)
        return false;
    struct stat st {};
    if (::fstat(file.fd, &st) != 0)
        return Error{"Could not open '" + name + "': " + std::strerror(errno)};
    if (S_ISREG(st.st_mode))
        file.size = static_cast<std::uint64_t>(st.st_size);
    return true;
}

Expected<bool> replay_named_image(const PluginRegistry& plugins, const std::string& name,
                                  const std::optional<std::string>& format, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version) {
    auto file = open_user_file(name);
    if (!file)
        return false;
    const LoadedPlugin* plugin = nullptr;
    if (format) {
        plugin = plugins.find(*format);
    } else {
        for (const LoadedPlugin* candidate : host_probe(plugins, *file))
            if (((*candidate)->capabilities & CAP_OPEN_REPLAY) != 0) {
                plugin = candidate;
                break;
            }
    }
    // The very file just opened, now for writing (through /proc/self/fd: no name looked up again).
    const std::string self = "/proc/self/fd/" + std::to_string(file->fd);
    const int rw = plugin != nullptr && ((*plugin)->capabilities & CAP_OPEN_REPLAY) != 0
                       ? ::open(self.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY)
                       : -1;
    close_file(*file);
    if (rw < 0)
        return false;
    file->fd = rw;
    auto replayed = replay_on_open(*plugin, *file, name, sandbox, qemu_version);
    close_file(*file);
    return replayed;
}

} // namespace instar
