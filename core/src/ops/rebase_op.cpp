// rebase's safe mode on the host: the new backing chain opened, INSTAR_OP_REBASE run (rebase_op.h).
#include "ops/rebase_op.h"

#include "ops/cache_mode.h"
#include "ops/dirty_repair.h"

#include "ops/edit_op.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace instar {
namespace {

// The walk runs at disk speed; as compare's watchdog: a minute plus a second per 16 MiB of the image.
constexpr std::chrono::milliseconds REBASE_BASE_TIMEOUT{60'000};
constexpr std::uint64_t REBASE_BYTES_PER_SECOND = 16u << 20;

} // namespace

Expected<bool> rebase_copy(const RebaseSpec& spec, const PluginRegistry& plugins, const vmm::SandboxConfig& config,
                           std::uint32_t qemu_version) {
    auto runner = make_sandbox_info_runner(config, qemu_version);
    if (!runner)
        return Error{runner.error()};
    const OpenedChain& image = *spec.chain;
    const ChainLink& top = image.links.front();
    // qemu opens the image read-write first: a corrupt one fails there, before the new backing file
    // is looked at (the copy's writer refuses it too, in the same words).
    if (refuses_read_write(top.node))
        return Error{read_write_refusal(top.name)};

    // The new backing file with its chain, named relative to the image as qemu resolves it.
    OpenedChain fresh;
    if (!spec.new_backing.empty()) {
        // bdrv_get_full_backing_filename_from_filename: an image qemu names by a json: filename (an
        // --image-opts or json: name with strong options, a secret) has no directory.
        if (spec.new_backing[0] != '/' && !has_protocol(spec.new_backing) && spec.display.rfind("json:", 0) == 0)
            return Error{"Could not resolve backing filename: Cannot use relative backing file names for '" +
                         spec.display + "'"};
        InfoOptions io;
        // A relative name is relative to the image's directory; an absolute or protocol name stays
        // (a file: name then opens from the working directory, as qemu's does).
        io.filename = spec.new_backing_file.empty() ? full_backing_filename(spec.path, spec.new_backing)
                                                    : spec.new_backing_file;
        io.format = spec.new_backing_format;
        io.backing_chain = true;
        io.unsafe_quirks = spec.unsafe_quirks;
        io.allow_paths = spec.allow_paths;
        if (auto opened = open_chain_at_once(io, plugins, config, qemu_version, *runner, fresh); !opened) {
            // qemu's blk_new_open error has no "Could not open 'NAME': " frame of its own.
            std::string why = opened.error();
            const std::string frame = "Could not open '" + io.filename + "': ";
            if (why.rfind(frame, 0) == 0)
                why = why.substr(frame.size());
            return Error{"Could not open new backing file '" + spec.new_backing + "': " + why};
        }
        ChainLink& fresh_top = fresh.links.front();
        if (fresh_top.node.encrypted.value_or(false)) {
            if (!spec.new_backing_secret_error.empty())
                return Error{"Could not open new backing file '" + spec.new_backing + "': " +
                             spec.new_backing_secret_error};
            fresh_top.secret = spec.new_backing_secret;
        }
    }

    // Only qcow2 and formats declaring CAP_REBASE (an open_writer and the SetBacking edit) can take
    // the data and then the new name: every other format's switch fails with ENOTSUP (qemu-img
    // copies first, then fails; instar leaves the image alone: docs/rebase.md).
    if (top.node.format != "qcow2" && !((*top.plugin)->capabilities & CAP_REBASE))
        return true;
    for (const OpenedChain* c : {&image, static_cast<const OpenedChain*>(&fresh)})
        for (const auto& link : c->links)
            if (!((*link.plugin)->capabilities & CAP_CONVERT))
                return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                             std::string((*link.plugin)->name) + " images yet"};

    ImageTable table; // device 0: the plan; the image, writable, and its other files go last
    auto image_index = table.add_chain(image);
    if (!image_index)
        return Error{image_index.error()};
    std::uint32_t new_top = INSTAR_CONVERT_NO_BACKING;
    if (!fresh.links.empty()) {
        auto idx = table.add_chain(fresh);
        if (!idx)
            return Error{idx.error()};
        new_top = *idx;
    }
    if (*image_index != 0)
        return Error{"rebase: the image is not the plan's first entry"};
    // The links' secrets (the image's, set by the caller): the guest's readers unlock with them, and
    // the writer over the image uses entry 0's.
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file);
    if (!secrets_device)
        return Error{secrets_device.error()};
    if (auto ok = table.check_limits("rebase"); !ok)
        return Error{ok.error()};

    auto rw = reopen_writable(top.image, spec.filename);
    if (!rw)
        return Error{rw.error()};
    const auto write_device = static_cast<std::uint32_t>(table.devices.size());
    table.devices.push_back(vmm::output_device(rw->get()));
    // The guest flushes every written file at the end, unless -t unsafe.
    table.devices.back().early_writeback = cache_flushes(spec.cache);
    table.devices.back().flush_ignored = !cache_flushes(spec.cache);
    // The image's other files (a qcow2 data file, vmdk extents), reopened the same way, follow it as
    // outputs, their lengths after the image table (INSTAR_REBASE_IMAGE_FILES), as commit's base's.
    std::vector<vmm::UniqueFd> files;
    std::vector<std::uint64_t> file_lengths;
    for (const OpenedFile& f : top.files) {
        auto fd = reopen_writable(f, spec.filename);
        if (!fd)
            return Error{fd.error()};
        table.devices.push_back(vmm::output_device(fd->get()));
        table.devices.back().early_writeback = cache_flushes(spec.cache);
        table.devices.back().flush_ignored = !cache_flushes(spec.cache);
        file_lengths.push_back(f.size);
        files.push_back(std::move(*fd));
    }
    if (auto ok = table.check_limits("rebase"); !ok)
        return Error{ok.error()};

    instar_rebase_plan head{};
    head.magic = INSTAR_REBASE_PLAN_MAGIC;
    head.image_count = static_cast<std::uint32_t>(table.images.size());
    head.flags = (spec.progress ? INSTAR_REBASE_PROGRESS : 0u) | (spec.compress ? INSTAR_REBASE_COMPRESS : 0u) |
                 (files.empty() ? 0u : INSTAR_REBASE_IMAGE_FILES);
    head.qemu_version = qemu_version;
    head.new_backing = new_top;
    head.write_device = write_device;
    head.image_length = top.image.size;
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, table.images.data(), table.images.size());
    if (!files.empty()) {
        const std::uint64_t count = files.size();
        append_bytes(bytes, &count, 1);
        append_bytes(bytes, file_lengths.data(), file_lengths.size());
    }
    PlanFile plan_file;
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    table.devices[0] = *plan_device;

    vmm::SandboxConfig sandbox = config;
    const auto budget = REBASE_BASE_TIMEOUT + std::chrono::seconds(top.node.virtual_size / REBASE_BYTES_PER_SECOND);
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    if (spec.progress)
        sandbox.progress = spec.progress;
    const instar_rebase_arg arg{0, *secrets_device};
    // SAFETY: instar_rebase_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    // The host writes the copied clusters while the guest reads and compares the next chunk
    // (docs/sandbox.md, "Write-behind"); the image's metadata writes queue behind them, in order.
    sandbox.write_behind = vmm::write_behind_requested();
    auto run = vmm::run(sandbox, table.devices, table.modules, INSTAR_OP_REBASE, {a, sizeof arg});
    if (!run)
        return Error{"Error while writing to COW image: " + run.error().message};

    // Untrusted: exactly one well-formed record.
    std::string reason;
    std::optional<instar_rebase_record> rec;
    bool bad = false;
    for (const auto& r : run->records) {
        if (r.type == INSTAR_REC_REASON && reason.empty())
            reason = printable_reason(std::string(r.data.begin(), r.data.end()));
        else if (r.type == INSTAR_REC_REBASE) {
            if (rec || r.data.size() != sizeof(instar_rebase_record)) {
                bad = true;
                continue;
            }
            instar_rebase_record c{};
            std::memcpy(&c, r.data.data(), sizeof c);
            rec = c;
        }
    }
    if (!run->host_error.empty())
        return Error{"Error while writing to COW image: " + run->host_error};
    if (run->exit_status != 0 || !rec || bad) {
        const std::string why =
            reason.empty() ? status_message(static_cast<guest::Status>(run->exit_status)) : reason;
        return Error{"Error while writing to COW image: " + why};
    }
    switch (rec->outcome) {
    case INSTAR_REBASE_DONE:
        return true;
    case INSTAR_REBASE_OPEN_FAILED: {
        if (rec->image >= table.links.size())
            return Error{"rebase: the sandbox sent an invalid record"};
        const std::string& name = table.links[rec->image]->name;
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, name);
        // qemu opens each chain from its top: a backing file's failure is prefixed once per level
        // (bdrv_open_backing_file), under the image's or the new backing file's own frame (a key
        // the images' options gave no secret for fails here: qemu's open errors).
        const bool in_new = new_top != INSTAR_CONVERT_NO_BACKING && rec->image >= new_top;
        const std::uint32_t depth = in_new ? rec->image - new_top : rec->image;
        std::string why;
        for (std::uint32_t i = 0; i < depth; ++i)
            why += "Could not open backing file: ";
        why += reason;
        if (in_new)
            return Error{"Could not open new backing file '" + spec.new_backing + "': " + why};
        return Error{"Could not open '" + (rec->image == 0 ? name : spec.filename) + "': " + why};
    }
    case INSTAR_REBASE_STATUS_FAILED:
        return Error{"error while reading image metadata: Input/output error"};
    case INSTAR_REBASE_READ_OLD:
        return Error{"error while reading from old backing file"};
    case INSTAR_REBASE_READ_NEW:
        return Error{"error while reading from new backing file"};
    case INSTAR_REBASE_WRITE:
        return Error{"Error while writing to COW image: " + (reason.empty() ? std::string("Input/output error") : reason)};
    default:
        return Error{"rebase: the sandbox sent an invalid record"};
    }
}

} // namespace instar
