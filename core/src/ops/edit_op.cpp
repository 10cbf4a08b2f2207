// INSTAR_OP_EDIT on the host: open, reopen for writing, run, decode (docs/edit.md).
#include "ops/edit_op.h"

#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"

#include <instar/guest/edit_resize_file.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace instar {

namespace {

// An edit given secrets derives keys before it works: unlocking at the image's own iteration counts
// (qemu's default iter-time is 2 s per key slot tried) and, for amend's new key slot, calibrating and
// deriving for iter-time. The sandbox's parsing budget (10 s) is far too short for that on a loaded
// machine (amend's new key slot ran out at load 4 here): this much more time, the allowance create
// and convert give an encrypted target.
constexpr std::chrono::milliseconds EDIT_KEY_DERIVATION_TIME{120'000};

// An edit that walks or rewrites the image's metadata (amend's refcount_bits and compat changes)
// does work in proportion to the files' size: one second per 16 MiB of them, convert's copying
// rate, far slower than any disk; a hostile image still holds the sandbox only as long as its files
// are big.
constexpr std::uint64_t EDIT_BYTES_PER_SECOND = 16u << 20;
// The RAM an edit's guest starts with (SandboxConfig::start_memory), growing to the cap when it
// asks: most edits change a few tables (a qcow2 1T -> 2T resize touches well under 1 MiB), and a
// 16 MiB VM is made faster than one of 256 MiB (its memslot: docs/sandbox.md), which was 6% of that
// resize. An edit cannot be run again with more RAM once it has written, so it grows instead.
constexpr std::uint64_t EDIT_START_MEMORY = INSTAR_MIN_GUEST_MEMORY;

// An edit opens its image as info does, with these options.
InfoOptions info_options(const EditOpen& opts) {
    InfoOptions io;
    io.filename = opts.filename;
    io.format = opts.format;
    io.allow_paths = opts.allow_paths;
    io.unsafe_quirks = opts.unsafe_quirks;
    io.backing_chain = opts.backing_chain;
    io.read_write = opts.read_write;
    io.opens_without_key = opts.opens_without_key;
    io.backing_in_one_node = true;
    io.backing_keys = opts.backing_keys;
    return io;
}

} // namespace

Expected<vmm::UniqueFd> reopen_writable(const OpenedFile& f, const std::string& filename) {
    vmm::UniqueFd rw(::open(f.path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!rw.valid()) {
        const std::string why = std::strerror(errno);
        return Error{"Could not open '" + filename + "': Could not open '" + f.display + "': " + why};
    }
    struct stat st {};
    if (::fstat(rw.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_dev) != f.device ||
        static_cast<std::uint64_t>(st.st_ino) != f.inode || static_cast<std::uint64_t>(st.st_size) != f.size)
        return Error{"Could not open '" + filename + "': the file changed while it was being inspected"};
    return rw;
}

void append_guest_text(std::string& out, const std::uint8_t* data, std::size_t len) {
    for (std::size_t i = 0; i < len; ++i) {
        const auto c = data[i];
        const bool line_start = out.empty() || out.back() == '\n';
        if (c == 0x01 && line_start)
            out.push_back('\x01');
        else
            out.push_back(c == '\n' || (c >= 0x20 && c != 0x7f) ? static_cast<char>(c) : '?');
    }
}

Expected<bool> open_for_edit(const EditOpen& opts, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                             std::uint32_t qemu_version, OpenedChain& chain) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};
    InfoOptions io = info_options(opts);
    // An overlay of plain images inspected in one start; else the first inspection (the top image,
    // no files yet) was run by try_quick_edit.
    auto opened = opts.prefetched == nullptr
                      ? open_chain_at_once(io, plugins, sandbox, qemu_version, *runner, chain)
                      : open_chain(io, plugins, with_prefetched(*runner, *opts.prefetched), chain);
    // qemu's read-write open refuses a corrupt image before anything else (and before a repair).
    if (opened && opts.read_write && !chain.links.empty() && refuses_read_write(chain.links.front().node))
        return Error{read_write_refusal(chain.links.front().name)};
    if (!opened || !opts.read_write || !opts.repair_dirty || chain.links.empty() ||
        !needs_dirty_repair(chain.links.front().node))
        return opened;
    if (auto repaired = repair_dirty_image({opts.filename, chain.links.front().name, opts.allow_paths,
                                            opts.unsafe_quirks, opts.secret, opts.repair_dirty},
                                           plugins, sandbox, qemu_version);
        !repaired)
        return Error{repaired.error()};
    chain.close();
    return open_chain_at_once(io, plugins, sandbox, qemu_version, *runner, chain);
}

Expected<EditReport> decode_edit_records(std::span<const vmm::Record> records) {
    EditReport out;
    for (const auto& rec : records) {
        if (rec.type != INSTAR_REC_EDIT)
            return Error{"the sandbox sent an unexpected record type " + std::to_string(rec.type)};
        instar_edit_record_head head{};
        if (rec.data.size() < sizeof head)
            return Error{"the sandbox sent a truncated edit record"};
        std::memcpy(&head, rec.data.data(), sizeof head);
        const std::uint8_t* body = rec.data.data() + sizeof head;
        const std::size_t len = rec.data.size() - sizeof head;
        switch (head.kind) {
        case INSTAR_EDIT_STDOUT: append_guest_text(out.out, body, len); break;
        case INSTAR_EDIT_STDERR: append_guest_text(out.err, body, len); break;
        case INSTAR_EDIT_STARTED: out.started = true; break;
        case INSTAR_EDIT_REASON:
            out.reason.clear();
            append_guest_text(out.reason, body, len);
            break;
        default:
            if (head.kind < INSTAR_EDIT_COMMAND_DATA)
                return Error{"the sandbox sent an unknown edit record kind " + std::to_string(head.kind)};
            out.data.emplace_back(head.kind, std::vector<std::uint8_t>(body, body + len));
        }
    }
    // A reason is one line: no newline may make it look like two messages.
    for (auto& c : out.reason)
        if (c == '\n' || c == '\x01')
            c = ' ';
    return out;
}

Expected<EditReport> run_edit(const EditCall& call, const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    const ChainLink& link = *call.link;
    auto module = guest_module_path(*link.plugin);
    if (!module)
        return Error{module.error()};
    if (call.args.size() > guest::EDIT_MAX_ARGS)
        return Error{"the command's arguments are too long for the sandbox (EDIT_MAX_ARGS)"};
    std::vector<vmm::UniqueFd> rw;
    std::vector<vmm::Device> devices;
    auto add = [&](const OpenedFile& f) -> Expected<bool> {
        if (!call.write) {
            devices.push_back({f.fd, f.size, false});
            return true;
        }
        auto fd = reopen_writable(f, call.filename);
        if (!fd)
            return Error{fd.error()};
        devices.push_back(vmm::output_device(fd->get()));
        // Edits flush what they wrote (before each switch, at the end), unless -t unsafe.
        devices.back().early_writeback = call.flush;
        devices.back().flush_ignored = !call.flush;
        rw.push_back(std::move(*fd));
        return true;
    };
    if (call.image_fd >= 0) {
        devices.push_back(vmm::output_device(call.image_fd));
        devices.back().early_writeback = call.flush;
        devices.back().flush_ignored = !call.flush;
    } else if (auto ok = add(link.image); !ok) {
        return Error{ok.error()};
    }
    for (const auto& f : link.files)
        if (auto ok = add(f); !ok)
            return Error{ok.error()};
    for (const auto& d : call.extra)
        devices.push_back({d.fd, d.size, false});

    instar_edit_arg a{};
    a.command = static_cast<std::uint32_t>(call.command);
    a.qemu_version = qemu_version;
    a.file_count = static_cast<std::uint32_t>(link.files.size());
    a.extra_count = static_cast<std::uint32_t>(call.extra.size());
    a.flags = (call.write ? INSTAR_EDIT_WRITE : 0u) | call.flags;
    a.args_len = static_cast<std::uint32_t>(call.args.size());
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    a.unix_time = std::chrono::duration_cast<std::chrono::seconds>(now).count();
    a.unix_nsec = static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() %
                                             1'000'000'000);
    if (::getrandom(a.random, sizeof a.random, 0) != static_cast<ssize_t>(sizeof a.random))
        return Error{std::string("cannot read random bytes: ") + std::strerror(errno)};
    // The files' lengths and the command's bytes: after the struct in the argument when they fit
    // (INSTAR_EDIT_PLAN_INLINE: a resize's 40 bytes), else in a sealed plan device (INSTAR_MAX_OP_ARG
    // is 2 KiB; a 500-extent vmdk's lengths alone are 4 KiB). The device cost a sealed file and the
    // guest's read of it, an exit.
    std::vector<std::uint8_t> plan_bytes;
    append_bytes(plan_bytes, &link.image.size, 1);
    for (const auto& f : link.files)
        append_bytes(plan_bytes, &f.size, 1);
    plan_bytes.insert(plan_bytes.end(), call.args.begin(), call.args.end());
    a.plan_device = static_cast<std::uint32_t>(devices.size());
    const bool inline_plan = sizeof a + plan_bytes.size() <= INSTAR_MAX_OP_ARG;
    PlanFile plan;
    if (inline_plan) {
        a.flags |= INSTAR_EDIT_PLAN_INLINE;
    } else {
        auto plan_device = plan.write(plan_bytes);
        if (!plan_device)
            return Error{plan_device.error()};
        devices.push_back(*plan_device);
    }
    if (call.secrets.size() > guest::EDIT_MAX_SECRETS)
        return Error{"too many secrets for an edit (EDIT_MAX_SECRETS)"};
    std::vector<std::pair<std::uint32_t, const std::string*>> secrets;
    for (std::size_t i = 0; i < call.secrets.size(); ++i)
        secrets.emplace_back(static_cast<std::uint32_t>(i), call.secrets[i] ? &*call.secrets[i] : nullptr);
    PlanFile secrets_file;
    auto secrets_device = write_secrets(secrets_file, secrets);
    if (!secrets_device)
        return Error{secrets_device.error()};
    if (*secrets_device) { // the device after the plan's place
        devices.push_back(**secrets_device);
        a.flags |= INSTAR_EDIT_SECRETS;
    }
    std::vector<std::uint8_t> arg;
    append_bytes(arg, &a, 1);
    if (inline_plan)
        arg.insert(arg.end(), plan_bytes.begin(), plan_bytes.end());

    vmm::SandboxConfig config = sandbox;
    if (call.timeout.count() > 0 && config.timeout < call.timeout)
        config.timeout = call.timeout;
    std::uint64_t file_bytes = link.image.size;
    for (const auto& f : link.files)
        file_bytes += f.size;
    config.timeout += std::chrono::seconds(file_bytes / EDIT_BYTES_PER_SECOND);
    if (*secrets_device)
        config.timeout += EDIT_KEY_DERIVATION_TIME;
    config.start_memory = EDIT_START_MEMORY;
    config.outputs = call.outputs;
    if (call.progress)
        config.progress = call.progress;
    const std::vector<std::string> modules{*module};
    auto run = vmm::run(config, devices, modules, INSTAR_OP_EDIT, arg);
    if (!run)
        return Error{run.error().message};
    std::vector<std::vector<std::uint8_t>> infos(1);
    if ((call.flags & INSTAR_EDIT_INFO_FIRST) != 0) {
        // Untrusted. With INSTAR_EDIT_INFO_CHAINS each inspection ends with INSTAR_REC_INFO_END.
        const bool chains = (call.flags & INSTAR_EDIT_INFO_CHAINS) != 0;
        std::vector<vmm::Record> edit_records;
        for (auto& rec : run->records) {
            if (rec.type == INSTAR_REC_INFO)
                infos.back().insert(infos.back().end(), rec.data.begin(), rec.data.end());
            else if (chains && rec.type == INSTAR_REC_INFO_END && rec.data.empty() && edit_records.empty())
                infos.emplace_back();
            else
                edit_records.push_back(std::move(rec));
        }
        run->records = std::move(edit_records);
        if (chains && infos.back().empty() && infos.size() > 1)
            infos.pop_back(); // the last inspection was closed
    }
    auto report = decode_edit_records(run->records);
    if (!report)
        return Error{report.error()};
    report->status = static_cast<guest::Status>(run->exit_status);
    if ((call.flags & INSTAR_EDIT_INFO_FIRST) != 0)
        report->infos = std::move(infos);
    // The file length the host could not set (raw, luks): qemu names the errno.
    if (run->host_errno != 0 && report->reason == guest::RESIZE_FILE_REFUSED)
        report->reason = std::string("Could not resize file: ") + std::strerror(run->host_errno);
    return report;
}

Expected<bool> try_quick_edit(const QuickEdit& quick, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                              std::uint32_t qemu_version, OpenedChain& chain, EditReport& report) {
    const EditOpen& eo = quick.open;
    InfoOptions io = info_options(eo);
    FirstImage first;
    if (!open_first_image(io, plugins, sandbox, first))
        return false;
    // A read-only format's refusal is worded by the ordinary path (open_chain).
    if ((quick.accept && !quick.accept(*first.plugin)) || ((*first.plugin)->capabilities & CAP_READ_ONLY))
        return false;
    auto rw = reopen_writable(first.file, quick.filename);
    if (!rw)
        return false;
    ChainLink link{first.file, {}, first.plugin, {}, eo.filename, {}};
    EditCall call;
    call.link = &link;
    call.filename = quick.filename;
    call.command = quick.command;
    call.args = quick.args;
    call.image_fd = rw->get();
    call.outputs = quick.outputs;
    call.flush = quick.flush;
    call.flags = INSTAR_EDIT_INFO_FIRST | (eo.format ? INSTAR_EDIT_INFO_FORCE : 0u) |
                 (eo.opens_without_key ? INSTAR_EDIT_INFO_NO_KEY : 0u);
    // A command that opens the backing chain (resize, snapshot) opens it in this start too, where
    // every level is a plain image of the top's format (info_first.h's ChainFiles).
    QuickRead walk;
    walk.images = {io};
    const FirstImage* firsts[1] = {&first};
    std::vector<std::string> modules;
    if (auto m = guest_module_path(*first.plugin))
        modules.push_back(*m);
    ChainFiles chain_files(walk, firsts, plugins, modules, quick.outputs);
    if (io.backing_chain && !modules.empty()) {
        call.flags |= INSTAR_EDIT_INFO_CHAINS;
        call.outputs = &chain_files;
    } else if (!io.backing_chain) {
        call.flags |= INSTAR_EDIT_INFO_NO_BACKING; // (bitmap: qemu-img opens the image alone)
    }
    auto ran = run_edit(call, sandbox, qemu_version);
    if (!ran)
        return Error{ran.error()};
    if (!ran->started) {
        // The inspection succeeded (or asked for the image's files): the ordinary path's first one.
        keep_inspection(ran->infos.front(), ran->status, first, eo.format.has_value(), quick.prefetched);
        return false;
    }
    // The chain as open_for_edit opens it, from the inspections (the image's alone without chains).
    if (ran->infos.size() != chain_files.total_inspections())
        return Error{"the sandbox sent " + std::to_string(ran->infos.size()) + " inspections for " +
                     std::to_string(chain_files.total_inspections()) + " images"};
    if (auto ok = chain_files.replay(0, ran->infos, chain, nullptr); !ok)
        return Error{ok.error()};
    report = std::move(*ran);
    return true;
}

} // namespace instar
