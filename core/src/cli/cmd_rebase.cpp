// `instar rebase`: qemu-img rebase's command line, messages and exit codes in img_rebase's order.
// The image is parsed and changed by format code in the sandbox: the backing-file switch is
// INSTAR_OP_EDIT's SetBacking (ops/edit_op); safe mode's copy of the clusters that differ between
// the old and the new backing file is INSTAR_OP_REBASE (ops/rebase_op). docs/rebase.md.
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/cache_mode.h"
#include "ops/edit_op.h"
#include "ops/rebase_op.h"
#include "output/progress.h"

#include <instar/guest/edit_backing.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/stat.h>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view REBASE_HELP =
    "Usage:\n"
    "Change backing file of the image.  Usage:\n"
    "\n"
    "  qemu-img rebase [-f FMT | --image-opts] [-t CACHE] [-q] [-U] [-p]\n"
    "        [-b BACKING_FILENAME [-F BACKING_FMT] [-T BACKING_CACHE]] [-u]\n"
    "        [--object OBJDEF] [-c] FILENAME\n"
    "Rebases FILENAME on top of BACKING_FILENAME or no backing file\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operation\n"
    "  -p, --progress\n"
    "     show progress indicator\n"
    "  -f, --format FMT\n"
    "     specify FILENAME format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -t, --cache CACHE\n"
    "     cache mode for FILENAME (writeback)\n"
    "  -b, --backing BACKING_FILENAME|\"\"\n"
    "     rebase onto this file (or no backing file)\n"
    "  -F, --backing-format BACKING_FMT\n"
    "     specify format for BACKING_FILENAME\n"
    "  -T, --backing-cache CACHE\n"
    "     BACKING_FILENAME cache mode (writeback)\n"
    "  -u, --backing-unsafe\n"
    "     do not fail if BACKING_FILENAME can not be read\n"
    "  -c, --compress\n"
    "     compress image (when image supports this)\n"
    "  -U, --force-share\n"
    "     open image in shared mode for concurrent access\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME\n"
    "     image file name (or specification with --image-opts)\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     let backing files in DIR be opened (path policy, docs/usage.md)\n"
    "  --unsafe-quirks\n"
    "     accept images qemu-img accepts but instar refuses by default\n"
    "\n";

// qemu-img 7.2 knows only these long options for rebase (and no -c); 10.0's Debian build adds the rest.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts", "force-share"};
constexpr std::string_view LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "qemu-version",
                                                    "max-guest-memory", "sandbox"};

// The block drivers of qemu-img 7.2 and 10.0 (Debian builds): what bdrv_find_format accepts for -F.
constexpr std::string_view QEMU_DRIVERS[] = {
    "blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress", "copy-before-write", "copy-on-read",
    "dmg", "file", "ftp", "ftps", "gluster", "host_cdrom", "host_device", "http", "https", "iscsi", "iser", "luks",
    "nbd", "nfs", "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2", "qed", "quorum",
    "raw", "rbd", "replication", "snapshot-access", "ssh", "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat"};

bool known_driver(std::string_view name) {
    return std::find(std::begin(QEMU_DRIVERS), std::end(QEMU_DRIVERS), name) != std::end(QEMU_DRIVERS);
}


// qemu-img 7.2's getopt string has no 'c': "-c" (alone or in a cluster) is an unknown option there.
std::optional<std::string> short_c_in_72(std::span<const std::string> args) {
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.size() < 2 || a[0] != '-' || a[1] == '-')
            continue;
        for (std::size_t j = 1; j < a.size(); ++j) {
            const char c = a[j];
            if (c == 'c')
                return a;
            if (std::strchr("fFbtT", c) != nullptr) { // takes a value: the rest, or the next word
                if (j + 1 == a.size())
                    ++i;
                break;
            }
        }
    }
    return std::nullopt;
}

} // namespace

int cmd_rebase(Context& ctx, std::span<const std::string> args) {
    if (auto refused = refuse_unknown_long_options(ctx, "rebase", args, LONG_OPTIONS_72, LONG_OPTIONS_INSTAR))
        return *refused;
    if (!ctx.profile.getopt_messages())
        if (auto tok = short_c_in_72(args))
            return report_option_error(ctx, "rebase", OptionErrorKind::Unknown, *tok);
    po::options_description opts("rebase options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::string>())
        ("backing-format,F", po::value<std::string>())
        ("backing,b", po::value<std::string>())
        ("backing-unsafe,u", "")
        ("progress,p", "")
        ("cache,t", po::value<std::string>())
        ("backing-cache,T", po::value<std::string>())
        ("quiet,q", "")
        ("compress,c", "")
        ("force-share,U", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "rebase", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, REBASE_HELP);
        return 0;
    }
    auto has = [&](const char* k) { return vm.count(k) > 0; };
    auto str = [&](const char* k) { return vm[k].as<std::string>(); };
    // img_rebase makes the --object secrets while it reads its options: their errors come first.
    const auto secrets = command_secrets(vm);
    if (!secrets)
        return report_error(ctx, secrets.error());
    const bool quiet = has("quiet");
    const bool unsafe = has("backing-unsafe");
    if (parsed->positional.size() != 1)
        return report_usage_error(ctx, "rebase", "Expecting one image file name");
    if (!unsafe && !has("backing"))
        return report_usage_error(ctx, "rebase", "Must specify backing file (-b) or use unsafe mode (-u)");
    const std::string& given = parsed->positional[0];
    const std::optional<std::string> backing = has("backing") ? std::optional(str("backing")) : std::nullopt;
    const std::optional<std::string> backing_fmt =
        has("backing-format") ? std::optional(str("backing-format")) : std::nullopt;

    // qemu_progress_init(progress, 2.0) and its first figure: every exit from here ends the display.
    Progress progress(has("progress") && !quiet ? Progress::Mode::Human : Progress::Mode::Off, ctx.out, ctx.err,
                      "rebase");
    progress.set_min_skip(2.0f);
    progress.print(0, 100);
    auto fail = [&](const std::string& msg) {
        report_error(ctx, msg);
        progress.end();
        return 1;
    };
    if (has("cache") && !valid_cache_mode(str("cache")))
        return fail("Invalid cache option: " + str("cache"));
    if (has("backing-cache") && !valid_cache_mode(str("backing-cache")))
        return fail("Invalid source cache option: " + str("backing-cache"));
    // -t: unsafe makes no flush (the copy's, the switch's); every other mode flushes as writeback.
    const std::string cache = has("cache") ? str("cache") : "writeback";

    // img_open: the image, read-write (unsafe mode: without its backing chain).
    const bool image_opts = has("image-opts");
    if (image_opts && has("format"))
        return fail("--image-opts and --format are mutually exclusive");
    auto name = image_opts ? parse_image_opts(given, true) : parse_image_name(given, true, true);
    if (!name)
        return fail("Could not open '" + given + "': " + name.error());
    for (const auto& w : name->warnings)
        report_warning(ctx, w);
    EditOpen eo;
    eo.filename = name->path;
    if (has("format"))
        eo.format = str("format");
    else if (name->format)
        eo.format = name->format;
    eo.unsafe_quirks = has("unsafe-quirks");
    if (has("allow-path"))
        eo.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    eo.backing_chain = !unsafe && !name->no_backing;
    eo.read_write = true;
    eo.repair_dirty = [&](const std::string& text) { print_guest_text(ctx, text); }; // qemu's read-write open
    eo.secret = named_image_secret(vm, *name);
    const OpenKey open_with = open_key(vm, *name); // qemu looks a luks key up before it reads the header
    eo.opens_without_key = open_with.without;
    eo.backing_keys = backing_keys_named(vm, *name);
    // The switch (bdrv_change_backing_file): `-b ""` or no -b detaches.
    const bool detach = !backing || backing->empty();
    const std::string shown = backing ? *backing : std::string();
    // img_rebase reports a failed switch and still prints its last progress figure.
    auto change_failed = [&](const std::string& why) {
        report_error(ctx, "Could not change the backing file to '" + shown + "': " + why);
        progress.print(100, 0);
        progress.end();
        return 1;
    };
    guest::SetBackingArgs a{};
    a.flags = detach ? guest::SET_BACKING_DETACH : 0u;
    const std::string new_name = detach ? std::string() : *backing;
    const std::string new_fmt = detach ? std::string() : backing_fmt.value_or("");
    a.name_len = static_cast<std::uint32_t>(new_name.size());
    a.format_len = static_cast<std::uint32_t>(new_fmt.size());
    std::vector<std::uint8_t> switch_args(sizeof a);
    std::memcpy(switch_args.data(), &a, sizeof a);
    switch_args.insert(switch_args.end(), new_name.begin(), new_name.end());
    switch_args.insert(switch_args.end(), new_fmt.begin(), new_fmt.end());
    // The switch's outcome, whichever start ran it.
    auto switched = [&](const EditReport& report) {
        if (report.status != guest::Status::Ok) {
            // Formats without a backing file (raw, vpc, vhdx): qemu's -ENOTSUP.
            const bool generic = report.reason.empty() ||
                                 report.reason == "this operation is not supported for this image format";
            const std::string why = generic ? std::string(guest::SET_BACKING_UNSUPPORTED) : report.reason;
            const bool qemu_errno = why == guest::SET_BACKING_UNSUPPORTED || why == guest::SET_BACKING_INVALID ||
                                    why == guest::SET_BACKING_NO_SPACE;
            if (qemu_errno)
                return change_failed(why);
            return fail("Could not open '" + given + "': " + why);
        }
        progress.print(100, 0);
        progress.end();
        return 0;
    };

    OpenedChain chain;
    // -u on an image that is not encrypted: inspected and switched in one sandbox start (edit_op's
    // try_quick_edit; qemu-img opens the image without its backing chain, so a backing reference
    // does not stop it), where nothing between the open and the switch can fail; everything else
    // goes the ordinary way, reusing the inspection.
    std::optional<PrefetchedInfo> prefetched;
    if (unsafe && !name->unsupported_option && !has("compress") && (detach || backing_fmt) &&
        (!backing_fmt || known_driver(*backing_fmt))) {
        QuickEdit q;
        q.open = eo;
        q.filename = given;
        q.command = guest::EditCommand::SetBacking;
        q.args = switch_args;
        q.prefetched = &prefetched;
        q.flush = cache_flushes(cache);
        EditReport r;
        auto done = try_quick_edit(q, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain, r);
        if (!done)
            return fail(done.error());
        if (*done)
            return switched(r);
    }
    eo.prefetched = prefetched ? &*prefetched : nullptr;
    if (auto ok = open_for_edit(eo, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain); !ok)
        return fail(after_unlocking_above(vm, *name, chain, missing_key(quote_given(*name, ok.error()), open_with),
                                     ctx.sandbox_config(), ctx.profile.version));
    if (name->unsupported_option)
        return fail(unsupported_option_error(*name, chain.links.front().node.format));
    // An encrypted image: its key unlocked as qemu's open does (qemu's errors for a missing or wrong
    // secret), and the secret kept for safe mode's reads and writes of its data.
    auto secret = unlock_for_command(vm, *name, chain.links.front(), ctx.sandbox_config(), ctx.profile.version);
    if (!secret)
        return fail(secret.error());
    chain.links.front().secret = std::move(*secret);
    // Safe mode reads the old backing chain: each encrypted image there gets the secret its level's
    // backing.[…]key-secret names (qemu looks it up as it opens the chain; the copy's run unlocks
    // the key before it writes anything, with qemu's errors framed as below).
    for (std::size_t d = 1; !unsafe && d < chain.links.size(); ++d) {
        ChainLink& link = chain.links[d];
        if (!link.node.encrypted.value_or(false))
            continue;
        auto id = d <= name->backing_strong.size() ? secret_id(name->backing_strong[d - 1]) : std::nullopt;
        auto bytes = secret_for(*secrets, id);
        if (!bytes) {
            std::string frame = "Could not open '" + given + "': ";
            for (std::size_t i = 0; i < d; ++i)
                frame += "Could not open backing file: ";
            return fail(frame + bytes.error());
        }
        link.secret = std::move(*bytes);
    }
    const ChainLink& top = chain.links.front();
    const std::string& format = top.node.format;

    // Drivers with compressed writes (block_driver_can_compress: CAP_CONVERT_COMPRESS): rebase -c
    // refuses the others.
    if (has("compress") && !((*top.plugin)->capabilities & CAP_CONVERT_COMPRESS))
        return fail("Compression not supported for this file format");
    if (backing_fmt && !known_driver(*backing_fmt))
        return fail("Invalid format name: '" + *backing_fmt + "'");

    // Safe mode: copy into the image every range its old and new backing files disagree on.
    if (!unsafe) {
        RebaseSpec spec;
        spec.chain = &chain;
        spec.filename = given;
        spec.path = name->path;
        std::vector<std::pair<std::string, std::string>> below; // the old chain, for a json: name
        for (std::size_t d = 1; d < chain.links.size(); ++d)
            below.emplace_back(chain.links[d].node.format, chain.links[d].name);
        spec.display = image_display_name(*name, format, below);
        spec.new_backing = *backing;
        spec.new_backing_format = backing_fmt;
        // -b json:{...} or file:NAME: its file (and secret), opened as given, from the working
        // directory, as qemu keeps a name with a protocol.
        if (const std::string proto = protocol_prefix(*backing); proto == "json" || proto == "file") {
            auto parsed = parse_image_name(*backing, true);
            if (!parsed)
                return fail("Could not open new backing file '" + *backing + "': " + parsed.error());
            spec.new_backing_file = parsed->path;
            if (!backing_fmt)
                spec.new_backing_format = parsed->format;
            auto secret = secret_for(*secrets, secret_id(*parsed));
            if (secret)
                spec.new_backing_secret = std::move(*secret);
            else
                spec.new_backing_secret_error = secret.error();
        }
        spec.force_share = has("force-share");
        spec.compress = has("compress");
        spec.cache = cache;
        spec.unsafe_quirks = eo.unsafe_quirks;
        spec.allow_paths = eo.allow_paths;
        if (has("progress") && !quiet) {
            // img_rebase adds local_progress = 100 / (size / MIN(size, IO_BUF_SIZE)) for each step
            // it did not skip; the guest reports each such step.
            spec.progress = [&](std::uint64_t, std::uint64_t total) {
                constexpr std::uint64_t IO_BUF_SIZE = 2u << 20;
                if (total == 0)
                    return;
                const std::uint64_t steps = total / std::min(total, IO_BUF_SIZE);
                progress.print(static_cast<float>(100) / static_cast<float>(steps), 100);
            };
        }
        auto copied = rebase_copy(spec, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version);
        if (!copied)
            return fail(copied.error());
    }

    if (!detach && !backing_fmt)
        return change_failed("backing format must be specified");
    // After a copy the file has grown (instar wrote it, through the same inode): the switch's
    // same-file check expects its new length.
    if (!unsafe) {
        struct stat st {};
        if (::fstat(top.image.fd, &st) != 0)
            return fail("Could not open '" + given + "': " + std::strerror(errno));
        chain.links.front().image.size = static_cast<std::uint64_t>(st.st_size);
    }
    EditCall call;
    call.link = &top;
    call.filename = given;
    call.command = guest::EditCommand::SetBacking;
    call.args = switch_args;
    call.flush = cache_flushes(cache);
    auto report = run_edit(call, ctx.sandbox_config(), ctx.profile.version);
    if (!report)
        return fail(report.error());
    return switched(*report);
}

} // namespace instar::cli
