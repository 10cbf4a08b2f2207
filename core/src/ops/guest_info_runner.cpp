// Sandbox-backed info runs: module selection, device list, INFO record decoding.
#include "ops/guest_info_runner.h"

#include "info/info_decode.h"
#include "ops/guest_module.h"

namespace instar {
namespace {

// Reading metadata needs a few hundred KiB of arena for ordinary images, and the smallest VM is the
// cheapest to create (the memslot's cost grows with RAM). An image that needs more makes the guest
// exit with NoMemory; the run is then repeated with the configured cap (--max-guest-memory).
constexpr std::uint64_t INFO_GUEST_MEMORY = INSTAR_MIN_GUEST_MEMORY;

} // namespace

Expected<GuestInfoRunner> make_sandbox_info_runner(const vmm::SandboxConfig& config, std::uint32_t qemu_version) {
    if (auto err = vmm::check_sandbox(config))
        return Error{err->message};
    return GuestInfoRunner([config, qemu_version](const std::vector<const LoadedPlugin*>& candidates, std::uint32_t flags,
                                    const OpenedFile& image,
                                    const std::vector<OpenedFile>& files) -> Expected<GuestInfoResult> {
        if (candidates.size() > INSTAR_MAX_MODULES)
            return Error{"too many candidate formats"};
        std::vector<std::string> modules;
        for (const LoadedPlugin* p : candidates) {
            auto m = guest_module_path(*p);
            if (!m)
                return Error{m.error()};
            modules.push_back(*m);
        }
        std::vector<vmm::Device> devices{{image.fd, image.size, false}};
        for (const auto& f : files)
            devices.push_back({f.fd, f.size, false});
        instar_info_arg arg{static_cast<std::uint32_t>(modules.size()), static_cast<std::uint32_t>(files.size()),
                            flags & (INSTAR_INFO_FORCE | INSTAR_INFO_NO_KEY), qemu_version};
        // SAFETY: instar_info_arg is a trivially-copyable ABI struct with no padding (static_assert).
        const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
        vmm::SandboxConfig small = config;
        small.guest_memory = INFO_GUEST_MEMORY;
        small.huge_pages = false; // info touches a few dozen pages: see SandboxConfig::huge_pages
        auto run = vmm::run(small, devices, modules, INSTAR_OP_INFO, {a, sizeof arg});
        if (run && run->exit_status == static_cast<std::int32_t>(guest::Status::NoMemory) &&
            vmm::guest_ram(config) > vmm::guest_ram(small))
            run = vmm::run(config, devices, modules, INSTAR_OP_INFO, {a, sizeof arg});
        if (!run)
            return Error{run.error().message};
        GuestInfoResult out;
        out.status = static_cast<guest::Status>(run->exit_status);
        std::vector<std::uint8_t> stream;
        for (const auto& rec : run->records) {
            if (rec.type == INSTAR_REC_INFO)
                stream.insert(stream.end(), rec.data.begin(), rec.data.end());
            else
                return Error{"the sandbox sent an unexpected record type " + std::to_string(rec.type)};
        }
        const bool good = out.status == guest::Status::Ok || out.status == guest::Status::NeedFiles;
        auto decoded = decode_info(stream, good);
        if (!decoded) {
            if (good)
                return Error{decoded.error()};
            return out; // a failed run's garbled report: the status alone explains it
        }
        out.info = std::move(*decoded);
        out.detail = printable_reason(out.info.reason);
        return out;
    });
}

} // namespace instar
