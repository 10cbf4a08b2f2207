// commit's host side: the chain opened, the base found and reopened for writing, one sandbox run
// that copies, fsync, then the top emptied through the shared edit path (docs/commit.md).
#include "ops/commit_op.h"

#include "ops/atomic_output.h"
#include "ops/cache_mode.h"
#include "ops/edit_op.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_range.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/info_op.h"
#include "ops/map_op.h"

#include <instar/guest/edit_resize.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

namespace instar {
namespace {

// Copying runs at disk speed. The watchdog bounds a guest that stops making progress: a minute, plus
// one second per 16 MiB of the top's virtual disk (far slower than any disk), as convert's.
constexpr std::chrono::milliseconds COMMIT_BASE_TIMEOUT{60'000};
constexpr std::uint64_t COMMIT_BYTES_PER_SECOND = 16u << 20;

// Formats whose qemu driver has bdrv_make_empty: qcow2 and every plugin declaring CAP_MAKE_EMPTY
// (qcow). For the others qemu's blk_make_empty fails with ENOTSUP, which qemu-img commit ignores.
bool can_make_empty(const ChainLink& link) {
    return link.node.format == "qcow2" || ((*link.plugin)->capabilities & CAP_MAKE_EMPTY) != 0;
}

// qemu's bdrv_find_backing_image: a plain file name, relative to the directory of the image that
// names each candidate, resolved (realpath) and compared with the candidate's own file; a name with
// a protocol, compared as a string.
// Levels up to spec.overridden_levels were named with options: qemu compares -b with those images'
// json: filenames as strings (bdrv_backing_overridden), so a plain name finds only an image below.
std::optional<std::size_t> find_base(const OpenedChain& chain, const CommitSpec& spec) {
    namespace fs = std::filesystem;
    const std::string& name = *spec.base;
    for (std::size_t i = 1; i <= spec.overridden_levels && i < chain.links.size() && spec.level_name; ++i) {
        std::vector<std::pair<std::string, std::string>> below;
        for (std::size_t j = i; j < chain.links.size(); ++j)
            below.emplace_back(chain.links[j].node.format, chain.links[j].name);
        if (name == spec.level_name(i, below))
            return i;
    }
    const bool protocol = has_protocol(name);
    for (std::size_t i = spec.overridden_levels + 1; i < chain.links.size(); ++i) {
        // Either name with a protocol ("file:base.qcow2"): the strings are compared, with the
        // overlay's backing name as written and as its full backing filename.
        const std::string& written = chain.links[i].image.reference;
        if (protocol || has_protocol(written)) {
            if (name == written || name == full_backing_filename(chain.links[i - 1].image.display, written))
                return i;
            continue;
        }
        const fs::path overlay = chain.links[i - 1].image.display;
        const fs::path wanted = fs::path(name).is_absolute() ? fs::path(name) : overlay.parent_path() / name;
        std::error_code ec;
        const fs::path real = fs::canonical(wanted, ec);
        if (ec)
            continue;
        if (real == chain.links[i].image.path)
            return i;
    }
    return std::nullopt;
}

struct Fd {
    int fd = -1;
    Fd() = default;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0)
            ::close(fd);
    }
};

// The base info inspected, opened again for writing: the same device, inode and size (the path policy
// allowed it; qemu-img commit writes into it as well).
Expected<bool> reopen_base(const ChainLink& base, std::uint64_t size, Fd& out) {
    out.fd = ::open(base.image.path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (out.fd < 0)
        return Error{"Could not reopen '" + base.name + "' for writing: " + std::strerror(errno)};
    struct stat st {};
    if (::fstat(out.fd, &st) != 0 || static_cast<std::uint64_t>(st.st_dev) != base.image.device ||
        static_cast<std::uint64_t>(st.st_ino) != base.image.inode ||
        static_cast<std::uint64_t>(st.st_size) != size)
        return Error{"Could not reopen '" + base.name + "' for writing: the file changed while it was inspected"};
    return true;
}

// The base's other files (vmdk extents, a data file), reopened read-write as convert -n reopens its
// target's (reopen_writable: the very files info inspected). `lengths`: their sizes now (a base
// grown first has grown its extents too).
Expected<bool> reopen_base_files(const ChainLink& base, bool direct, std::vector<Fd>& out,
                                 std::vector<std::uint64_t>& lengths) {
    for (std::size_t i = 0; i < base.files.size(); ++i) {
        const OpenedFile& f = base.files[i];
        auto fd = reopen_writable(f);
        if (!fd)
            return Error{"Could not open '" + base.name + "': " + fd.error()};
        out[i].fd = *fd;
        struct stat st {};
        if (::fstat(out[i].fd, &st) != 0)
            return Error{"Could not open '" + base.name + "': Could not open '" + f.display +
                         "': " + std::strerror(errno)};
        if (direct)
            if (auto ok = AtomicFiles::make_direct(out[i].fd, f.display); !ok)
                return Error{ok.error()};
        lengths.push_back(static_cast<std::uint64_t>(st.st_size));
    }
    return true;
}

std::string failure_message(const std::vector<const ChainLink*>& table, const vmm::RunResult& run,
                            const std::string& top) {
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
    if (!run.host_error.empty())
        return "Error while committing: " + run.host_error;
    if (reason.empty())
        reason = status_message(static_cast<guest::Status>(run.exit_status));
    const bool opening = failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN;
    // INSTAR_CONVERT_PHASE_CREATE: the base could not be opened for writing (its writer's reason).
    const bool writing = failure && failure->phase == INSTAR_CONVERT_PHASE_CREATE;
    if ((opening || writing) && failure->image < table.size()) {
        const std::string& name = table[failure->image]->name;
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, name);
        if (opening) // a reader (and its key) as qemu's open of the chain
            return open_frame(top, failure->image) + reason;
        if (reason.find("existing image of this format") != std::string::npos)
            reason = "instar cannot write into an existing " + table[failure->image]->node.format + " image yet";
        return "Could not open '" + name + "': " + reason;
    }
    return "Error while committing: " + reason;
}

} // namespace

Expected<bool> commit_image(const CommitSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                            std::uint32_t qemu_version) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};
    OpenedChain chain;
    InfoOptions io;
    io.filename = spec.filename;
    io.format = spec.format;
    io.backing_chain = true;
    io.read_write = true;
    io.unsafe_quirks = spec.unsafe_quirks;
    io.allow_paths = spec.allow_paths;
    io.opens_without_key = !spec.secret;
    io.backing_in_one_node = true;
    io.backing_keys = spec.backing_keys;
    if (auto opened = open_chain_at_once(io, plugins, sandbox, qemu_version, *runner, chain); !opened)
        return unlock_above_failure(chain, Error{opened.error()}, spec.secret, spec.backing_secret, spec.filename,
                                    sandbox, qemu_version);
    // Each encrypted image's secret: the top's, then the one its level's backing.[…]key-secret names.
    auto name_secrets = [&]() -> Expected<bool> {
        if (!chain.links.empty())
            chain.links.front().secret = spec.secret;
        return assign_backing_secrets(chain, spec.backing_secret, spec.filename, sandbox, qemu_version);
    };
    if (auto named = name_secrets(); !named)
        return Error{named.error()};
    // A dirty qcow2 image of the chain at `level` is repaired (dirty_repair.h), `diagnostics` printed
    // or not; the chain is then inspected again, as the repair changed the file.
    auto repair = [&](std::size_t level, const DiagnosticsFn& diagnostics) -> Expected<bool> {
        const ChainLink& link = chain.links[level];
        if (auto repaired = repair_dirty_image({level == 0 ? spec.filename : link.image.path.string(), link.name,
                                                spec.allow_paths, spec.unsafe_quirks, link.secret, diagnostics},
                                               plugins, sandbox, qemu_version);
            !repaired)
            return Error{repaired.error()};
        chain.close();
        if (auto opened = open_chain_at_once(io, plugins, sandbox, qemu_version, *runner, chain); !opened)
            return Error{opened.error()};
        return name_secrets();
    };
    // qemu opens the top read-write first: a corrupt one fails there, before anything is written
    // (the base's reopen for writing has no such check: a corrupt base is refused by its writer).
    if (!chain.links.empty() && refuses_read_write(chain.links.front().node))
        return Error{read_write_refusal(chain.links.front().name)};
    // qemu's read-write open of a dirty qcow2 top repairs it first (lazy refcounts written back),
    // printing check's lines.
    if (!chain.links.empty() && needs_dirty_repair(chain.links.front().node))
        if (auto ok = repair(0, spec.diagnostics); !ok)
            return Error{ok.error()};
    // An error commit finds after qemu's open comes after the open's key errors.
    auto keys_first = [&](const std::string& message) -> Error {
        if (auto keys = unlock_chain(chain, chain.links.size(), spec.filename, sandbox, qemu_version); !keys)
            return Error{keys.error()};
        return Error{message};
    };

    std::size_t base = 1;
    if (spec.base) {
        auto found = find_base(chain, spec);
        if (!found)
            return keys_first("Did not find '" + *spec.base + "' in the backing chain of '" +
                              (spec.given.empty() ? spec.filename : spec.given) + "'");
        base = *found;
    } else if (chain.links.size() < 2) {
        return keys_first("Image does not have a backing file");
    }
    for (std::size_t i = 0; i <= base; ++i)
        if (!((*chain.links[i].plugin)->capabilities & CAP_CONVERT))
            return keys_first("Could not open '" + chain.links[i].name + "': instar cannot read the data of " +
                              std::string((*chain.links[i].plugin)->name) + " images yet");
    // A dirty qcow2 base is repaired too, silently: qemu's reopen of the base for writing skips the
    // repair, writes, and clears the dirty bit over refcounts still wrong (a corrupt base); instar
    // writes into a repaired one (divergence qcow2-commit-dirty-base).
    if (base != 0 && needs_dirty_repair(chain.links[base].node))
        if (auto ok = repair(base, nullptr); !ok)
            return Error{ok.error()};
    const ChainLink& top = chain.links.front();
    const ChainLink& base_link = chain.links[base];
    // The keys of the encrypted images are unlocked by the copy's run before it writes anything; a
    // base that must grow is written before that run, so then they are unlocked first, as qemu's open
    // does (a missing or wrong secret fails with nothing written).
    if (base_link.node.virtual_size < top.node.virtual_size)
        if (auto keys = unlock_chain(chain, chain.links.size(), spec.filename, sandbox, qemu_version); !keys)
            return Error{keys.error()};

    // qemu's active commit first grows a smaller base to the top's size (mirror_run:
    // blk_co_truncate); instar through the format's in-place resize (EditCommand::Resize). A crash
    // after it leaves a larger base whose new tail reads as zeros, as the top read it before. A base
    // with a backing image of its own that reaches past its end (down a chain) gets the grown area
    // zeroed, as bdrv_co_truncate asks qemu's driver to (BDRV_REQ_ZERO_WRITE): else the backing
    // image's data would show there, where the top read zeros.
    std::uint64_t base_file_size = base_link.image.size;
    if (base_link.node.virtual_size < top.node.virtual_size) {
        guest::ResizeArgs r{};
        r.new_size = top.node.virtual_size;
        r.old_size = base_link.node.virtual_size;
        r.prealloc = static_cast<std::uint32_t>(guest::Prealloc::Off);
        r.flags = guest::RESIZE_THEN_WRITTEN;
        const ChainLink* below = base + 1 < chain.links.size() ? &chain.links[base + 1] : nullptr;
        if (below != nullptr) {
            r.flags |= guest::RESIZE_HAS_BACKING;
            r.backing_size = below->node.virtual_size;
        }
        EditCall call;
        call.link = &base_link;
        call.filename = base_link.name;
        call.command = guest::EditCommand::Resize;
        append_bytes(call.args, &r, 1);
        // An encrypted base's key (unlocked above): the zeros a grow over a longer backing image
        // writes are guest data (qcow2's copy-on-write head cluster).
        if (base_link.secret)
            call.secrets = {base_link.secret};
        auto grown = run_edit(call, sandbox, qemu_version);
        const std::string head_text = "instar cannot grow the base image '" + base_link.name + "' (" +
                                      std::to_string(base_link.node.virtual_size) + " bytes) to the size of '" +
                                      spec.filename + "' (" + std::to_string(top.node.virtual_size) + " bytes): ";
        if (!grown)
            return Error{head_text + grown.error()};
        // The format asked for bytes of the base's backing chain (the cluster or grain holding the
        // old end, which the zeroing copies on write) and wrote nothing: read in a sandbox of their
        // own, then the grow runs again with them (as resize does).
        std::vector<ImageRange> asked;
        if (below != nullptr) {
            auto bytes = read_asked_bytes_of(*grown, *below, spec.allow_paths, spec.unsafe_quirks, plugins, sandbox,
                                             qemu_version);
            if (!bytes)
                return Error{head_text + bytes.error()};
            asked = std::move(*bytes);
        }
        if (!asked.empty()) {
            r.flags |= guest::RESIZE_BACKING_BYTES;
            call.args.clear();
            append_bytes(call.args, &r, 1);
            call.extra = range_devices(asked);
            grown = run_edit(call, sandbox, qemu_version);
            if (!grown)
                return Error{head_text + grown.error()};
        }
        if (grown->status != guest::Status::Ok)
            return Error{head_text + (grown->reason.empty() ? status_message(grown->status) : grown->reason)};
        struct stat st {};
        if (::stat(base_link.image.path.c_str(), &st) != 0)
            return Error{"Could not open '" + base_link.name + "': " + std::strerror(errno)};
        base_file_size = static_cast<std::uint64_t>(st.st_size);
        // The table below gives the base's reader the file as it is now.
        chain.links[base].image.size = base_file_size;
        chain.links[base].node.virtual_size = top.node.virtual_size;
    }
    ImageTable table; // device 0: the plan
    auto top_index = table.add_chain(chain);
    if (!top_index)
        return Error{top_index.error()};
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file);
    if (!secrets_device)
        return Error{secrets_device.error()};
    if (auto ok = table.check_limits("commit"); !ok)
        return Error{ok.error()};

    Fd base_fd;
    if (auto ok = reopen_base(base_link, base_file_size, base_fd); !ok)
        return Error{ok.error()};
    if (cache_is_direct(spec.cache))
        if (auto ok = AtomicFiles::make_direct(base_fd.fd, base_link.name); !ok)
            return Error{ok.error()};
    std::vector<Fd> base_files(base_link.files.size());
    std::vector<std::uint64_t> base_file_lengths;
    if (auto ok = reopen_base_files(base_link, cache_is_direct(spec.cache), base_files, base_file_lengths); !ok)
        return Error{ok.error()};
    instar_commit_plan head{};
    head.magic = INSTAR_COMMIT_PLAN_MAGIC;
    head.image_count = static_cast<std::uint32_t>(table.images.size());
    head.base = static_cast<std::uint32_t>(base);
    head.target_device = static_cast<std::uint32_t>(table.devices.size());
    head.base_length = base_file_size;
    head.flags = (spec.progress || spec.rate_limit != 0 ? INSTAR_COMMIT_PROGRESS : 0u) |
                 (base_files.empty() ? 0u : INSTAR_COMMIT_BASE_FILES);
    head.qemu_version = qemu_version;
    // raw's base is its data: a fixed-size device (to its last whole sector), as convert -n's target.
    const bool fixed = base_link.node.format == "raw";
    table.devices.push_back(fixed ? vmm::Device{base_fd.fd, (base_file_size + 511) / 512 * 512, true, false}
                                  : vmm::output_device(base_fd.fd));
    table.devices.back().direct = cache_is_direct(spec.cache);
    table.devices.back().early_writeback = cache_flushes(spec.cache);
    table.devices.back().flush_ignored = !cache_flushes(spec.cache);
    // The base's other files follow its device as outputs (a sparse extent grows), their lengths
    // after the image table (INSTAR_COMMIT_BASE_FILES), as convert -n's target's.
    for (const Fd& f : base_files) {
        table.devices.push_back(vmm::output_device(f.fd));
        table.devices.back().direct = cache_is_direct(spec.cache);
        table.devices.back().early_writeback = cache_flushes(spec.cache);
        table.devices.back().flush_ignored = !cache_flushes(spec.cache);
    }
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, table.images.data(), table.images.size());
    if (!base_files.empty()) {
        const std::uint64_t count = base_files.size();
        append_bytes(bytes, &count, 1);
        append_bytes(bytes, base_file_lengths.data(), base_file_lengths.size());
    }
    PlanFile plan_file;
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    table.devices[0] = *plan_device;
    if (auto ok = table.check_limits("commit"); !ok)
        return Error{ok.error()};

    const std::uint64_t size = top.node.virtual_size;
    auto budget = COMMIT_BASE_TIMEOUT + std::chrono::seconds(size / COMMIT_BYTES_PER_SECOND);
    if (spec.rate_limit != 0)
        budget += std::chrono::seconds(size / spec.rate_limit + 1);
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    // -r: the guest reports the bytes copied so far after each request; the host (the caller's thread)
    // holds it there until those bytes fit the rate, as qemu's block-job throttle does.
    const auto started = std::chrono::steady_clock::now();
    if (head.flags & INSTAR_COMMIT_PROGRESS)
        sandbox.progress = [&](std::uint64_t done, std::uint64_t all) {
            if (spec.rate_limit != 0)
                std::this_thread::sleep_until(started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                            std::chrono::duration<double>(
                                                                static_cast<double>(done) /
                                                                static_cast<double>(spec.rate_limit))));
            if (spec.progress)
                spec.progress(done, all);
        };
    // The host writes the copied runs while the guest reads the next (docs/sandbox.md,
    // "Write-behind"); the base's metadata writes queue behind them, so their order is unchanged.
    sandbox.write_behind = vmm::write_behind_requested();
    const instar_commit_arg arg{0, *secrets_device};
    // SAFETY: instar_commit_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    auto run = vmm::run(sandbox, table.devices, table.modules, INSTAR_OP_COMMIT, {a, sizeof arg});
    if (!run)
        return Error{"Error while committing: " + run.error().message};
    if (run->exit_status != 0 || !run->host_error.empty())
        return Error{failure_message(table.links, run.value(), spec.filename)};
    // The data is in the base before the top loses it: a crash from here on finds it there.
    if (cache_flushes(spec.cache) && ::fsync(base_fd.fd) != 0)
        return Error{"Could not flush '" + base_link.name + "': " + std::strerror(errno)};
    for (std::size_t i = 0; i < base_files.size() && cache_flushes(spec.cache); ++i)
        if (::fsync(base_files[i].fd) != 0)
            return Error{"Could not flush '" + base_link.files[i].display + "': " + std::strerror(errno)};

    if (spec.drop || !can_make_empty(top))
        return true;
    EditCall call;
    call.link = &top;
    call.filename = spec.filename;
    call.command = guest::EditCommand::MakeEmpty;
    call.flush = cache_flushes(spec.cache); // -t applies to the whole chain, the top included
    auto emptied = run_edit(call, sandbox, qemu_version);
    if (!emptied)
        return Error{emptied.error()};
    if (emptied->status != guest::Status::Ok) {
        const std::string why =
            emptied->reason.empty() ? status_message(emptied->status) : emptied->reason;
        return Error{"Failed to empty " + top.image.display + ": " + why};
    }
    return true;
}

} // namespace instar
