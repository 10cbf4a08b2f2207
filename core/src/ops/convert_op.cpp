// convert's host side: sources and chains opened, the plan written, one sandbox run, atomic commit.
#include "ops/convert_op.h"

#include "ops/atomic_output.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/info_op.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

namespace instar {
namespace {

// Copying runs at disk speed, not parsing speed. The watchdog still bounds a guest that stops making
// progress: a minute, plus one second per 16 MiB of virtual disk (far slower than any disk), so a
// hostile image claiming petabytes cannot keep a sandbox for long unless it really holds the data.
constexpr std::chrono::milliseconds CONVERT_BASE_TIMEOUT{60'000};
constexpr std::uint64_t CONVERT_BYTES_PER_SECOND = 16u << 20;

// qemu's bdrv_parse_cache_mode: none/off and directsync set BDRV_O_NOCACHE (O_DIRECT); unsafe sets
// BDRV_O_NO_FLUSH (flushes are ignored); every other mode flushes at the latest when the image is
// closed. docs/convert.md, "Cache modes".
bool cache_is_direct(const std::string& mode) { return mode == "none" || mode == "off" || mode == "directsync"; }
bool cache_flushes(const std::string& mode) { return mode != "unsafe"; }

struct Plan {
    instar_convert_plan head{};
    std::vector<instar_convert_image> images;
    std::vector<std::uint8_t> create;
    std::string snapshot;

    std::vector<std::uint8_t> bytes() const {
        std::vector<std::uint8_t> out(sizeof head + images.size() * sizeof(instar_convert_image) + create.size() +
                                      snapshot.size());
        std::uint8_t* p = out.data();
        // SAFETY: the ABI structs are trivially copyable with fixed layouts (static_asserts).
        std::memcpy(p, &head, sizeof head);
        p += sizeof head;
        if (!images.empty())
            std::memcpy(p, images.data(), images.size() * sizeof(instar_convert_image));
        p += images.size() * sizeof(instar_convert_image);
        if (!create.empty())
            std::memcpy(p, create.data(), create.size());
        p += create.size();
        std::memcpy(p, snapshot.data(), snapshot.size());
        return out;
    }
};

// The plan as a sealed, read-only in-memory file the guest reads as a device.
class PlanFile {
public:
    ~PlanFile() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    Expected<vmm::Device> write(const std::vector<std::uint8_t>& bytes) {
        fd_ = ::memfd_create("instar-convert-plan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd_ < 0)
            return Error{std::string("cannot make the convert plan: ") + std::strerror(errno)};
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return Error{std::string("cannot write the convert plan: ") + std::strerror(errno)};
            done += static_cast<std::size_t>(n);
        }
        // Nothing, not even this process, changes the plan once the guest may read it.
        if (::fcntl(fd_, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
            return Error{std::string("cannot seal the convert plan: ") + std::strerror(errno)};
        return vmm::Device{fd_, bytes.size(), false};
    }

private:
    int fd_ = -1;
};

std::string failure_message(const ConvertSpec& spec, const std::vector<const ChainLink*>& table,
                            const vmm::RunResult& run) {
    std::string reason;
    std::optional<instar_convert_failure> failure;
    for (const auto& rec : run.records) {
        if (rec.type == INSTAR_REC_REASON && reason.empty())
            reason = printable_reason(std::string(rec.data.begin(), rec.data.end()));
        else if (rec.type == INSTAR_REC_CONVERT_FAILURE && rec.data.size() == sizeof(instar_convert_failure) &&
                 !failure) {
            instar_convert_failure f{};
            std::memcpy(&f, rec.data.data(), sizeof f);
            failure = f;
        }
    }
    const auto status = static_cast<guest::Status>(run.exit_status);
    if (reason.empty())
        reason = status_message(status);
    const std::string& target = spec.target.filename;
    const std::string fmt = (*spec.target.plugin)->name;
    if (!run.host_error.empty())
        return target + ": error while converting " + fmt + ": " + run.host_error;
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN && failure->image < table.size()) {
        const std::string& name = table[failure->image]->name;
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, name);
        if (failure->image == 0 && spec.snapshot)
            return "Failed to load snapshot: " + reason;
        return "Could not open '" + name + "': " + reason;
    }
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_CREATE)
        return target + ": error while converting " + fmt + ": " + reason;
    // Copying failed: a source's data could not be read (or the target written). Name the source
    // when there is only one, so the message says which file is damaged.
    if (spec.sources.size() == 1)
        return "error while converting '" + spec.sources.front() + "': " + reason;
    return "error while converting: " + reason;
}

} // namespace

Expected<bool> convert_image(const ConvertSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                             std::uint32_t qemu_version) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};

    // Every source with its whole backing chain, as qemu-img opens them.
    std::vector<OpenedChain> chains(spec.sources.size());
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < spec.sources.size(); ++i) {
        InfoOptions io;
        io.filename = spec.sources[i];
        io.format = spec.source_format;
        io.backing_chain = true;
        io.unsafe_quirks = spec.unsafe_quirks;
        io.allow_paths = spec.allow_paths;
        auto opened = open_chain(io, plugins, *runner, chains[i]);
        if (!opened)
            return Error{opened.error()};
        for (const auto& link : chains[i].links)
            if (!((*link.plugin)->capabilities & CAP_CONVERT))
                return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                             std::string((*link.plugin)->name) + " images yet"};
        // qemu counts whole sectors (blk_nb_sectors).
        total += (chains[i].links.front().node.virtual_size + 511) / 512 * 512;
    }
    const bool has_backing = spec.target.backing_file.has_value();

    // -B: the target's backing file, named relative to the target and opened through the target's
    // path policy (qemu opens the new image with its backing chain: the writer needs the backing's
    // data for copy-on-write, and convert its size).
    OpenedChain backing_chain;
    if (has_backing) {
        auto policy = default_policy(spec.target.filename, spec.allow_paths);
        if (!policy)
            return Error{policy.error()};
        auto path = check_referenced(*policy, spec.target.filename, "backing file", *spec.target.backing_file);
        if (!path)
            return Error{path.error()};
        InfoOptions io;
        io.filename = *path;
        io.format = spec.target.backing_fmt;
        io.backing_chain = true;
        io.unsafe_quirks = spec.unsafe_quirks;
        io.allow_paths = spec.allow_paths;
        if (auto opened = open_chain(io, plugins, *runner, backing_chain); !opened) {
            // open_user_file says "Could not open 'P': Could not open 'P': ..." as qemu does for a
            // top image; for a backing file qemu names it once.
            std::string why = opened.error();
            const std::string twice = "Could not open '" + *path + "': ";
            if (why.rfind(twice + twice, 0) == 0)
                why.erase(0, twice.size());
            return Error{"Could not open '" + spec.target.filename + "': Could not open backing file: " + why};
        }
    }

    // The plan's image table: the sources first, then the rest of each chain. With a backing file
    // for the target only the sources' own data is copied (qemu: block status above the source's
    // backing), but whether a source has a backing at all still decides what its unallocated
    // ranges are (the target's backing shows through, or zeros), so the chains are attached.
    Plan plan;
    std::vector<const ChainLink*> table;
    std::vector<vmm::Device> devices{vmm::Device{}}; // 0: the plan, filled in below
    std::vector<std::string> modules;
    std::map<std::string, std::uint32_t> module_index;
    auto add_image = [&](const ChainLink& link) -> Expected<std::uint32_t> {
        auto path = guest_module_path(*link.plugin);
        if (!path)
            return Error{path.error()};
        auto [it, fresh] = module_index.try_emplace(*path, static_cast<std::uint32_t>(modules.size()));
        if (fresh)
            modules.push_back(*path);
        instar_convert_image im{};
        im.module = it->second;
        im.device = static_cast<std::uint32_t>(devices.size());
        // -T none/directsync: the sources are read with O_DIRECT too (the fds are this convert's own).
        const bool direct = cache_is_direct(spec.source_cache);
        if (direct)
            if (auto ok = AtomicFiles::make_direct(link.image.fd, link.name); !ok)
                return Error{ok.error()};
        devices.push_back({link.image.fd, link.image.size, false, false, direct});
        im.first_file = static_cast<std::uint32_t>(devices.size());
        im.file_count = static_cast<std::uint32_t>(link.files.size());
        for (const auto& f : link.files) {
            if (direct)
                if (auto ok = AtomicFiles::make_direct(f.fd, link.name); !ok)
                    return Error{ok.error()};
            devices.push_back({f.fd, f.size, false, false, direct});
        }
        im.backing = INSTAR_CONVERT_NO_BACKING;
        im.cluster_size = static_cast<std::uint32_t>(std::min<std::uint64_t>(link.node.cluster_size.value_or(0),
                                                                             UINT32_MAX));
        plan.images.push_back(im);
        table.push_back(&link);
        return static_cast<std::uint32_t>(plan.images.size() - 1);
    };
    for (const auto& chain : chains)
        if (auto idx = add_image(chain.links.front()); !idx)
            return Error{idx.error()};
    for (std::size_t s = 0; s < chains.size(); ++s) {
        std::uint32_t above = static_cast<std::uint32_t>(s);
        for (std::size_t k = 1; k < chains[s].links.size(); ++k) {
            auto idx = add_image(chains[s].links[k]);
            if (!idx)
                return Error{idx.error()};
            plan.images[above].backing = *idx;
            above = *idx;
        }
    }
    plan.head.target_backing = INSTAR_CONVERT_NO_BACKING;
    if (has_backing) {
        std::uint32_t above = INSTAR_CONVERT_NO_BACKING;
        for (const auto& link : backing_chain.links) {
            auto idx = add_image(link);
            if (!idx)
                return Error{idx.error()};
            if (above == INSTAR_CONVERT_NO_BACKING)
                plan.head.target_backing = *idx;
            else
                plan.images[above].backing = *idx;
            above = *idx;
        }
    }
    if (plan.images.size() > INSTAR_CONVERT_MAX_IMAGES)
        return Error{"too many images to convert at once (" + std::to_string(plan.images.size()) + "; at most " +
                     std::to_string(INSTAR_CONVERT_MAX_IMAGES) + ")"};

    auto target_module = guest_module_path(*spec.target.plugin);
    if (!target_module)
        return Error{target_module.error()};
    auto [tit, tfresh] = module_index.try_emplace(*target_module, static_cast<std::uint32_t>(modules.size()));
    if (tfresh)
        modules.push_back(*target_module);
    if (modules.size() > INSTAR_MAX_MODULES)
        return Error{"too many different formats in one convert (" + std::to_string(modules.size()) + ")"};

    CreateSpec target = spec.target;
    target.size = total;
    if (has_backing) {
        target.backing = &backing_chain.links.front().image;
        target.backing_size = backing_chain.links.front().node.virtual_size;
    }
    target.qemu_version = qemu_version;
    auto create = encode_create_arg(target);
    if (!create)
        return Error{target.filename + ": " + create.error()};

    AtomicFiles files(target.filename);
    files.set_durable(cache_flushes(spec.target_cache));
    files.set_direct(cache_is_direct(spec.target_cache));
    auto fd = files.open_image();
    if (!fd)
        return Error{target.filename + ": error while converting " + std::string((*target.plugin)->name) + ": " +
                     fd.error()};
    vmm::Device target_device = vmm::output_device(*fd);
    if (cache_is_direct(spec.target_cache)) {
        if (auto ok = AtomicFiles::make_direct(*fd, target.filename); !ok)
            return Error{ok.error()};
        target_device.direct = true;
    }

    plan.head.magic = INSTAR_CONVERT_PLAN_MAGIC;
    plan.head.image_count = static_cast<std::uint32_t>(plan.images.size());
    plan.head.source_count = static_cast<std::uint32_t>(chains.size());
    plan.head.target_module = tit->second;
    plan.head.target_device = static_cast<std::uint32_t>(devices.size());
    devices.push_back(target_device);
    plan.head.flags = (spec.compressed ? INSTAR_CONVERT_COMPRESS : 0u) |
                      (has_backing ? INSTAR_CONVERT_TARGET_HAS_BACKING : 0u) |
                      (spec.out_of_order ? INSTAR_CONVERT_OUT_OF_ORDER : 0u) |
                      (spec.progress ? INSTAR_CONVERT_PROGRESS : 0u);
    plan.head.min_sparse = spec.min_sparse;
    plan.head.target_backing_size = target.backing ? target.backing_size : UINT64_MAX;
    plan.head.create_len = static_cast<std::uint32_t>(create->size());
    plan.create = std::move(*create);
    if (spec.snapshot)
        plan.snapshot = *spec.snapshot;
    plan.head.snapshot_len = static_cast<std::uint32_t>(plan.snapshot.size());
    plan.head.qemu_version = qemu_version;
    PlanFile plan_file;
    auto plan_device = plan_file.write(plan.bytes());
    if (!plan_device)
        return Error{plan_device.error()};
    devices[0] = *plan_device;
    if (devices.size() > INSTAR_MAX_DEVICES)
        return Error{"too many files for one sandbox (" + std::to_string(devices.size()) + "; at most " +
                     std::to_string(INSTAR_MAX_DEVICES) + ")"};

    sandbox.outputs = &files;
    sandbox.compress_workers = true; // -c compresses on every core (docs/convert.md)
    // Write-behind overlaps the target's writes with the guest's reading; measured slower on this
    // loaded host, so opt-in (docs/convert.md, figures).
    if (const char* wb = std::getenv("INSTAR_WRITE_BEHIND"); wb != nullptr && std::strcmp(wb, "on") == 0)
        sandbox.write_behind = true;
    const auto budget = CONVERT_BASE_TIMEOUT + std::chrono::seconds(total / CONVERT_BYTES_PER_SECOND);
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    if (spec.progress)
        // The engine counts 512-byte sectors, as qemu-img does; --progress=json reports bytes.
        sandbox.progress = [p = spec.progress](std::uint64_t done, std::uint64_t all) {
            p->work(done * 512, all * 512);
        };
    const instar_convert_arg arg{0, 0};
    // SAFETY: instar_convert_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    auto run = vmm::run(sandbox, devices, modules, INSTAR_OP_CONVERT, {a, sizeof arg});
    if (!run)
        return Error{target.filename + ": error while converting " + std::string((*target.plugin)->name) + ": " +
                     run.error().message};
    if (run->exit_status != 0)
        return Error{failure_message(spec, table, run.value())};
    if (auto done = files.commit(); !done)
        return Error{done.error()};
    return true;
}

} // namespace instar
