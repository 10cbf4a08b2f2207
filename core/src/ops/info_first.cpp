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

namespace {

// Records of an INSTAR_OP_INFO_FIRST run up to its operation: each inspection's INSTAR_REC_INFO bytes
// (closed by INSTAR_REC_INFO_END, but perhaps the last), then perhaps INSTAR_REC_STARTED. Untrusted.
struct Inspections {
    std::vector<std::vector<std::uint8_t>> info; // one per inspection begun
    std::size_t ended = 0;                       // inspections closed by INFO_END
    std::size_t first_other = 0;                 // the index of the first record after them
    bool started = false;
};

Expected<Inspections> split_inspections(const std::vector<vmm::Record>& records, std::size_t expected) {
    Inspections out;
    for (; out.first_other < records.size() && !out.started; ++out.first_other) {
        const vmm::Record& rec = records[out.first_other];
        if (rec.type == INSTAR_REC_INFO && out.ended < expected) {
            if (out.info.size() == out.ended)
                out.info.emplace_back();
            out.info.back().insert(out.info.back().end(), rec.data.begin(), rec.data.end());
        } else if (rec.type == INSTAR_REC_INFO_END && rec.data.empty() && out.ended < expected) {
            if (out.info.size() == out.ended)
                out.info.emplace_back();
            ++out.ended;
        } else if (rec.type == INSTAR_REC_STARTED && rec.data.empty() && out.ended == expected) {
            out.started = true;
        } else {
            return Error{"the sandbox sent an unexpected record type " + std::to_string(rec.type)};
        }
    }
    return out;
}

} // namespace

ChainFiles::ChainFiles(const QuickRead& quick, const FirstImage* const* firsts, const PluginRegistry& plugins,
                       const std::vector<std::string>& modules, vmm::OutputFiles* adds)
    : quick_(quick), firsts_(firsts), plugins_(plugins), modules_(modules), adds_(adds), given_(quick.images.size()) {}

ChainFiles::~ChainFiles() {
    for (auto& levels : given_)
        for (auto& g : levels)
            close_file(g.file);
}

std::optional<vmm::Device> ChainFiles::add(const std::string& name, std::string& error) {
    if (adds_ != nullptr)
        return adds_->add(name, error);
    error = "this operation adds no files";
    return std::nullopt;
}

std::optional<vmm::NextImage> ChainFiles::next_image(const std::vector<vmm::Record>& records, std::uint32_t image) {
    if (image >= given_.size())
        return std::nullopt;
    auto split = split_inspections(records, total_inspections());
    if (!split || split->started || split->ended != split->info.size() || split->ended != end_of(image))
        return std::nullopt;
    const std::vector<std::vector<std::uint8_t>> own(split->info.begin() + static_cast<std::ptrdiff_t>(first_of(image)),
                                                     split->info.end());
    std::optional<GivenLevel> asked;
    OpenedChain chain;
    auto replayed = replay(image, own, chain, &asked);
    if (replayed || !asked)
        return std::nullopt;
    // A level of the top's own format: its module is in the run, and a plan's per-entry facts
    // about the format (map's style, compare's flags) are the top's (*_CHAIN_FROM_INFO).
    const auto path = guest_module_path(*asked->plugin);
    const auto known = path ? std::find(modules_.begin(), modules_.end(), *path) : modules_.end();
    if (asked->plugin != firsts_[image]->plugin || known == modules_.end()) {
        close_file(asked->file);
        return std::nullopt;
    }
    vmm::NextImage next;
    next.device = vmm::Device{asked->file.fd, asked->file.size, false};
    next.allocated = asked->file.allocated;
    next.module_flags = static_cast<std::uint32_t>(known - modules_.begin()) |
                        ((asked->flags & INSTAR_INFO_FORCE) != 0 ? INSTAR_NEXT_IMAGE_FORCE : 0u) |
                        ((asked->flags & INSTAR_INFO_NO_KEY) != 0 ? INSTAR_NEXT_IMAGE_NO_KEY : 0u);
    given_[image].push_back(std::move(*asked));
    return next;
}

std::size_t ChainFiles::total_inspections() const { return end_of(given_.size() - 1); }

std::size_t ChainFiles::end_of(std::size_t image) const {
    std::size_t n = 0;
    for (std::size_t i = 0; i <= image; ++i)
        n += 1 + given_[i].size();
    return n;
}

std::size_t ChainFiles::first_of(std::size_t image) const { return end_of(image) - (given_[image].size() + 1); }

Expected<bool> ChainFiles::replay(std::size_t image, const std::vector<std::vector<std::uint8_t>>& own,
                                  OpenedChain& chain, std::optional<GivenLevel>* asked) const {
    const FirstImage& top = *firsts_[image];
    const InfoOptions& opts0 = quick_.images[image];
    const auto& given = given_[image];
    const char* refusal = asked != nullptr ? NOT_HERE : CHANGED;
    std::size_t served = 0;
    GuestInfoRunner runner = [&](const std::vector<const LoadedPlugin*>& candidates, std::uint32_t flags,
                                 const OpenedFile& file, const std::vector<OpenedFile>& files) -> Expected<GuestInfoResult> {
        const std::size_t level = served++;
        const bool force = (flags & INSTAR_INFO_FORCE) != 0;
        if (candidates.size() != 1 || !files.empty())
            return Error{refusal};
        if (level < own.size()) {
            const bool same = level == 0 ? candidates.front() == top.plugin && force == opts0.format.has_value()
                                         : level - 1 < given.size() && candidates.front() == given[level - 1].plugin &&
                                               flags == given[level - 1].flags && same_file(file, given[level - 1].file);
            if (!same)
                return Error{refusal};
            auto decoded = decode_info(own[level], true);
            if (!decoded)
                return Error{decoded.error()};
            GuestInfoResult result;
            result.info = std::move(*decoded);
            return result;
        }
        if (asked != nullptr && level == own.size()) {
            auto copy = duplicate(file);
            if (!copy)
                return Error{refusal};
            *asked = GivenLevel{*copy, candidates.front(), flags & (INSTAR_INFO_FORCE | INSTAR_INFO_NO_KEY)};
        }
        return Error{refusal};
    };
    InfoOptions opts = opts0;
    opts.top = &top.file;
    auto walked = quick_.walk ? quick_.walk(image, opts, runner, chain) : open_chain(opts, plugins_, runner, chain);
    if (walked && served != own.size())
        return Error{CHANGED};
    return walked;
}

bool ChainFiles::same_file(const OpenedFile& a, const OpenedFile& b) {
    return a.device == b.device && a.inode == b.inode && a.size == b.size;
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
    call.config.outputs = nullptr;
    call.modules = std::move(modules);
    if (auto ready = quick.prepare(opened, call); !ready)
        return Error{ready.error()};
    else if (!*ready)
        return std::optional<vmm::RunResult>{};
    ChainFiles chain_files(quick, opened.data(), plugins, call.modules, call.config.outputs);
    if (quick.chains) {
        head.flags |= INSTAR_INFO_FIRST_CHAINS;
        call.config.outputs = &chain_files;
    }
    std::vector<std::uint8_t> arg(sizeof head);
    std::memcpy(arg.data(), &head, sizeof head);
    arg.insert(arg.end(), call.arg.begin(), call.arg.end());
    devices.insert(devices.end(), call.devices.begin(), call.devices.end());
    auto run = vmm::run(call.config, devices, call.modules, INSTAR_OP_INFO_FIRST, arg);
    if (!run)
        return Error{run.error().message};
    // Untrusted: each image's info records then INFO_END (each followed by the backing files it was
    // given, in order); STARTED only after all of them.
    auto split = split_inspections(run->records, chain_files.total_inspections());
    if (!split)
        return Error{split.error()};
    const auto& info = split->info;
    if (!split->started) {
        // The inspections that finished: the last one's status is the run's; the others succeeded.
        // Each image's own inspection is kept (its backing files' are made again).
        if (quick.prefetched != nullptr) {
            quick.prefetched->assign(count, std::nullopt);
            for (std::size_t i = 0; i < count; ++i) {
                const std::size_t at = chain_files.first_of(i);
                if (at >= info.size())
                    break;
                const auto status =
                    at < split->ended ? guest::Status::Ok : static_cast<guest::Status>(run->exit_status);
                keep_inspection(info[at], status, firsts[i], quick.images[i].format.has_value(),
                                &(*quick.prefetched)[i]);
            }
        }
        return std::optional<vmm::RunResult>{};
    }
    // The chains as the ordinary path opens them, each inspection served for the file it was made of.
    chains.clear();
    chains.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        const auto from = info.begin() + static_cast<std::ptrdiff_t>(chain_files.first_of(i));
        const std::vector<std::vector<std::uint8_t>> own(from, info.begin() + static_cast<std::ptrdiff_t>(chain_files.end_of(i)));
        if (auto ok = chain_files.replay(i, own, chains[i], nullptr); !ok)
            return Error{ok.error()};
    }
    run->records.erase(run->records.begin(), run->records.begin() + static_cast<std::ptrdiff_t>(split->first_other));
    return std::optional<vmm::RunResult>{std::move(run.value())};
}

namespace {

// As info's own runs (guest_info_runner.cpp): a small guest, no huge pages. One that runs out of
// memory stops, and the ordinary path runs again with the cap.
Expected<bool> small_inspection_guest(const std::vector<const FirstImage*>&, QuickCall& call) {
    call.config.guest_memory = INSTAR_MIN_GUEST_MEMORY;
    call.config.huge_pages = false;
    return true;
}

} // namespace

Expected<bool> open_chain_at_once(const InfoOptions& opts, const PluginRegistry& plugins,
                                  const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version,
                                  const GuestInfoRunner& runner, OpenedChain& chain) {
    if (!opts.backing_chain || opts.top != nullptr || opts.header) // (a detached header: luks's own)
        return open_chain(opts, plugins, runner, chain);
    QuickRead q;
    q.images = {opts};
    q.op = INSTAR_OP_INFO;
    q.max_virtual_size = UINT64_MAX; // nothing runs after the inspections
    q.chains = true;
    q.prepare = small_inspection_guest;
    std::vector<std::optional<PrefetchedInfo>> kept;
    q.prefetched = &kept;
    std::vector<OpenedChain> chains;
    auto run = try_quick_read(q, plugins, sandbox, qemu_version, chains);
    if (run && *run && (*run)->records.empty()) {
        chain.links = std::move(chains.front().links);
        return true;
    }
    // Not all at once (or the start failed: the ordinary path meets the failure again and words it).
    return open_chain(opts, plugins, reusing_inspection(runner, kept, 0), chain);
}

Expected<std::optional<std::vector<NodeInfo>>> try_quick_chain_info(const InfoOptions& opts,
                                                                    const PluginRegistry& plugins,
                                                                    const vmm::SandboxConfig& sandbox,
                                                                    std::uint32_t qemu_version,
                                                                    std::optional<PrefetchedInfo>& prefetched) {
    using Nodes = std::optional<std::vector<NodeInfo>>;
    QuickRead q;
    q.images = {opts};
    q.op = INSTAR_OP_INFO;
    q.max_virtual_size = UINT64_MAX; // nothing runs after the inspections
    q.chains = true;
    std::vector<NodeInfo> nodes;
    q.walk = [&](std::size_t, const InfoOptions& io, const GuestInfoRunner& runner, OpenedChain&) -> Expected<bool> {
        auto walked = collect_info(io, plugins, runner);
        if (!walked)
            return Error{walked.error()};
        nodes = std::move(*walked);
        return true;
    };
    q.prepare = small_inspection_guest;
    std::vector<std::optional<PrefetchedInfo>> kept;
    q.prefetched = &kept;
    std::vector<OpenedChain> chains;
    auto run = try_quick_read(q, plugins, sandbox, qemu_version, chains);
    if (!run)
        return Error{run.error()};
    if (!*run) {
        if (!kept.empty())
            prefetched = std::move(kept.front());
        return Nodes{};
    }
    if (!(*run)->records.empty())
        return Error{"the sandbox sent records after its inspections"};
    return Nodes{std::move(nodes)};
}

} // namespace instar
