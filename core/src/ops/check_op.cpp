// `check`: info's detection (the same candidates, open errors and path policy), then one sandbox run
// of INSTAR_OP_CHECK with the detected format's guest module.
#include "ops/check_op.h"

#include "ops/edit_op.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/map_op.h"
#include "ops/info_op.h"
#include "ops/open_replay.h"
#include "chain/path_policy.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace instar {

namespace {

// The guest's budget for a check: the sandbox's default for small files, then 1 s more per 512 MiB
// of file (at 512-byte clusters, 1 Mi refcounts and table entries: a few milliseconds of work, so
// the margin covers a loaded host); repairs get twice that (a discard per freed run of clusters).
constexpr std::chrono::seconds CHECK_BASE_TIMEOUT{10};
constexpr std::uint64_t CHECK_BYTES_PER_SECOND = 512ull << 20;
// ... and 1 s per 2 TiB of virtual disk: vmdk's check visits every grain (a 64 TiB monolithicSparse
// image has a billion; ~0.3 s per TiB in the guest on a quiet host, qemu-img takes ~2 s per TiB).
constexpr std::uint64_t CHECK_VIRTUAL_BYTES_PER_SECOND = 2ull << 40;
// A check in one start (INSTAR_OP_INFO_FIRST) begins before the host knows the virtual size, so its
// budget is computed for this size and the guest checks a larger image only on the ordinary path
// (two starts, the budget from info's size). 16 TiB covers every image but the rare huge sparse one
// for 8 s more of budget.
constexpr std::uint64_t QUICK_CHECK_MAX_VIRTUAL = 16ull << 40;

std::chrono::milliseconds check_budget(std::uint64_t file_size, std::uint64_t virtual_size, bool fix) {
    const auto budget = CHECK_BASE_TIMEOUT + std::chrono::seconds(file_size / CHECK_BYTES_PER_SECOND +
                                                                  virtual_size / CHECK_VIRTUAL_BYTES_PER_SECOND) *
                                                 (fix ? 2 : 1);
    return std::chrono::duration_cast<std::chrono::milliseconds>(budget);
}

// The text records of a run that failed: what the guest printed before it stopped.
std::string partial_text(std::span<const vmm::Record> records, int host_errno) {
    std::string out;
    for (const auto& rec : records) {
        instar_check_record_head head{};
        if (rec.type != INSTAR_REC_CHECK || rec.data.size() < sizeof head)
            continue;
        std::memcpy(&head, rec.data.data(), sizeof head);
        if (head.kind != INSTAR_CHECK_TEXT)
            continue;
        append_check_text(out, rec.data.data() + sizeof head, rec.data.size() - sizeof head, host_errno);
    }
    if (!out.empty() && out.back() != '\n')
        out.push_back('\n');
    return out;
}

// Whether info listed a vmdk extent of type SESPARSE (the "extents" list of its format-specific
// data, filled by the vmdk module from the descriptor's extent lines).
bool has_sesparse_extent(const NodeInfo& node) {
    if (node.format != "vmdk")
        return false;
    const auto* extents = node.specific.if_contains("extents");
    if (extents == nullptr || !extents->is_array())
        return false;
    for (const auto& e : extents->get_array()) {
        const auto* format = e.is_object() ? e.get_object().if_contains("format") : nullptr;
        if (format != nullptr && format->is_string() && format->get_string() == "SESPARSE")
            return true;
    }
    return false;
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0)
            ::close(fd);
    }
};

// INSTAR_OP_CHECK on the opened image (and, with -r, the same file reopened for writing).
Expected<vmm::RunResult> run_check_op(const ChainLink& link, const CheckOptions& opts, const vmm::SandboxConfig& sandbox,
                                      std::uint32_t qemu_version) {
    auto module = guest_module_path(*link.plugin);
    if (!module)
        return Error{module.error()};
    // -r: the same file (device and inode checked) opened for writing, after info inspected it.
    Fd rw;
    if (opts.fix) {
        rw.fd = ::open(link.image.path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (rw.fd < 0) {
            const std::string why = std::strerror(errno);
            return Error{"Could not open '" + opts.filename + "': Could not open '" + opts.filename + "': " + why};
        }
        struct stat st {};
        if (::fstat(rw.fd, &st) != 0 || static_cast<std::uint64_t>(st.st_dev) != link.image.device ||
            static_cast<std::uint64_t>(st.st_ino) != link.image.inode ||
            static_cast<std::uint64_t>(st.st_size) != link.image.size)
            return Error{"Could not open '" + opts.filename + "': the file changed while it was being inspected"};
    }
    std::vector<vmm::Device> devices{{opts.fix ? rw.fd : link.image.fd, link.image.size, opts.fix != 0}};
    devices.back().flush_ignored = !opts.flush; // -T unsafe (qemu's BDRV_O_NO_FLUSH)
    for (const auto& f : link.files)
        devices.push_back({f.fd, f.size, false});
    // -r: the image once more as an output, so the repair can extend the file (docs/check.md).
    if (opts.fix) {
        devices.push_back(vmm::output_device(rw.fd));
        devices.back().early_writeback = opts.flush; // the repair flushes what it wrote
        devices.back().flush_ignored = !opts.flush;
    }
    const instar_check_arg arg{opts.fix, qemu_version, static_cast<std::uint32_t>(link.files.size()), 0};
    // SAFETY: instar_check_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    const std::vector<std::string> modules{*module};
    vmm::SandboxConfig config = sandbox;
    const auto budget = check_budget(link.image.size, link.node.virtual_size, opts.fix != 0);
    if (config.timeout < budget)
        config.timeout = budget;
    auto run = vmm::run(config, devices, modules, INSTAR_OP_CHECK, {a, sizeof arg});
    if (!run)
        return Error{run.error().message};
    return std::move(run.value());
}

} // namespace

void append_check_text(std::string& out, const std::uint8_t* data, std::size_t len, int host_errno) {
    const char* why = host_errno != 0 ? std::strerror(host_errno) : std::strerror(EIO);
    std::vector<std::uint8_t> text;
    text.reserve(len);
    bool line_start = out.empty() || out.back() == '\n';
    bool after_name = false; // just after a line-start 0x01
    bool with_errno = false;
    for (std::size_t i = 0; i < len; ++i) {
        const std::uint8_t c = data[i];
        if (c == 0x02 && (line_start || after_name)) {
            with_errno = true;
        } else {
            if (c == '\n' && with_errno) {
                text.insert(text.end(), why, why + std::strlen(why));
                with_errno = false;
            }
            text.push_back(c);
        }
        after_name = line_start && c == 0x01;
        line_start = c == '\n';
    }
    if (with_errno)
        text.insert(text.end(), why, why + std::strlen(why));
    append_guest_text(out, text.data(), text.size());
}

Expected<CheckReport> decode_check_records(std::span<const vmm::Record> records, int host_errno) {
    CheckReport out;
    bool have_result = false;
    for (const auto& rec : records) {
        if (rec.type != INSTAR_REC_CHECK)
            return Error{"the sandbox sent an unexpected record type " + std::to_string(rec.type)};
        instar_check_record_head head{};
        if (rec.data.size() < sizeof head)
            return Error{"the sandbox sent a truncated check record"};
        std::memcpy(&head, rec.data.data(), sizeof head);
        if (have_result)
            return Error{"the sandbox sent check records after its result"};
        if (head.kind == INSTAR_CHECK_TEXT) {
            append_check_text(out.diagnostics, rec.data.data() + sizeof head, rec.data.size() - sizeof head, host_errno);
        } else if (head.kind == INSTAR_CHECK_RESULT) {
            if (rec.data.size() != sizeof head + sizeof out.result)
                return Error{"the sandbox sent a check result of the wrong size"};
            std::memcpy(&out.result, rec.data.data() + sizeof head, sizeof out.result);
            have_result = true;
        } else {
            return Error{"the sandbox sent an unknown check record kind " + std::to_string(head.kind)};
        }
    }
    if (!have_result)
        return Error{"the sandbox sent no check result"};
    if (!out.diagnostics.empty() && out.diagnostics.back() != '\n')
        return Error{"the sandbox sent an unterminated check line"};
    const auto& r = out.result;
    if ((r.flags & ~INSTAR_CHECK_TEXT_TRUNCATED) != 0 || r.error > 0 || r.error < -4095)
        return Error{"the sandbox sent an invalid check result"};
    // qemu's counters are int64 (and printed as such): refuse values it could never hold.
    for (std::uint64_t v : {r.corruptions, r.leaks, r.check_errors, r.corruptions_fixed, r.leaks_fixed,
                            r.image_end_offset, r.total_clusters, r.allocated_clusters, r.fragmented_clusters,
                            r.compressed_clusters})
        if (v > static_cast<std::uint64_t>(INT64_MAX))
            return Error{"the sandbox sent an out-of-range check counter"};
    out.truncated = (r.flags & INSTAR_CHECK_TEXT_TRUNCATED) != 0;
    return out;
}

Expected<CheckReport> run_check(const CheckOptions& opts, const PluginRegistry& plugins,
                                const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};
    InfoOptions io;
    io.filename = opts.filename;
    io.format = opts.format;
    io.allow_paths = opts.allow_paths;
    io.unsafe_quirks = opts.unsafe_quirks;
    io.read_write = opts.fix != 0; // check -r opens the image read-write
    io.opens_without_key = !opts.secret;
    io.backing_in_one_node = true;
    io.backing_keys = opts.backing_keys;
    // qemu opens the image with its backing chain: a missing backing file fails the check's open
    // ("Could not open 'T': Could not open backing file: ...", exit 1).
    io.backing_chain = true;
    // -r: qemu's read-write open replays first (a vhdx log), and its check counts that replay as
    // one fixed corruption (vhdx_co_check's log_replayed_on_open; docs/check.md).
    bool replayed = false;
    if (opts.fix) {
        auto r = replay_named_image(plugins, opts.filename, opts.format, sandbox, qemu_version);
        if (!r)
            return Error{r.error()};
        replayed = *r;
    }
    OpenedChain chain;
    OpenedChain fallback;
    const ChainLink* found = nullptr;
    // A check that reads an image standing alone: one sandbox start (info_first.h); its inspection
    // is reused when the guest did not go on.
    std::optional<vmm::RunResult> quick;
    std::vector<std::optional<PrefetchedInfo>> prefetched;
    if (opts.fix == 0) {
        QuickRead q;
        q.images = {io};
        q.op = INSTAR_OP_CHECK;
        q.max_virtual_size = QUICK_CHECK_MAX_VIRTUAL;
        q.chains = true; // the check reads the image alone; its backing chain is opened as qemu opens it
        q.prepare = [&](const std::vector<const FirstImage*>& first, QuickCall& call) -> Expected<bool> {
            const instar_check_arg quick_arg{0, qemu_version, 0, 0};
            append_bytes(call.arg, &quick_arg, 1);
            const auto budget = check_budget(first[0]->file.size, QUICK_CHECK_MAX_VIRTUAL, false);
            if (call.config.timeout < budget)
                call.config.timeout = budget;
            return true;
        };
        q.prefetched = &prefetched;
        std::vector<OpenedChain> chains;
        auto r = try_quick_read(q, plugins, sandbox, qemu_version, chains);
        if (!r)
            return Error{r.error()};
        quick = std::move(*r);
        if (quick)
            chain.links = std::move(chains[0].links);
    }
    const GuestInfoRunner run_guest = reusing_inspection(*runner, prefetched, 0);
    if (quick) {
        found = &chain.links.front();
    } else if (auto opened = open_chain(io, plugins, run_guest, chain); !opened) {
        // qemu opens a qcow2 for check without reading its snapshot table (qcow2_do_open in check
        // mode); the check reads it and reports what is wrong with it. So when info refused a qcow2
        // because of that table, the qcow2 check runs anyway and says it in check's words.
        std::string lower = opened.error();
        for (auto& ch : lower)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const LoadedPlugin* qcow2 = plugins.find("qcow2");
        if (lower.find("snapshot") == std::string::npos || qcow2 == nullptr ||
            (opts.format && *opts.format != "qcow2"))
            return unlock_above_failure(chain, Error{opened.error()}, opts.secret, opts.backing_secret,
                                        opts.filename, sandbox, qemu_version);
        auto top = open_user_file(opts.filename);
        if (!top)
            return Error{opened.error()};
        fallback.links.push_back(ChainLink{*top, {}, qcow2, {}, opts.filename, {}});
        unsigned char magic[4] = {};
        if (::pread(top->fd, magic, sizeof magic, 0) != 4 || std::memcmp(magic, "QFI\xfb", 4) != 0)
            return Error{opened.error()};
        fallback.links.back().node.format = "qcow2";
        found = &fallback.links.back();
    } else {
        found = &chain.links.front();
    }
    const ChainLink& link = *found;
    // qemu-img check -r opens the image read-write, and qemu's vmdk driver refuses that for a
    // seSparse extent (vmdk_open_se_sparse) before any check: the same words and exit code.
    if (opts.fix && has_sesparse_extent(link.node))
        return Error{"Could not open '" + opts.filename + "': No write support for seSparse images available"};
    // qemu-img check opens the image for I/O (info does not): an encrypted image's key is unlocked
    // (ops/map_op.h's unlock_image), though the check itself reads no data.
    if (auto unlocked = unlock_image(link, opts.secret, sandbox, qemu_version); !unlocked)
        return Error{unlocked.error()};
    // ... and so is each encrypted backing image's, below it in qemu's frame ("Could not open 'T':
    // Could not open backing file: Parameter 'encrypt.key-secret' is required for cipher").
    const bool whole_chain = fallback.links.empty(); // (the snapshot-table fallback opened the top alone)
    if (whole_chain) {
        if (auto named = assign_backing_secrets(chain, opts.backing_secret, opts.filename, sandbox, qemu_version, 1);
            !named)
            return Error{named.error()};
        if (auto keys = unlock_chain(chain, chain.links.size(), opts.filename, sandbox, qemu_version, 1); !keys)
            return Error{keys.error()};
    }
    std::optional<vmm::RunResult> ran = std::move(quick);
    if (!ran) {
        auto r = run_check_op(link, opts, sandbox, qemu_version);
        if (!r)
            return Error{r.error()};
        ran = std::move(*r);
    }
    // qemu allocates its reference-count array on the heap, as large as the file needs. Where instar's
    // does not fit in the guest RAM and the user set no cap, the check runs once more with the
    // largest guest RAM (docs/check.md, "Memory bound"). A repair runs again only where the run
    // that ran out changed nothing (the host counts every call that could have): the array is
    // allocated before the first write, so that is every such run, but the host does not take the
    // guest's word for it.
    std::uint64_t ram_cap = sandbox.max_guest_memory; // the last run's
    for (auto larger = vmm::roomier(sandbox);
         static_cast<guest::Status>(ran->exit_status) == guest::Status::NoMemory &&
         (!opts.fix || ran->device_changes == 0) && larger;
         larger = vmm::roomier(*larger)) {
        auto r = run_check_op(link, opts, *larger, qemu_version);
        if (!r)
            return Error{r.error()};
        ran = std::move(*r);
        ram_cap = larger->max_guest_memory;
    }
    const vmm::RunResult* run = &*ran;
    const auto status = static_cast<guest::Status>(run->exit_status);
    if (status != guest::Status::Ok) {
        CheckReport failed;
        failed.format = link.node.format;
        failed.diagnostics = partial_text(run->records, run->host_errno);
        if (status == guest::Status::TooLarge)
            failed.failure = "Check failed: '" + opts.filename +
                             "' has more clusters than instar's in-guest check allows (QCOW2_CHECK_MAX_CLUSTERS = "
                             "2^28, docs/check.md)";
        else if (status == guest::Status::NoMemory)
            failed.failure = "Check failed: the check's reference-count array for '" + opts.filename +
                             "' does not fit in guest memory" +
                             (ram_cap < INSTAR_MAX_GUEST_MEMORY
                                  ? "; raise --max-guest-memory (docs/check.md)"
                                  : " (" + std::to_string(INSTAR_MAX_GUEST_MEMORY >> 30) +
                                        " GiB, the most a guest gets; docs/check.md)");
        else if (status == guest::Status::Unsupported && opts.fix)
            failed.failure = "Check failed: this image needs a repair instar does not implement (a refcount "
                             "block so far past the end of the file that instar's in-guest array cannot follow "
                             "it; docs/check.md); the file was extended with zeros to that block as qemu's "
                             "repair does, nothing else was written";
        else
            failed.failure = "Check failed: " + status_message(status);
        return failed;
    }
    auto report = decode_check_records(run->records, run->host_errno);
    if (!report)
        return Error{report.error()};
    report->format = link.node.format;
    if (replayed)
        ++report->result.corruptions_fixed;
    return report;
}

} // namespace instar
