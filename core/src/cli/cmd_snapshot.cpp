// `instar snapshot`: qemu-img snapshot's command line, output and exit codes (docs/snapshot.md).
// -l prints the snapshot list info's guest run parsed (dates in the host's local time zone); -c, -a
// and -d run INSTAR_OP_EDIT with the qcow2 guest half (qcow2_edit_snapshot.cpp). Other formats
// have no internal snapshots: qemu-img's refusals are worded here.
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/edit_op.h"
#include "ops/image_range.h"
#include "output/info_render.h"

#include <instar/guest/edit_snapshot.h>

#include <cstring>
#include <optional>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view SNAPSHOT_HELP =
    "Usage:\n"
    "List or manipulate snapshots within image.  Usage:\n"
    "\n"
    "  qemu-img snapshot [-f FMT | --image-opts] [-l | -a|-c|-d SNAPSHOT]\n"
    "        [-U] [--object OBJDEF] FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "      quiet operations\n"
    "  -f, --format FMT\n"
    "      specify FILENAME format explicitly\n"
    "  --image-opts\n"
    "      indicates that FILENAME is a complete image specification\n"
    "   instead of a file name (incompatible with --format)\n"
    "  -U, --force-share\n"
    "      open image in shared mode for concurrent access\n"
    "  --object OBJDEF\n"
    "      QEMU user-creatable object (eg encryption key)\n"
    "  Operation, one of:\n"
    "    -l, --list\n"
    "       list snapshots in FILENAME (the default)\n"
    "    -c, --create SNAPSHOT\n"
    "       create named snapshot\n"
    "    -a, --apply SNAPSHOT\n"
    "       apply named snapshot to the base\n"
    "    -d, --delete SNAPSHOT\n"
    "       delete named snapshot\n"
    "  FILENAME - image file name (or specification with --image-opts)\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

// qemu's QEMUSnapshotInfo holds id_str[128] and name[256]: bdrv_snapshot_list copies with pstrcpy,
// so the list (and qemu-img's lookup by name, and -c's name) sees at most this many bytes.
constexpr std::size_t QEMU_SNAPSHOT_ID_MAX = 127;
constexpr std::size_t QEMU_SNAPSHOT_NAME_MAX = 255;

enum class Action { None, List, Apply, Create, Delete };

// The action options in the order given (qemu-img refuses the second one while parsing). Values
// of value-taking options are skipped; `short_values` are the short options that take one.
int count_actions(std::span<const std::string> args, bool v10) {
    int n = 0;
    const std::string short_values = v10 ? "acdf" : "acd";
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.rfind("--", 0) == 0) {
            const std::string name = long_option_name(a);
            const bool has_eq = a.find('=') != std::string::npos;
            if (v10 && (name == "list" || name == "create" || name == "apply" || name == "delete"))
                ++n;
            const bool takes = name == "create" || name == "apply" || name == "delete" || name == "format" ||
                               name == "object" || name == "allow-path" || name == "qemu-version" ||
                               name == "max-guest-memory";
            if (takes && !has_eq)
                ++i;
            continue;
        }
        if (a.size() < 2 || a[0] != '-')
            continue;
        for (std::size_t k = 1; k < a.size(); ++k) {
            const char c = a[k];
            if (c == 'l' || c == 'a' || c == 'c' || c == 'd')
                ++n;
            if (short_values.find(c) != std::string::npos) {
                if (k + 1 == a.size())
                    ++i;
                break;
            }
        }
    }
    return n;
}

std::string truncated(const std::string& s, std::size_t max) { return s.size() > max ? s.substr(0, max) : s; }

// The guest's SnapshotResult record in an edit's report (the last one), if it sent one.
std::optional<guest::SnapshotResult> snapshot_result(const EditReport& r) {
    std::optional<guest::SnapshotResult> out;
    for (const auto& [kind, bytes] : r.data)
        if (kind == guest::SNAPSHOT_REC_RESULT && bytes.size() == sizeof(guest::SnapshotResult)) {
            guest::SnapshotResult res{};
            std::memcpy(&res, bytes.data(), sizeof res);
            out = res;
        }
    return out;
}

// Whether an edit's report asks to be run again with the backing image's size (the guest wrote
// nothing: guest::SNAPSHOT_FAIL_NEED_BACKING_SIZE).
bool needs_backing_size(const EditReport& r) {
    if (r.status != guest::Status::Ok)
        return false;
    const auto res = snapshot_result(r);
    return res && res->error != 0 && res->shape == guest::SNAPSHOT_FAIL_NEED_BACKING_SIZE;
}

} // namespace

int cmd_snapshot(Context& ctx, std::span<const std::string> args) {
    const bool v10 = ctx.profile.getopt_messages();
    po::options_description opts("snapshot options");
    opts.add_options()
        ("help,h", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("force-share,U", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    // 7.2 knows -l -a -c -d -q (short only) and no -f; 10.0's Debian build adds the long names.
    if (v10)
        opts.add_options()
            ("list,l", "")
            ("apply,a", po::value<std::vector<std::string>>())
            ("create,c", po::value<std::vector<std::string>>())
            ("delete,d", po::value<std::vector<std::string>>())
            ("quiet,q", "")
            ("format,f", po::value<std::string>());
    else
        opts.add_options()
            (",l", "")
            (",a", po::value<std::vector<std::string>>())
            (",c", po::value<std::vector<std::string>>())
            (",d", po::value<std::vector<std::string>>())
            (",q", "");
    int parse_status = 0;
    auto parsed = parse_command(ctx, "snapshot", opts, args, parse_status);
    if (!parsed)
        return parse_status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, SNAPSHOT_HELP);
        return 0;
    }
    if (count_actions(args, v10) > 1)
        return report_usage_error(ctx, "snapshot", "Cannot mix '-l', '-a', '-c', '-d'");
    // boost names a short-only option by its "-x" form.
    auto key = [&](const char* l, const char* s) { return v10 ? std::string(l) : std::string("-") + s; };
    Action action = Action::None;
    std::string snapshot_name;
    if (vm.count(key("list", "l"))) {
        action = Action::List;
    } else if (vm.count(key("apply", "a"))) {
        action = Action::Apply;
        snapshot_name = vm[key("apply", "a")].as<std::vector<std::string>>().front();
    } else if (vm.count(key("create", "c"))) {
        action = Action::Create;
        snapshot_name = vm[key("create", "c")].as<std::vector<std::string>>().front();
    } else if (vm.count(key("delete", "d"))) {
        action = Action::Delete;
        snapshot_name = vm[key("delete", "d")].as<std::vector<std::string>>().front();
    } else if (v10) {
        action = Action::List; // 10.0: listing is the default; 7.2 opens read-write and does nothing
    }
    if (parsed->positional.size() != 1)
        return report_usage_error(ctx, "snapshot", "Expecting one image file name");
    const std::string& given = parsed->positional[0];
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && vm.count("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    auto name = image_opts ? parse_image_opts(given, true) : parse_image_name(given, true, true);
    if (!name)
        return report_error(ctx, "Could not open '" + given + "': " + name.error());
    for (const auto& w : name->warnings)
        report_warning(ctx, w);
    const bool read_only = action == Action::List;
    if (!read_only && vm.count("force-share"))
        return report_error(ctx, "Could not open '" + given + "': force-share=on can only be used with read-only images");

    EditOpen eo;
    eo.filename = name->path;
    if (vm.count("format"))
        eo.format = vm["format"].as<std::string>();
    else if (name->format)
        eo.format = name->format;
    eo.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    eo.backing_chain = true; // qemu-img opens the backing chain: a missing backing file is an error
    eo.read_write = !read_only;
    eo.repair_dirty = [&](const std::string& text) { print_guest_text(ctx, text); }; // qemu's read-write open
    eo.secret = named_image_secret(vm, *name);
    const OpenKey open_with = open_key(vm, *name); // qemu looks a luks key up before it reads the header
    eo.opens_without_key = open_with.without;
    eo.backing_keys = backing_keys_named(vm, *name);
    if (vm.count("allow-path"))
        eo.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    // The command's argument bytes (guest::SnapshotArgs, then the id and the name).
    OpenedChain chain;
    auto snapshot_args = [&chain](Action act, const std::string& id, const std::string& sn) {
        guest::SnapshotArgs a{};
        a.action = act == Action::Create  ? guest::SNAPSHOT_ACTION_CREATE
                   : act == Action::Apply ? guest::SNAPSHOT_ACTION_APPLY
                                          : guest::SNAPSHOT_ACTION_DELETE;
        a.id_len = static_cast<std::uint32_t>(id.size());
        a.name_len = static_cast<std::uint32_t>(sn.size());
        if (chain.links.size() > 1) { // -a may grow an overlay's disk (qemu zeroes where the backing reaches)
            a.flags |= guest::SNAPSHOT_HAS_BACKING;
            a.backing_size = chain.links[1].node.virtual_size;
        }
        std::vector<std::uint8_t> bytes(sizeof a);
        std::memcpy(bytes.data(), &a, sizeof a);
        bytes.insert(bytes.end(), id.begin(), id.end());
        bytes.insert(bytes.end(), sn.begin(), sn.end());
        return bytes;
    };
    // -c and -a on a qcow2 image that stands alone: one sandbox start (edit_op's try_quick_edit);
    // everything else (and every refusal before the change) goes the ordinary way.
    std::optional<EditReport> quick;
    bool reopened = false; // the one-start path opened the chain but the edit must run again
    std::optional<PrefetchedInfo> prefetched;
    if (action == Action::Create || action == Action::Apply) {
        QuickEdit q;
        q.open = eo;
        q.filename = given;
        q.command = guest::EditCommand::Snapshot;
        q.args = snapshot_args(action, "",
                               action == Action::Create ? truncated(snapshot_name, QEMU_SNAPSHOT_NAME_MAX)
                                                        : snapshot_name);
        q.accept = [](const LoadedPlugin& p) { return p.answers_to("qcow2"); };
        q.prefetched = &prefetched;
        EditReport r;
        auto done = try_quick_edit(q, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain, r);
        if (!done)
            return report_error(ctx, done.error());
        if (*done) {
            // -a that must grow an overlay's disk needs the backing image's size, which this start
            // learnt only while it ran: the chain is open; the edit runs again with the size.
            if (!needs_backing_size(r))
                quick = std::move(r);
            else
                reopened = true;
        }
    }
    EditOpen first_open = eo; // the quick attempt's inspection is not run again
    first_open.prefetched = prefetched ? &*prefetched : nullptr;
    if (!quick && !reopened)
        if (auto ok = open_for_edit(first_open, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain); !ok)
            return report_error(ctx, after_unlocking_above(vm, *name, chain,
                                                      missing_key(quote_given(*name, ok.error()), open_with),
                                                      ctx.sandbox_config(), ctx.profile.version));
    const ChainLink& link = chain.links.front();
    const std::string& format = link.node.format;
    // qemu-img snapshot opens the image for I/O: an encrypted image's key is unlocked (named only
    // through json: or --image-opts). Snapshots change metadata only, which qcow2 does not encrypt,
    // but -a growing an overlay may write zeros into its last cluster (qcow2_truncate.h): the key
    // goes to the edit.
    auto unlocked = unlock_chain_for_command(vm, *name, chain, ctx.sandbox_config(), ctx.profile.version);
    if (!unlocked)
        return report_error(ctx, unlocked.error());

    if (action == Action::List) {
        const auto& sns = link.node.snapshots;
        if (sns.empty())
            return 0;
        std::string out = "Snapshot list:\n" + snapshot_row(nullptr, ctx.profile) + "\n";
        for (const auto& s : sns) {
            SnapshotEntry e = s;
            e.id = truncated(e.id, QEMU_SNAPSHOT_ID_MAX);
            e.name = truncated(e.name, QEMU_SNAPSHOT_NAME_MAX);
            out += snapshot_row(&e, ctx.profile) + "\n";
        }
        ctx.out << out;
        return 0;
    }
    // Opening read-write a raw image whose format was probed: qemu's warning.
    // -a prints it twice: qemu's snapshot fallback reopens the raw node.
    if (format == "raw" && !eo.format)
        for (int i = 0; i < (action == Action::Apply ? 2 : 1); ++i)
            ctx.err << "WARNING: Image format was not specified for '" << given
                    << "' and probing guessed raw.\n"
                       "         Automatically detecting the format is dangerous for raw images, write operations on "
                       "block 0 will be restricted.\n"
                       "         Specify the 'raw' format explicitly to remove the restrictions.\n";
    if (action == Action::None)
        return 0;

    auto create_failed = [&](int err) {
        if (v10)
            return report_error(ctx, "Could not create snapshot '" + snapshot_name + "': " + std::strerror(-err));
        return report_error(ctx, "Could not create snapshot '" + snapshot_name + "': " + std::to_string(err) + " (" +
                                     std::strerror(-err) + ")");
    };
    const std::string verb = action == Action::Create ? "create" : action == Action::Apply ? "apply" : "delete";
    std::string sn_id, sn_name;
    if (action == Action::Delete) {
        // qemu-img's bdrv_snapshot_find: by name in the (truncated) list, first match.
        const SnapshotEntry* found = nullptr;
        for (const auto& s : link.node.snapshots)
            if (truncated(s.name, QEMU_SNAPSHOT_NAME_MAX) == snapshot_name) {
                found = &s;
                break;
            }
        if (found == nullptr)
            return report_error(ctx, "Could not delete snapshot '" + snapshot_name + "': snapshot not found");
        sn_id = truncated(found->id, QEMU_SNAPSHOT_ID_MAX);
        sn_name = truncated(found->name, QEMU_SNAPSHOT_NAME_MAX);
    } else if (action == Action::Create) {
        sn_name = truncated(snapshot_name, QEMU_SNAPSHOT_NAME_MAX);
        // pstrcpy stops at a NUL too, but a command-line argument has none.
    } else {
        sn_name = snapshot_name;
    }
    if (format != "qcow2") {
        if (action == Action::Create)
            return create_failed(-95);
        if (action == Action::Apply)
            return report_error(ctx, "Could not apply snapshot '" + snapshot_name +
                                         "': Block driver does not support snapshots");
        return report_error(ctx, "Could not delete snapshot '" + snapshot_name + "': snapshot not found");
    }

    EditCall call;
    call.link = &link;
    call.filename = given;
    call.command = guest::EditCommand::Snapshot;
    call.args = snapshot_args(action, sn_id, sn_name);
    call.write = true;
    if (*unlocked)
        call.secrets = {*unlocked};
    Expected<EditReport> report =
        quick ? Expected<EditReport>(std::move(*quick)) : run_edit(call, ctx.sandbox_config(), ctx.profile.version);
    // -a growing an overlay from inside a cluster it does not map: the truncate asked for the
    // backing chain's bytes of that cluster (as resize does) and wrote nothing; read them in a
    // sandbox of their own and apply again with them.
    if (action == Action::Apply) {
        auto bytes = read_asked_backing_bytes(report, chain, eo.allow_paths, eo.unsafe_quirks, ctx.plugins(),
                                              ctx.sandbox_config(), ctx.profile.version);
        if (!bytes)
            return report_error(ctx, "Could not apply snapshot '" + snapshot_name + "': " + bytes.error());
        if (!bytes->empty()) {
            guest::SnapshotArgs a{};
            std::memcpy(&a, call.args.data(), sizeof a);
            a.flags |= guest::SNAPSHOT_BACKING_BYTES;
            std::memcpy(call.args.data(), &a, sizeof a);
            call.extra = range_devices(*bytes);
            report = run_edit(call, ctx.sandbox_config(), ctx.profile.version);
        }
    }
    if (!report)
        return report_error(ctx, report.error());
    print_guest_text(ctx, report->err);
    ctx.out << report->out;
    if (report->status != guest::Status::Ok) {
        const std::string why = report->reason.empty() ? status_message(report->status) : report->reason;
        return report_error(ctx, "Could not " + verb + " snapshot '" + snapshot_name + "': " + why);
    }
    const std::optional<guest::SnapshotResult> got = snapshot_result(*report);
    if (!got)
        return report_error(ctx, "Could not " + verb + " snapshot '" + snapshot_name + "': the sandbox sent no result");
    const guest::SnapshotResult r = *got;
    if (r.error == 0)
        return 0;
    if (r.error > 0 || r.error < -4095)
        return report_error(ctx, "Could not " + verb + " snapshot '" + snapshot_name + "': bad result from the sandbox");
    const std::string prefix = "Could not " + verb + " snapshot '" + snapshot_name + "': ";
    if (r.shape == guest::SNAPSHOT_FAIL_MESSAGE)
        return report_error(ctx, prefix + report->reason);
    if (r.shape == guest::SNAPSHOT_FAIL_MESSAGE_ERRNO)
        return report_error(ctx, prefix + report->reason + ": " + std::strerror(-r.error));
    if (action == Action::Create)
        return create_failed(r.error);
    if (action == Action::Apply)
        return report_error(ctx, prefix + "Failed to load snapshot: " + std::strerror(-r.error));
    return report_error(ctx, prefix + std::strerror(-r.error));
}

} // namespace instar::cli
