// convert's host side: sources and chains opened, the plan written, one sandbox run, atomic commit.
#include "ops/convert_op.h"
#include "ops/dirty_repair.h"

#include "ops/atomic_output.h"
#include "ops/cache_mode.h"
#include "ops/edit_op.h"
#include "ops/guest_info_runner.h"
#include "ops/open_replay.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/info_op.h"

#include <instar/guest/dd_window.h>
#include <instar/guest/edit_bitmap.h>
#include <instar/guest/write_api.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

namespace instar {
namespace {

// Copying runs at disk speed, not parsing speed. The watchdog still bounds a guest that stops making
// progress: a minute, plus one second per 16 MiB of virtual disk (far slower than any disk), so a
// hostile image claiming petabytes cannot keep a sandbox for long unless it really holds the data.
constexpr std::chrono::milliseconds CONVERT_BASE_TIMEOUT{60'000};
constexpr std::uint64_t CONVERT_BYTES_PER_SECOND = 16u << 20;

struct Plan {
    instar_convert_plan head{};
    std::vector<std::uint8_t> create;
    std::string snapshot;

    std::vector<std::uint8_t> bytes(const std::vector<instar_convert_image>& images) const {
        std::vector<std::uint8_t> out;
        append_bytes(out, &head, 1);
        append_bytes(out, images.data(), images.size());
        out.insert(out.end(), create.begin(), create.end());
        out.insert(out.end(), snapshot.begin(), snapshot.end());
        return out;
    }
};

// dd: a reason that is not the engine's own ("error while reading at byte N: ERRNO") is a format's
// account of a damaged input, which qemu's driver reports as a corruption event before img_dd's line.
bool engine_reason(const std::string& reason) {
    return reason.rfind("error while reading", 0) == 0 || reason.rfind("error while writing", 0) == 0;
}

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
    // qemu-img fails without a word when the write that ends a -c convert fails (write_api.h).
    if (reason.rfind(guest::CONVERT_END_OF_STREAM_FAILED, 0) == 0)
        return {};
    const auto status = static_cast<guest::Status>(run.exit_status);
    if (reason.empty())
        reason = status_message(status);
    const std::string& target = spec.target.filename;
    const std::string fmt = (*spec.target.plugin)->name;
    if (spec.dd) {
        // img_dd's words: creation, then a block's read or write; the engine's reason ends in the
        // errno text qemu's strerror gives.
        if (!run.host_error.empty())
            return "error while writing to output image file: " + run.host_error;
        if (failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN && failure->image < table.size()) {
            const std::string& name = table[failure->image]->name;
            for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
                reason.replace(at, 7, name);
            return "Could not open '" + name + "': " + reason;
        }
        if (failure && failure->phase == INSTAR_CONVERT_PHASE_CREATE)
            return target + ": error while creating output image: " + reason;
        const auto colon = reason.rfind(": ");
        const std::string why = engine_reason(reason) && colon != std::string::npos
                                    ? reason.substr(colon + 2)
                                    : std::string(status_errno_text(run.exit_status));
        if (reason.rfind("error while writing", 0) == 0)
            return "error while writing to output image file: " + why;
        return "error while reading from input image file: " + why;
    }
    if (!run.host_error.empty())
        return target + ": error while converting " + fmt + ": " + run.host_error;
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN && failure->image == INSTAR_CONVERT_NO_BACKING &&
        spec.existing_target) {
        if (reason.find("existing image of this format") != std::string::npos) {
            // A read-only qemu driver (CAP_READ_ONLY: bochs, cloop, dmg) fails its read-write open.
            const FormatDescriptor& d = **spec.target.plugin;
            reason = (d.capabilities & CAP_READ_ONLY) != 0
                         ? std::string("Image is read-only")
                         : "instar cannot write into an existing " + fmt + " image yet (convert -n)";
        }
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, target);
        return "Could not open '" + target + "': " + reason;
    }
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN && failure->image < table.size()) {
        const std::string& name = table[failure->image]->name;
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, name);
        if (failure->image == 0 && reason.rfind(guest::SNAPSHOT_LOAD_FAILED, 0) == 0)
            return reason; // -l's snapshot, after the open (an open error keeps its frame)
        return "Could not open '" + name + "': " + reason;
    }
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_CREATE)
        return target + ": error while converting " + fmt + ": " + reason;
    // The target refused a write (e.g. -n -c over an allocated cluster): qemu-img's words alone,
    // since no source is at fault.
    // (After any lines qemu error_reports first: '\x01' LINE '\n', printed by report_error.)
    const std::size_t last_line = reason.rfind('\n');
    const std::size_t last = last_line == std::string::npos ? 0 : last_line + 1;
    if (reason.compare(last, 28, "error while writing at byte ") == 0)
        return reason;
    // The engine's words for a read that failed with an errno and no reason of the format's (vmdk's
    // parentCID check): qemu-img's lines exactly, as its convert coroutines report them.
    if (reason.compare(last, 28, "error while reading at byte ") == 0)
        return reason;
    // Copying failed: a source's data could not be read (or the target written). Name the source
    // when there is only one, so the message says which file is damaged.
    if (spec.sources.size() == 1)
        return "error while converting '" + spec.sources.front() + "': " + reason;
    return "error while converting: " + reason;
}

// --salvage: qemu-img warns once per failed sector; the guest sends runs of them.
constexpr std::uint64_t MAX_SALVAGE_WARNINGS = 1u << 20; // ~60 MiB of text at most; a 512 MiB damaged run

void salvage_warnings(const vmm::RunResult& run, std::vector<std::string>& out) {
    for (const auto& rec : run.records) {
        if (rec.type != INSTAR_REC_CONVERT_SALVAGE || rec.data.size() != sizeof(instar_convert_salvage))
            continue;
        instar_convert_salvage w{};
        std::memcpy(&w, rec.data.data(), sizeof w);
        const std::string why = std::string(": ") + status_errno_text(w.status);
        for (std::uint64_t i = 0; i < w.sectors && out.size() < MAX_SALVAGE_WARNINGS; ++i) {
            const std::string at = std::to_string(w.offset + i * 512);
            if (w.kind == INSTAR_SALVAGE_STATUS || w.kind == INSTAR_SALVAGE_BOTH)
                out.push_back("error while reading block status at offset " + at + why);
            if (w.kind == INSTAR_SALVAGE_READ || w.kind == INSTAR_SALVAGE_BOTH)
                out.push_back("error while reading offset " + at + why);
        }
    }
}

// bdrv_supports_persistent_dirty_bitmap for an image of `plugin` whose info says `specific`: a
// qcow2 v3 image, and from qemu 8.2 on every image of a format with
// QEMU_PERSISTENT_BITMAPS_SINCE_8_2 (parallels). `target_compat` stands in for `specific` for a
// target not yet created (-o compat=...; unset is qcow2's default, 1.1).
bool supports_bitmaps(const LoadedPlugin& plugin, const boost::json::object* specific,
                      const std::optional<std::string>& target_compat, std::uint32_t qemu_version) {
    if (std::string_view(plugin->name) == "qcow2") {
        if (specific == nullptr)
            return !target_compat || *target_compat == "1.1" || *target_compat == "v3";
        const auto* compat = specific->if_contains("compat");
        return compat != nullptr && compat->is_string() && compat->as_string() == "1.1";
    }
    return (plugin->qemu_traits & QEMU_PERSISTENT_BITMAPS_SINCE_8_2) != 0 && qemu_version >= instar::qemu_version(8, 2);
}

// A node name like the one qemu generates for convert's target ("#block" and a counter that
// varies from run to run: 3NN for a qcow2 target or an existing one, 4NN for a new parallels
// target), from the file's inode.
std::string generated_node_name(int fd, char hundreds) {
    struct stat st{};
    if (::fstat(fd, &st) != 0)
        st.st_ino = 0;
    return std::string("#block") + hundreds + std::to_string(10 + st.st_ino % 90);
}

// One of the source's bitmaps, in qemu's order (the reverse of info's: qemu's list of a node's
// bitmaps puts each one loaded at its head); `skipped`: inconsistent, left out by
// --skip-broken-bitmaps.
struct SourceBitmap {
    std::string name;
    bool skipped = false;
};

// --bitmaps: qemu's convert_check_bitmaps over what info reported of the (single) source: its
// bitmaps into `bitmaps`, in qemu's order.
Expected<bool> check_bitmaps(const ConvertSpec& spec, const std::vector<OpenedChain>& chains,
                             std::uint32_t qemu_version, std::vector<SourceBitmap>& bitmaps) {
    if (chains.size() > 1)
        return Error{"Copying bitmaps only possible with single source"};
    const ChainLink& link = chains.front().links.front();
    const NodeInfo& n = link.node;
    if (!supports_bitmaps(*link.plugin, &n.specific, std::nullopt, qemu_version))
        return Error{"Source lacks bitmap support"};
    bitmaps.clear();
    if (const auto* list = n.specific.if_contains("bitmaps"); list != nullptr && list->is_array()) {
        for (const auto& b : list->as_array()) {
            if (!b.is_object())
                continue;
            const auto* name = b.as_object().if_contains("name");
            const std::string nm = name && name->is_string() ? std::string(name->as_string()) : std::string();
            bool in_use = false;
            if (const auto* flags = b.as_object().if_contains("flags"); flags && flags->is_array())
                for (const auto& f : flags->as_array())
                    in_use = in_use || (f.is_string() && f.as_string() == "in-use");
            if (in_use && !spec.skip_broken_bitmaps)
                return Error{"Cannot copy inconsistent bitmap '" + nm +
                             "'\nTry --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it"};
            bitmaps.insert(bitmaps.begin(), SourceBitmap{nm, in_use});
        }
    }
    return true;
}

// --bitmaps: INSTAR_OP_EDIT (EditCommand::Bitmap, BITMAP_COPY_ALL) on the written target with
// the source image as the read-only extra device. qemu's messages ("Failed to create bitmap X:
// ...") come back as the guest's stderr text.
Expected<bool> copy_bitmaps(const ConvertSpec& spec, const ChainLink& source, int target_fd,
                            const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    struct stat st{};
    if (::fstat(target_fd, &st) != 0)
        return Error{spec.target.filename + ": " + std::strerror(errno)};
    ChainLink target;
    target.plugin = spec.target.plugin;
    target.image.size = static_cast<std::uint64_t>(st.st_size);
    EditCall call;
    call.link = &target;
    call.filename = spec.target.filename;
    call.command = guest::EditCommand::Bitmap;
    call.image_fd = target_fd;
    call.extra.push_back({source.image.fd, source.image.size, false});
    guest::BitmapArgs head{};
    head.flags = guest::BITMAP_COPY_ALL | guest::BITMAP_SOURCE_FILE;
    const std::string node = generated_node_name(target_fd, '3');
    head.node_len = static_cast<std::uint32_t>(node.size());
    call.args.resize(sizeof head);
    std::memcpy(call.args.data(), &head, sizeof head);
    call.args.insert(call.args.end(), node.begin(), node.end());
    auto report = run_edit(call, sandbox, qemu_version);
    if (!report)
        return Error{report.error()};
    if (report->status == guest::Status::Ok)
        return true;
    if (!report->reason.empty())
        return Error{report->reason};
    // "\x01Failed to ... \n[hint\n]": the message without the program marker and last newline.
    std::string text = report->err;
    if (!text.empty() && text.front() == '\x01')
        text.erase(0, 1);
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    return Error{text};
}

// -n: the existing target, opened read-write as the user named it: a regular file or a block
// device (an LV), never created, never truncated. qemu-img's "Could not open" when it is missing.
Expected<OpenedFile> open_existing_target(const std::string& name) {
    const int fd = ::open(name.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return Error{"Could not open '" + name + "': Could not open '" + name + "': " + std::strerror(errno)};
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        ::close(fd);
        return Error{"Could not open '" + name + "': Could not open '" + name + "': not a regular file"};
    }
    OpenedFile f;
    f.fd = fd;
    const off_t end = S_ISBLK(st.st_mode) ? ::lseek(fd, 0, SEEK_END) : st.st_size;
    f.size = end > 0 ? static_cast<std::uint64_t>(end) : 0;
    f.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
    f.device = st.st_dev;
    f.inode = st.st_ino;
    f.display = name;
    std::error_code ec;
    f.path = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    return f;
}

// The plan's flags for what the user asked.
std::uint32_t plan_flags(const ConvertSpec& spec, bool has_backing) {
    const bool report_progress = spec.progress != nullptr || spec.rate_limit != 0;
    return (spec.compressed ? INSTAR_CONVERT_COMPRESS : 0u) | (has_backing ? INSTAR_CONVERT_TARGET_HAS_BACKING : 0u) |
           (spec.out_of_order ? INSTAR_CONVERT_OUT_OF_ORDER : 0u) | (report_progress ? INSTAR_CONVERT_PROGRESS : 0u) |
           (spec.existing_target ? INSTAR_CONVERT_EXISTING_TARGET : 0u) |
           (spec.target_is_zero ? INSTAR_CONVERT_TARGET_IS_ZERO : 0u) | (spec.salvage ? INSTAR_CONVERT_SALVAGE : 0u) |
           (spec.dd ? INSTAR_CONVERT_WINDOW : 0u) | (spec.coroutines == 1 ? INSTAR_CONVERT_ONE_COROUTINE : 0u);
}

// -r's clock: when the copy started and the sectors copied before the current chunk.
struct RunPacing {
    std::chrono::steady_clock::time_point started;
    std::uint64_t rate_before = 0;
};

// The sandbox of a convert of `total` bytes: its threads, its budget, -p and -r (through `pacing`,
// which must outlive the run).
void configure_run(const ConvertSpec& spec, std::uint64_t total, vmm::SandboxConfig& sandbox, RunPacing& pacing) {
    sandbox.compress_workers = true; // -c compresses on every core (docs/convert.md)
    // Write-behind: the host writes the engine's data from guest RAM while the guest reads the next
    // chunk (docs/convert.md, "Overlap"). Without it the engine reads the next chunk ahead instead
    // (the two need the same spare buffer), which the KVM sandbox makes on a reader thread.
    sandbox.write_behind = vmm::write_behind_requested();
    sandbox.read_ahead = !sandbox.write_behind && vmm::read_ahead_requested();
    auto budget = CONVERT_BASE_TIMEOUT + std::chrono::seconds(total / CONVERT_BYTES_PER_SECOND);
    if (spec.rate_limit != 0)
        budget += std::chrono::seconds(total / spec.rate_limit + 1);
    // An encrypted target derives its keys first (LUKS: about iter-time, default 2 s, per key; far
    // longer on a loaded machine), and a -n target unlocks with the image's own iteration counts.
    if (spec.target.secret) {
        budget += std::chrono::seconds(120);
        for (const auto& o : spec.target.options)
            if (o.key == "iter-time" || o.key == "encrypt.iter-time")
                if (const auto ms = std::strtoull(o.value.c_str(), nullptr, 10); ms < (1ull << 32))
                    budget += std::chrono::milliseconds(10 * ms);
    }
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    // -r: the engine reports, before each chunk it copies, the sectors copied so far including that
    // chunk; the host (the caller's thread, outside the seccomp filter) holds the guest there until
    // the bytes before the chunk fit the rate. qemu's throttle likewise lets the first request
    // through at once: 4 MiB at 2 MiB/s takes about a second in both.
    pacing.started = std::chrono::steady_clock::now();
    pacing.rate_before = 0;
    if (spec.progress != nullptr || spec.rate_limit != 0)
        // The engine counts 512-byte sectors, as qemu-img does; --progress=json reports bytes.
        sandbox.progress = [&pacing, rate = spec.rate_limit, p = spec.progress](std::uint64_t done, std::uint64_t all) {
            if (rate != 0) {
                const auto due = pacing.started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                      std::chrono::duration<double>(
                                                          static_cast<double>(pacing.rate_before) * 512.0 /
                                                          static_cast<double>(rate)));
                std::this_thread::sleep_until(due);
                pacing.rate_before = done;
            }
            if (p)
                p->work(done * 512, all * 512);
        };
}

// qemu-img's words for a sandbox run that failed (not the guest's verdict: the run itself).
std::string run_failure(const ConvertSpec& spec, const std::string& why) {
    if (spec.dd)
        return "error while writing to output image file: " + why;
    return spec.target.filename + ": error while converting " + std::string((*spec.target.plugin)->name) + ": " + why;
}

// -n: the target was written in place; every cache mode but unsafe flushes it (and its other files)
// before convert returns, as qemu's close does (bdrv_close flushes the node and its children).
Expected<bool> flush_in_place(const std::string& name, int fd, const std::vector<OpenedFile>& extents) {
    if (::fdatasync(fd) != 0)
        return Error{"Could not write '" + name + "': " + std::strerror(errno)};
    for (const OpenedFile& f : extents)
        if (::fdatasync(f.fd) != 0)
            return Error{"Could not write '" + f.display + "': " + std::strerror(errno)};
    return true;
}

// After the run: qemu-img's warnings and words for a failure, --bitmaps, and the new target put in
// place. `links` are the plan's images in table order.
Expected<bool> finish_run(const ConvertSpec& spec, const std::vector<const ChainLink*>& links,
                          vmm::Outcome<vmm::RunResult> run, const std::vector<SourceBitmap>& source_bitmaps,
                          const std::vector<OpenedChain>& chains, int target_fd, AtomicFiles& files,
                          std::uint64_t total, const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    if (!run)
        return Error{run_failure(spec, run.error().message)};
    // qemu's convert_copy_bitmaps, after the data: a warning per inconsistent bitmap, the others
    // added to the target. A target that supports bitmaps only to refuse storing one (parallels
    // from 8.2: no qcow2) fails at the first it is given, after the warnings before it.
    const bool qcow2_target = std::string_view((*spec.target.plugin)->name) == "qcow2";
    std::size_t to_copy = 0;
    std::optional<std::string> store_error;
    for (const auto& b : source_bitmaps) {
        if (b.skipped) {
            if (spec.warnings && run->exit_status == 0)
                spec.warnings->push_back("Skipping inconsistent bitmap '" + b.name + "'");
            continue;
        }
        if (!qcow2_target) {
            store_error = "Failed to create bitmap " + b.name + ": Can't store persistent bitmaps to " +
                          generated_node_name(target_fd, spec.existing_target ? '3' : '4') +
                          ": Operation not supported";
            break;
        }
        ++to_copy;
    }
    if (spec.warnings) {
        const std::size_t first = spec.warnings->size();
        const bool salvaged = std::any_of(run->records.begin(), run->records.end(),
                                          [](const auto& r) { return r.type == INSTAR_REC_CONVERT_SALVAGE; });
        if (!spec.quiet) // -q silences qemu-img's warnings, not the driver's line below
            salvage_warnings(run.value(), *spec.warnings);
        // qemu's qcow2 driver reports its first corruption event on a read-only image once, before
        // the warnings it causes; instar's qcow2 reader words the event as qemu does.
        const bool has_qcow2 = std::any_of(links.begin(), links.end(), [](const ChainLink* l) {
            return std::string_view((*l->plugin)->name) == "qcow2";
        });
        if (salvaged && has_qcow2 && run->exit_status == 0) {
            for (const auto& rec : run->records)
                if (rec.type == INSTAR_REC_REASON) {
                    spec.warnings->insert(spec.warnings->begin() + static_cast<std::ptrdiff_t>(first),
                                          "qcow2: Image is corrupt: " +
                                              printable_reason(std::string(rec.data.begin(), rec.data.end())) +
                                              "; further non-fatal corruption events will be suppressed");
                    break;
                }
        }
    }
    if (run->exit_status != 0 && spec.dd && spec.warnings) {
        // qemu's qcow2 driver reports the first corruption it meets in a read-only image once, before
        // img_dd's own line; instar's qcow2 reader words the event as qemu does.
        const bool has_qcow2 = std::any_of(links.begin(), links.end(), [](const ChainLink* l) {
            return std::string_view((*l->plugin)->name) == "qcow2";
        });
        // Unlocking an encrypted image's key is part of qemu's open, not a corruption event.
        bool key_failure = false;
        for (const auto& rec : run->records)
            if (rec.type == INSTAR_REC_CONVERT_FAILURE && rec.data.size() == sizeof(instar_convert_failure)) {
                instar_convert_failure f{};
                std::memcpy(&f, rec.data.data(), sizeof f);
                key_failure = f.phase == INSTAR_CONVERT_PHASE_OPEN && f.image < links.size() &&
                              links[f.image]->node.encrypted.value_or(false);
                break;
            }
        for (const auto& rec : run->records)
            if (rec.type == INSTAR_REC_REASON) {
                const std::string reason = printable_reason(std::string(rec.data.begin(), rec.data.end()));
                if (has_qcow2 && !key_failure && !engine_reason(reason))
                    spec.warnings->push_back("qcow2: Image is corrupt: " + reason +
                                             "; further non-fatal corruption events will be suppressed");
                break;
            }
    }
    if (run->exit_status != 0)
        return Error{failure_message(spec, links, run.value())};
    // --bitmaps: qemu-img's convert_copy_bitmaps after the data, into the target before it is put
    // in place: the qcow2 guest adds each bitmap of the source and fills it (docs/bitmap.md).
    if (store_error)
        return Error{*store_error};
    if (spec.bitmaps && to_copy > 0)
        if (auto ok = copy_bitmaps(spec, chains.front().links.front(), target_fd, sandbox, qemu_version); !ok)
            return Error{ok.error()};
    if (spec.existing_target)
        return true; // written in place; the caller flushes it unless -t unsafe (flush_in_place)
    if (auto done = files.commit(); !done)
        return Error{spec.dd ? spec.target.filename + ": error while creating output image: " + done.error()
                             : done.error()};
    // img_dd opens the image it created before copying; qemu's vmdk driver cannot open an empty
    // monolithicSparse image (no grain tables), so qemu-img dd fails there, leaving the file.
    if (spec.dd && total == 0 && std::string_view((*spec.target.plugin)->name) == "vmdk")
        return Error{"Could not open '" + spec.target.filename + "': Unsupported image type 'monolithicSparse'"};
    return true;
}

// dd's window over an input of `input_size` bytes (whole sectors); says so when skip= is past its end.
guest::DdWindow window_of(const ConvertSpec::DdWindow& dd, std::uint64_t input_size) {
    const guest::DdWindow w = guest::dd_window(input_size, dd.block_size, dd.count.has_value(), dd.count.value_or(0),
                                               dd.skip.has_value(), dd.skip.value_or(0));
    if (w.past_end && dd.skipped_past_end)
        *dd.skipped_past_end = true;
    return w;
}

// Source i as qemu-img opens it: its format, its chain, its key.
InfoOptions source_options(const ConvertSpec& spec, std::size_t i) {
    InfoOptions io;
    io.filename = spec.sources[i];
    io.format = i < spec.source_formats.size() && spec.source_formats[i] ? spec.source_formats[i] : spec.source_format;
    io.backing_chain = !(i < spec.source_no_backing.size() && spec.source_no_backing[i]);
    io.unsafe_quirks = spec.unsafe_quirks;
    io.allow_paths = spec.allow_paths;
    if (i < spec.source_headers.size())
        io.header = spec.source_headers[i];
    io.opens_without_key = !(i < spec.source_secrets.size() && spec.source_secrets[i]);
    io.backing_in_one_node = true; // no backing keys: every level is inspected without one
    return io;
}

// A convert in one start is planned before the host knows the source's size: its time budget is
// computed for this size, and a larger source is converted on the ordinary path (where a second
// start is a negligible part of the copy: at least 4 GiB of virtual disk to scan).
constexpr std::uint64_t QUICK_CONVERT_MAX_VIRTUAL = 4ull << 30;

// What a convert in one start can plan before the source is open: one source, read without a key
// or a detached header, into a new image that names no other file and needs no key. Everything
// else (-n, -B, -l, --bitmaps, -T none, encryption, dd's errors before the copy) takes the ordinary path.
bool quick_convert_allowed(const ConvertSpec& spec) {
    const auto has = [](const auto& per_source) {
        return std::any_of(per_source.begin(), per_source.end(), [](const auto& v) { return v.has_value(); });
    };
    const CreateSpec& t = spec.target;
    const bool dd_ok = !spec.dd || (!spec.dd->target_name_error && spec.dd->block_size != 0 &&
                                    spec.dd->block_size <= INT64_MAX);
    return spec.sources.size() == 1 && !spec.existing_target && dd_ok && !spec.bitmaps && !spec.snapshot &&
           !spec.snapshot_exact && !t.backing_file && !t.backing_fmt && !t.data_file && !t.secret &&
           t.plugin != nullptr && ((*t.plugin)->capabilities & CAP_CREATE) != 0 &&
           ((*t.plugin)->capabilities & CAP_CONVERT_TARGET) != 0 && !has(spec.source_secrets) &&
           !has(spec.source_headers) && !cache_is_direct(spec.source_cache);
}

// convert in one start (INSTAR_OP_INFO_FIRST of INSTAR_OP_CONVERT, docs/architecture.md "... and
// convert"): the new target's file is made first (its temporary name), the plan names the source
// alone and a create argument without a size, and the guest completes both from its inspection.
// nullopt: the guest did not go on (nothing written; the temporary file is gone, `prefetched` holds
// the source's inspection for the ordinary path).
Expected<std::optional<bool>> try_quick_convert(const ConvertSpec& spec, const InfoOptions& io,
                                                const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                                                std::uint32_t qemu_version,
                                                std::vector<std::optional<PrefetchedInfo>>& prefetched) {
    using Outcome = std::optional<bool>;
    CreateSpec target = spec.target;
    target.size = 0; // the guest's: the source's virtual size in whole sectors
    target.qemu_version = qemu_version;
    auto create = encode_create_arg(target);
    if (!create)
        return Outcome{}; // the ordinary path words it after the source's open, as qemu-img does
    AtomicFiles files(target.filename);
    files.set_durable(cache_flushes(spec.target_cache));
    files.set_direct(cache_is_direct(spec.target_cache));
    PlanFile plan_file;
    RunPacing pacing;
    int target_fd = -1;
    QuickRead q;
    q.images = {io};
    q.op = INSTAR_OP_CONVERT;
    q.max_virtual_size = QUICK_CONVERT_MAX_VIRTUAL;
    q.chains = io.backing_chain;
    q.prefetched = &prefetched;
    q.prepare = [&](const std::vector<const FirstImage*>& first, QuickCall& call) -> Expected<bool> {
        const LoadedPlugin& source = *first[0]->plugin;
        if (!(source->capabilities & CAP_CONVERT))
            return false;
        auto module = guest_module_path(*spec.target.plugin);
        if (!module)
            return false;
        const auto known = std::find(call.modules.begin(), call.modules.end(), *module);
        const auto target_module = static_cast<std::uint32_t>(known - call.modules.begin());
        if (known == call.modules.end())
            call.modules.push_back(*module);
        // Any failure to make the file: the ordinary path makes it again and words the error.
        auto fd = files.open_image();
        if (!fd)
            return false;
        target_fd = *fd;
        if (cache_is_direct(spec.target_cache) && !AtomicFiles::make_direct(target_fd, target.filename))
            return false;
        // Devices: 0 the source, 1 this plan, 2 the target; no secrets.
        Plan plan;
        plan.head.magic = INSTAR_CONVERT_PLAN_MAGIC;
        plan.head.image_count = 1;
        plan.head.source_count = 1;
        plan.head.target_module = target_module;
        plan.head.target_device = 2;
        plan.head.flags = plan_flags(spec, false) | INSTAR_CONVERT_PLAN_FROM_INFO;
        plan.head.min_sparse = spec.min_sparse;
        plan.head.target_backing_size = UINT64_MAX;
        plan.head.target_backing = INSTAR_CONVERT_NO_BACKING;
        plan.head.qemu_version = qemu_version;
        plan.head.create_len = static_cast<std::uint32_t>(create->size());
        plan.create = *create;
        const std::vector<instar_convert_image> images{{first[0]->module, 0, 1, 0, INSTAR_CONVERT_NO_BACKING, 0}};
        std::vector<std::uint8_t> bytes = plan.bytes(images);
        if (spec.dd) { // img_dd's arguments: the guest computes the window from the input's size
            instar_dd_window_spec dd{};
            dd.block_size = spec.dd->block_size;
            dd.count = spec.dd->count.value_or(0);
            dd.skip = spec.dd->skip.value_or(0);
            dd.flags = (spec.dd->count ? INSTAR_DD_HAS_COUNT : 0u) | (spec.dd->skip ? INSTAR_DD_HAS_SKIP : 0u);
            append_bytes(bytes, &dd, 1);
        }
        auto plan_device = plan_file.write(bytes);
        if (!plan_device)
            return Error{plan_device.error()};
        call.devices.push_back(*plan_device);
        call.devices.push_back(vmm::output_device(target_fd));
        call.devices.back().direct = cache_is_direct(spec.target_cache);
        call.devices.back().early_writeback = cache_flushes(spec.target_cache); // files.commit() flushes
        const instar_convert_arg arg{1, 0};
        append_bytes(call.arg, &arg, 1);
        call.config.outputs = &files;
        configure_run(spec, QUICK_CONVERT_MAX_VIRTUAL, call.config, pacing);
        return true;
    };
    std::vector<OpenedChain> chains;
    auto run = try_quick_read(q, plugins, sandbox, qemu_version, chains);
    if (!run)
        return Error{run_failure(spec, run.error())};
    if (!*run)
        return Outcome{};
    // The plan's table as the guest completed it: the source, then its backing files.
    ImageTable table;
    if (auto added = table.add_chains(chains); !added)
        return Error{added.error()};
    std::uint64_t total = (chains[0].links.front().node.virtual_size + 511) / 512 * 512;
    if (spec.dd) // the window the guest took, as the ordinary path computes it (and skip='s warning)
        total = window_of(*spec.dd, total).length;
    auto done = finish_run(spec, table.links, std::move(**run), {}, chains, target_fd, files, total,
                           sandbox, qemu_version);
    if (!done)
        return Error{done.error()};
    return Outcome{*done};
}

} // namespace

Expected<bool> convert_image(const ConvertSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                             std::uint32_t qemu_version) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};

    // One lone source into a new image: inspected and converted in one start, when it stands alone
    // (or over backing files of its own format); else the ordinary path reuses that inspection.
    std::vector<std::optional<PrefetchedInfo>> prefetched;
    if (quick_convert_allowed(spec)) {
        auto quick = try_quick_convert(spec, source_options(spec, 0), plugins, sandbox, qemu_version, prefetched);
        if (!quick)
            return Error{quick.error()};
        if (*quick)
            return **quick;
    }

    // Every source with its whole backing chain, as qemu-img opens them.
    std::vector<OpenedChain> chains(spec.sources.size());
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < spec.sources.size(); ++i) {
        const InfoOptions io = source_options(spec, i);
        auto opened = open_chain(io, plugins, reusing_inspection(*runner, prefetched, i), chains[i]);
        if (!opened)
            return Error{opened.error()};
        if (i < spec.source_secrets.size() && !chains[i].links.empty())
            chains[i].links.front().secret = spec.source_secrets[i];
        for (const auto& link : chains[i].links)
            if (!((*link.plugin)->capabilities & CAP_CONVERT))
                return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                             std::string((*link.plugin)->name) + " images yet"};
        // qemu counts whole sectors (blk_nb_sectors).
        total += (chains[i].links.front().node.virtual_size + 511) / 512 * 512;
    }
    // dd: img_dd's checks after opening its input, then its window of the input's size.
    std::uint64_t window_offset = 0;
    if (spec.dd) {
        if (spec.sources.size() != 1)
            return Error{"dd copies exactly one input"};
        if (spec.target.plugin == nullptr)
            return Error{spec.dd->no_plugin_error};
        if (spec.dd->target_name_error)
            return Error{*spec.dd->target_name_error};
        const FormatDescriptor& d = **spec.target.plugin;
        if (!(d.capabilities & CAP_CREATE))
            return Error{"Format driver '" + std::string(d.name) + "' does not support image creation"};
        if (!(d.capabilities & CAP_CONVERT_TARGET))
            return Error{spec.target.filename + ": error while creating output image: instar cannot write the data "
                         "of " + std::string(d.name) + " images yet"};
        if (spec.dd->block_size == 0 || spec.dd->block_size > INT64_MAX)
            return Error{"Invalid bs specified."};
        const guest::DdWindow w = window_of(*spec.dd, total); // total: blk_getlength, whole sectors
        window_offset = w.offset;
        total = w.length;
    }
    const bool has_backing = spec.target.backing_file.has_value();

    // -n, in img_convert's order: the backing conflicts, -t, then the existing target opened with
    // -O's format (as info opens a user's file, so its header is checked in the sandbox first),
    // -c against that format, and its size against the sources'.
    OpenedChain existing;
    OpenedFile existing_file;
    struct FileCloser {
        OpenedFile& f;
        ~FileCloser() { close_file(f); }
    } existing_closer{existing_file};
    std::vector<OpenedFile> existing_extents; // -n: the target's other files, read-write
    struct FilesCloser {
        std::vector<OpenedFile>& fs;
        ~FilesCloser() {
            for (auto& f : fs)
                close_file(f);
        }
    } extents_closer{existing_extents};
    std::vector<SourceBitmap> source_bitmaps;
    if (spec.existing_target) {
        if (spec.target_is_zero && has_backing)
            return false;
        if (has_backing && spec.sources.size() > 1)
            return Error{"Having a backing file for the target makes no sense when concatenating multiple input "
                         "images"};
        if (spec.bitmaps)
            if (auto ok = check_bitmaps(spec, chains, qemu_version, source_bitmaps); !ok)
                return Error{ok.error()};
        if (spec.target_cache_error)
            return Error{*spec.target_cache_error};
        if (spec.target_open_error)
            return Error{*spec.target_open_error};
        auto file = open_existing_target(spec.target.filename);
        if (!file)
            return Error{file.error()};
        existing_file = *file;
        // qemu's image locking refuses to write a file a source (or a file of its chain) has open;
        // instar takes no locks, so it asks the same question of the files themselves.
        for (const auto& chain : chains)
            for (const auto& link : chain.links) {
                bool same = link.image.device == existing_file.device && link.image.inode == existing_file.inode;
                for (const auto& f : link.files)
                    same = same || (f.device == existing_file.device && f.inode == existing_file.inode);
                if (same)
                    return Error{"Could not open '" + spec.target.filename + "': Failed to get \"write\" lock\nIs "
                                 "another process using the image [" + spec.target.filename + "]?"};
            }
        if (spec.target.plugin == nullptr)
            return Error{"Could not open '" + spec.target.filename + "': Unknown driver '" + spec.target_format + "'"};
        InfoOptions io;
        io.filename = spec.target.filename;
        io.format = spec.target_format;
        io.unsafe_quirks = spec.unsafe_quirks;
        io.allow_paths = spec.allow_paths;
        io.top = &existing_file;
        io.read_write = true; // a read-only format's target: qemu's "Image is read-only" comes first
        io.opens_without_key = !spec.target.secret;
        // vmdk and qcow2: qemu opens the target with its backing chain (a missing backing file fails
        // the open) and copies a new cluster's other bytes from it (vmdk's get_whole_cluster,
        // qcow2's copy-on-write), so the chain is opened as qemu opens it and given to the writer.
        // (vpc, vhdx: qemu's drivers have no backing files.)
        const std::string_view target_format = (*spec.target.plugin)->name;
        io.backing_chain = target_format == "vmdk" || target_format == "qcow2";
        // qemu's read-write open replays what the format must replay first (a vhdx log).
        if (auto replayed = replay_on_open(*spec.target.plugin, existing_file, spec.target.filename, sandbox,
                                           qemu_version);
            !replayed)
            return Error{replayed.error()};
        if (auto opened = open_chain(io, plugins, *runner, existing); !opened)
            return Error{opened.error()};
        // qemu's read-write open repairs a dirty qcow2 target first (dirty_repair.h); the target is
        // then opened and inspected again, as the repair changed the file.
        if (spec.repair_dirty && needs_dirty_repair(existing.links.front().node)) {
            if (auto repaired = repair_dirty_image({spec.target.filename, spec.target.filename, spec.allow_paths,
                                                    spec.unsafe_quirks, spec.target.secret, spec.repair_dirty},
                                                   plugins, sandbox, qemu_version);
                !repaired)
                return Error{repaired.error()};
            existing.close();
            close_file(existing_file);
            auto again = open_existing_target(spec.target.filename);
            if (!again)
                return Error{again.error()};
            existing_file = *again;
            if (auto opened = open_chain(io, plugins, *runner, existing); !opened)
                return Error{opened.error()};
        }
        // The files the target names (vmdk extents), reopened read-write: the very files info
        // inspected (through /proc/self/fd, so no name is looked up again). A source using one of
        // them is refused as the target itself is.
        for (const auto& f : existing.links.front().files) {
            for (const auto& chain : chains)
                for (const auto& link : chain.links) {
                    bool same = link.image.device == f.device && link.image.inode == f.inode;
                    for (const auto& g : link.files)
                        same = same || (g.device == f.device && g.inode == f.inode);
                    if (same)
                        return Error{"Could not open '" + spec.target.filename + "': Failed to get \"write\" lock\nIs "
                                     "another process using the image [" + spec.target.filename + "]?"};
                }
            auto fd = reopen_writable(f);
            if (!fd)
                return Error{"Could not open '" + spec.target.filename + "': " + fd.error()};
            OpenedFile w = f;
            w.fd = *fd;
            existing_extents.push_back(w);
        }
        if (spec.compressed && !((*spec.target.plugin)->capabilities & CAP_CONVERT_COMPRESS))
            return Error{"Compression not supported for this file format"};
        if (spec.bitmaps &&
            !supports_bitmaps(*spec.target.plugin, &existing.links.front().node.specific, std::nullopt, qemu_version))
            return Error{"Format driver '" + spec.target_format + "' does not support bitmaps"};
        const std::uint64_t have = (existing.links.front().node.virtual_size + 511) / 512 * 512;
        if (have < total)
            return Error{"output file is smaller than input file"};
    } else if (spec.bitmaps) {
        // qemu creates the target first and then finds it cannot hold bitmaps; instar says so
        // before creating anything (convert-atomic).
        if (auto ok = check_bitmaps(spec, chains, qemu_version, source_bitmaps); !ok)
            return Error{ok.error()};
        if (!supports_bitmaps(*spec.target.plugin, nullptr, spec.target_compat, qemu_version))
            return Error{"Format driver '" + std::string((*spec.target.plugin)->name) + "' does not support bitmaps"};
    }

    // -B: the target's backing file, named relative to the target and opened through the target's
    // path policy (qemu opens the new image with its backing chain: the writer needs the backing's
    // data for copy-on-write, and convert its size).
    OpenedChain backing_chain;
    if (has_backing && !spec.existing_target) {
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
    ImageTable table; // device 0: the plan, filled in below
    if (auto added = table.add_chains(chains); !added)
        return Error{added.error()};
    plan.head.target_backing = INSTAR_CONVERT_NO_BACKING;
    if (has_backing && !spec.existing_target) {
        auto top = table.add_chain(backing_chain);
        if (!top)
            return Error{top.error()};
        plan.head.target_backing = *top;
    }
    // -n: the existing target's own backing chain, for its writer (below the target, read-only).
    if (spec.existing_target && existing.links.size() > 1) {
        auto top = table.add_chain(existing, 1);
        if (!top)
            return Error{top.error()};
        plan.head.target_backing = *top;
    }
    auto target_module = table.module(*spec.target.plugin);
    if (!target_module)
        return Error{target_module.error()};
    if (auto ok = table.check_limits("convert"); !ok)
        return Error{ok.error()};
    // -T none/directsync: the sources (and -B's chain) are read with O_DIRECT too; the fds are this
    // convert's own.
    if (cache_is_direct(spec.source_cache))
        for (std::size_t k = 0; k < table.images.size(); ++k) {
            const instar_convert_image& im = table.images[k];
            auto direct = [&](std::uint32_t d) -> Expected<bool> {
                if (auto ok = AtomicFiles::make_direct(table.devices[d].fd, table.links[k]->name); !ok)
                    return Error{ok.error()};
                table.devices[d].direct = true;
                return true;
            };
            for (std::uint32_t d = im.first_file; d < im.first_file + im.file_count; ++d)
                if (auto ok = direct(d); !ok)
                    return Error{ok.error()};
            if (auto ok = direct(im.device); !ok)
                return Error{ok.error()};
        }

    CreateSpec target = spec.target;
    target.size = total;
    if (has_backing && !spec.existing_target) {
        target.backing = &backing_chain.links.front().image;
        target.backing_size = backing_chain.links.front().node.virtual_size;
    }
    target.qemu_version = qemu_version;
    std::vector<std::uint8_t> create_bytes;
    target.secret.reset(); // the target's secret travels in the secrets device, not the plan
    if (!spec.existing_target) {
        auto create = encode_create_arg(target);
        if (!create)
            return Error{target.filename + (spec.dd ? ": error while creating output image: " : ": ") + create.error()};
        create_bytes = std::move(*create);
    }

    // Without -n the target is written under a temporary name and linked into place on success.
    // With -n it is written in place, as qemu-img does: an interrupted convert leaves it partly
    // written (the same crash semantics as qemu-img's).
    AtomicFiles files(target.filename);
    int target_fd = existing_file.fd;
    if (!spec.existing_target) {
        files.set_durable(cache_flushes(spec.target_cache));
        files.set_direct(cache_is_direct(spec.target_cache));
        auto fd = files.open_image();
        if (!fd)
            return Error{target.filename +
                         (spec.dd ? ": error while creating output image: "
                                  : ": error while converting " + std::string((*target.plugin)->name) + ": ") +
                         fd.error()};
        target_fd = *fd;
    }
    const bool direct_target = cache_is_direct(spec.target_cache);
    if (direct_target)
        if (auto ok = AtomicFiles::make_direct(target_fd, target.filename); !ok)
            return Error{ok.error()};

    plan.head.magic = INSTAR_CONVERT_PLAN_MAGIC;
    plan.head.image_count = static_cast<std::uint32_t>(table.images.size());
    plan.head.source_count = static_cast<std::uint32_t>(chains.size());
    plan.head.target_module = *target_module;
    plan.head.target_device = static_cast<std::uint32_t>(table.devices.size());
    // raw's existing target is a fixed-size device (a file or a block device, never grown); image
    // formats allocate clusters past their file's end, so theirs is an output.
    const bool fixed_target = spec.existing_target && std::string_view((*target.plugin)->name) == "raw";
    // (its length rounded up to a sector: qemu's raw disk ends there, and writing the last sector
    // extends the file to it)
    table.devices.push_back(fixed_target ? vmm::Device{target_fd, (existing_file.size + 511) / 512 * 512, true, false}
                                         : vmm::output_device(target_fd));
    table.devices.back().direct = direct_target;
    // A new target is flushed before it is put in place, an existing one (-n) after the run: both
    // unless -t unsafe.
    const bool flushed_target = cache_flushes(spec.target_cache);
    table.devices.back().early_writeback = flushed_target;
    // A new qcow2 target's external data file (-o data_file) follows it, made and committed with it.
    if (!spec.existing_target && target.data_file) {
        auto data = files.add_path(*target.data_file);
        if (!data)
            return Error{target.filename + ": error while converting " + std::string((*target.plugin)->name) + ": " +
                         data.error()};
        if (direct_target)
            if (auto ok = AtomicFiles::make_direct(*data, *target.data_file); !ok)
                return Error{ok.error()};
        table.devices.push_back(vmm::output_device(*data));
        table.devices.back().direct = direct_target;
        table.devices.back().early_writeback = flushed_target;
    }
    // -n: the target's other files follow it as outputs (a sparse extent grows), their lengths in
    // the plan where a new target's create argument would be (instar_convert_plan).
    if (spec.existing_target) {
        for (const auto& f : existing_extents) {
            if (direct_target)
                if (auto ok = AtomicFiles::make_direct(f.fd, f.display); !ok)
                    return Error{ok.error()};
            table.devices.push_back(vmm::output_device(f.fd));
            table.devices.back().direct = direct_target;
            table.devices.back().early_writeback = flushed_target;
            append_bytes(create_bytes, &f.size, 1);
        }
    }
    plan.head.flags = plan_flags(spec, has_backing);
    if (spec.dd) {
        plan.head.window_offset = window_offset;
        plan.head.window_length = total;
    }
    plan.head.min_sparse = spec.min_sparse;
    // With -n the field carries the existing target file's length instead (no -B chain is opened).
    plan.head.target_backing_size = spec.existing_target ? existing_file.size
                                    : target.backing           ? target.backing_size
                                                               : UINT64_MAX;
    plan.head.create_len = static_cast<std::uint32_t>(create_bytes.size());
    plan.create = std::move(create_bytes);
    if (spec.snapshot_exact) {
        plan.head.flags |= INSTAR_CONVERT_SNAPSHOT | INSTAR_CONVERT_SNAPSHOT_EXACT;
        plan.snapshot.push_back(static_cast<char>((spec.snapshot_id ? INSTAR_SNAPSHOT_HAS_ID : 0u) |
                                                  (spec.snapshot_name ? INSTAR_SNAPSHOT_HAS_NAME : 0u)));
        plan.snapshot += spec.snapshot_id.value_or("");
        plan.snapshot.push_back('\0');
        plan.snapshot += spec.snapshot_name.value_or("");
    } else if (spec.snapshot) {
        plan.head.flags |= INSTAR_CONVERT_SNAPSHOT;
        plan.snapshot = *spec.snapshot;
    }
    plan.head.snapshot_len = static_cast<std::uint32_t>(plan.snapshot.size());
    plan.head.qemu_version = qemu_version;
    PlanFile plan_file;
    auto plan_device = plan_file.write(plan.bytes(table.images));
    if (!plan_device)
        return Error{plan_device.error()};
    table.devices[0] = *plan_device;
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file, spec.target.secret);
    if (!secrets_device)
        return Error{secrets_device.error()};
    if (auto ok = table.check_limits("convert"); !ok)
        return Error{ok.error()};

    sandbox.outputs = spec.existing_target ? nullptr : &files;
    RunPacing pacing;
    configure_run(spec, total, sandbox, pacing);
    const instar_convert_arg arg{0, *secrets_device};
    // SAFETY: instar_convert_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    auto run = vmm::run(sandbox, table.devices, table.modules, INSTAR_OP_CONVERT, {a, sizeof arg});
    auto done = finish_run(spec, table.links, std::move(run), source_bitmaps, chains, target_fd, files, total,
                           sandbox, qemu_version);
    if (!done || !spec.existing_target || !cache_flushes(spec.target_cache))
        return done;
    return flush_in_place(spec.target.filename, target_fd, existing_extents);
}

} // namespace instar
