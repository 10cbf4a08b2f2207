// One start where the image stands alone (info_first.h).
#include "ops/info_first.h"

#include "chain/path_policy.h"
#include "info/info_decode.h"
#include "ops/guest_module.h"
#include "ops/host_probe.h"

#include <instar/guest_abi.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

namespace instar {

GuestInfoRunner with_prefetched(GuestInfoRunner runner, const PrefetchedInfo& pf) {
    auto used = std::make_shared<bool>(false);
    // A kept inspection succeeded, so INSTAR_INFO_NO_KEY made no difference to it (a format that
    // heeds it refuses): only the probe (FORCE) must match.
    return [runner = std::move(runner), &pf, used](const std::vector<const LoadedPlugin*>& candidates,
                                                   std::uint32_t flags, const OpenedFile& image,
                                                   const std::vector<OpenedFile>& files) -> Expected<GuestInfoResult> {
        const bool first = !*used;
        *used = true;
        const bool force = (flags & INSTAR_INFO_FORCE) != 0;
        if (first && files.empty() && candidates.size() == 1 && candidates.front() == pf.plugin && force == pf.force)
            return pf.result;
        return runner(candidates, flags, image, files);
    };
}

GuestInfoRunner reusing_inspection(const GuestInfoRunner& runner,
                                   const std::vector<std::optional<PrefetchedInfo>>& prefetched, std::size_t image) {
    if (image < prefetched.size() && prefetched[image])
        return with_prefetched(runner, *prefetched[image]);
    return runner;
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
    GuestInfoRunner cached = [&](const std::vector<const LoadedPlugin*>& candidates, std::uint32_t flags,
                                 const OpenedFile&, const std::vector<OpenedFile>& files) -> Expected<GuestInfoResult> {
        const bool force = (flags & INSTAR_INFO_FORCE) != 0;
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
                                                       std::vector<OpenedChain>& chains) {
    const std::size_t count = quick.images.size();
    if (count == 0 || count > INSTAR_INFO_FIRST_MAX_IMAGES)
        return Error{"internal error: a quick read of " + std::to_string(count) + " images"};
    FirstImage firsts[INSTAR_INFO_FIRST_MAX_IMAGES];
    std::vector<const FirstImage*> opened;
    instar_info_first_arg head{};
    head.op = quick.op;
    head.qemu_version = qemu_version;
    head.image_count = static_cast<std::uint32_t>(count);
    head.max_virtual_size = quick.max_virtual_size;
    std::vector<vmm::Device> devices;
    std::vector<std::string> modules;
    for (std::size_t i = 0; i < count; ++i) {
        if (!open_first_image(quick.images[i], plugins, sandbox, firsts[i]))
            return std::optional<vmm::RunResult>{};
        auto module = guest_module_path(*firsts[i].plugin);
        if (!module)
            return std::optional<vmm::RunResult>{};
        const auto known = std::find(modules.begin(), modules.end(), *module);
        firsts[i].module = static_cast<std::uint32_t>(known - modules.begin());
        head.modules[i] = firsts[i].module;
        if (known == modules.end())
            modules.push_back(*module);
        if (quick.images[i].format)
            head.flags |= 1u << i;
        if (quick.images[i].opens_without_key)
            head.flags |= 1u << (INSTAR_INFO_FIRST_NO_KEY_SHIFT + i);
        devices.push_back({firsts[i].file.fd, firsts[i].file.size, false});
        opened.push_back(&firsts[i]);
    }
    QuickCall call;
    call.config = sandbox;
    if (auto ready = quick.prepare(opened, call); !ready)
        return Error{ready.error()};
    else if (!*ready)
        return std::optional<vmm::RunResult>{};
    std::vector<std::uint8_t> arg(sizeof head);
    std::memcpy(arg.data(), &head, sizeof head);
    arg.insert(arg.end(), call.arg.begin(), call.arg.end());
    devices.insert(devices.end(), call.devices.begin(), call.devices.end());
    auto run = vmm::run(call.config, devices, modules, INSTAR_OP_INFO_FIRST, arg);
    if (!run)
        return Error{run.error().message};
    // Untrusted: each image's info records then INFO_END, in order; STARTED only after all of them.
    std::vector<std::vector<std::uint8_t>> info(count);
    std::vector<vmm::Record> rest;
    std::size_t ended = 0;
    bool started = false;
    for (auto& rec : run->records) {
        if (started)
            rest.push_back(std::move(rec));
        else if (rec.type == INSTAR_REC_INFO && ended < count)
            info[ended].insert(info[ended].end(), rec.data.begin(), rec.data.end());
        else if (rec.type == INSTAR_REC_INFO_END && rec.data.empty() && ended < count)
            ++ended;
        else if (rec.type == INSTAR_REC_STARTED && rec.data.empty() && ended == count)
            started = true;
        else
            return Error{"the sandbox sent an unexpected record type " + std::to_string(rec.type)};
    }
    if (!started) {
        // The inspections that finished: the last one's status is the run's; the others succeeded.
        if (quick.prefetched != nullptr) {
            quick.prefetched->assign(count, std::nullopt);
            for (std::size_t i = 0; i < ended; ++i)
                keep_inspection(info[i], guest::Status::Ok, firsts[i], quick.images[i].format.has_value(),
                                &(*quick.prefetched)[i]);
            if (ended < count)
                keep_inspection(info[ended], static_cast<guest::Status>(run->exit_status), firsts[ended],
                                quick.images[ended].format.has_value(), &(*quick.prefetched)[ended]);
        }
        return std::optional<vmm::RunResult>{};
    }
    chains.clear();
    chains.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        InfoOptions io = quick.images[i];
        io.top = &firsts[i].file;
        if (auto ok = open_inspected(info[i], firsts[i], io, plugins, chains[i]); !ok)
            return Error{ok.error()};
    }
    run->records = std::move(rest);
    return std::optional<vmm::RunResult>{std::move(run.value())};
}

} // namespace instar
