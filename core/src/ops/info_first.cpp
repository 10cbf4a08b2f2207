// One start where the image stands alone (info_first.h).
#include "ops/info_first.h"

#include "chain/path_policy.h"
#include "info/info_decode.h"
#include "ops/guest_module.h"
#include "ops/host_probe.h"

#include <instar/guest_abi.h>

#include <cstring>
#include <memory>
#include <utility>

namespace instar {

GuestInfoRunner with_prefetched(GuestInfoRunner runner, const PrefetchedInfo& pf) {
    auto used = std::make_shared<bool>(false);
    return [runner = std::move(runner), &pf, used](const std::vector<const LoadedPlugin*>& candidates, bool force,
                                                   const OpenedFile& image,
                                                   const std::vector<OpenedFile>& files) -> Expected<GuestInfoResult> {
        const bool first = !*used;
        *used = true;
        if (first && files.empty() && candidates.size() == 1 && candidates.front() == pf.plugin && force == pf.force)
            return pf.result;
        return runner(candidates, force, image, files);
    };
}

FirstImage::~FirstImage() {
    if (open)
        close_file(file);
}

bool open_first_image(const InfoOptions& opts, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                      FirstImage& out) {
    // Anything unusual goes the ordinary way, which words every error as before.
    if (vmm::check_sandbox(sandbox) || !default_policy(opts.filename, opts.allow_paths))
        return false;
    auto opened = open_user_file(opts.filename);
    if (!opened)
        return false;
    out.file = *opened;
    out.open = true;
    if (opts.format) {
        out.plugin = plugins.find(*opts.format);
    } else {
        const auto probed = host_probe(plugins, out.file, opts.unsafe_quirks);
        if (probed.size() == 1)
            out.plugin = probed.front();
    }
    return out.plugin != nullptr;
}

void keep_inspection(const std::vector<std::uint8_t>& info, guest::Status status, const FirstImage& first,
                     bool force, std::optional<PrefetchedInfo>* prefetched) {
    if (prefetched == nullptr || (status != guest::Status::Ok && status != guest::Status::NeedFiles))
        return;
    auto decoded = decode_info(info, true);
    if (!decoded)
        return;
    PrefetchedInfo pf;
    pf.plugin = first.plugin;
    pf.force = force;
    pf.result.status = status;
    pf.result.info = std::move(*decoded);
    pf.result.detail = printable_reason(pf.result.info.reason);
    *prefetched = std::move(pf);
}

Expected<bool> open_inspected(const std::vector<std::uint8_t>& info, const FirstImage& first, const InfoOptions& opts,
                              const PluginRegistry& plugins, OpenedChain& chain) {
    // The info the guest sent before it went on: the image's node, built as open_chain builds it.
    auto decoded = decode_info(info, true);
    if (!decoded)
        return Error{decoded.error()};
    GuestInfoResult result;
    result.info = std::move(*decoded);
    bool served = false;
    GuestInfoRunner cached = [&](const std::vector<const LoadedPlugin*>& candidates, bool force, const OpenedFile&,
                                 const std::vector<OpenedFile>& files) -> Expected<GuestInfoResult> {
        if (served || candidates.size() != 1 || candidates.front() != first.plugin || force != opts.format.has_value() ||
            !files.empty())
            return Error{"the image changed while it was being inspected"};
        served = true;
        return result;
    };
    return open_chain(opts, plugins, cached, chain);
}

Expected<std::optional<vmm::RunResult>> try_quick_read(const QuickRead& quick, const PluginRegistry& plugins,
                                                       const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version,
                                                       OpenedChain& chain) {
    FirstImage first;
    if (!open_first_image(quick.open, plugins, sandbox, first))
        return std::optional<vmm::RunResult>{};
    auto module = guest_module_path(*first.plugin);
    if (!module)
        return std::optional<vmm::RunResult>{};
    QuickCall call;
    call.config = sandbox;
    if (auto ready = quick.prepare(first, call); !ready)
        return Error{ready.error()};
    else if (!*ready)
        return std::optional<vmm::RunResult>{};
    const bool force = quick.open.format.has_value();
    instar_info_first_arg head{quick.op, force ? INSTAR_INFO_FORCE : 0u, qemu_version, 0, quick.max_virtual_size};
    std::vector<std::uint8_t> arg(sizeof head);
    std::memcpy(arg.data(), &head, sizeof head);
    arg.insert(arg.end(), call.arg.begin(), call.arg.end());
    std::vector<vmm::Device> devices{{first.file.fd, first.file.size, false}};
    devices.insert(devices.end(), call.devices.begin(), call.devices.end());
    const std::vector<std::string> modules{*module};
    auto run = vmm::run(call.config, devices, modules, INSTAR_OP_INFO_FIRST, arg);
    if (!run)
        return Error{run.error().message};
    std::vector<std::uint8_t> info;
    std::vector<vmm::Record> rest;
    bool started = false;
    for (auto& rec : run->records) {
        if (!started && rec.type == INSTAR_REC_INFO)
            info.insert(info.end(), rec.data.begin(), rec.data.end());
        else if (!started && rec.type == INSTAR_REC_STARTED && rec.data.empty())
            started = true;
        else if (started)
            rest.push_back(std::move(rec));
        else
            return Error{"the sandbox sent an unexpected record type " + std::to_string(rec.type)};
    }
    if (!started) {
        keep_inspection(info, static_cast<guest::Status>(run->exit_status), first, force, quick.prefetched);
        return std::optional<vmm::RunResult>{};
    }
    InfoOptions io = quick.open;
    io.top = &first.file;
    if (auto ok = open_inspected(info, first, io, plugins, chain); !ok)
        return Error{ok.error()};
    run->records = std::move(rest);
    return std::optional<vmm::RunResult>{std::move(run.value())};
}

} // namespace instar
