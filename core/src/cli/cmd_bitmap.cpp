// `instar bitmap`: qemu-img bitmap's command line; the qcow2 guest half changes the persistent
// bitmaps in place (INSTAR_OP_EDIT, EditCommand::Bitmap, docs/bitmap.md).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/edit_op.h"
#include "options/size.h"

#include <instar/guest/edit_bitmap.h>

#include <sys/random.h>

#include <cstring>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view BITMAP_HELP =
    "Usage:\n"
    "Perform modifications of the persistent bitmap in the image.  Usage:\n"
    "\n"
    "  qemu-img bitmap ( --merge SOURCE | --add | --remove | --clear |\n"
    "                --enable | --disable ).. [-f FMT | --image-opts]\n"
    "        [ -b SRC_FILENAME [-F SOURCE_FMT]] [-g SIZE[KMGTPE]] [--object OBJDEF]\n"
    "        FILENAME BITMAP\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -f, --format FMT\n"
    "     specify FILENAME format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  --add\n"
    "     creates BITMAP, enables to record future edits\n"
    "   -g, --granularity SIZE[KMGTPE]\n"
    "     sets non-default bitmap granularity for --add to this size\n"
    "  --remove\n"
    "     removes BITMAP\n"
    "  --clear\n"
    "     clears BITMAP\n"
    "  --enable, --disable\n"
    "     starts and stops recording future edits to BITMAP\n"
    "  --merge SRC_FILENAME\n"
    "     merges contents of SRC_FILENAME bitmap into BITMAP\n"
    "   -b, --source-file SRC_FILENAME\n"
    "     select alternative source file for --merge\n"
    "   -F, --source-format SRC_FMT\n"
    "     specify format for SRC_FILENAME explicitly\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

struct Action {
    guest::BitmapActionKind kind;
    std::string src;
    const char* op;
};

// The actions in command-line order (program_options keeps no order across options), and `rest`:
// the arguments without them, for program_options. Values of options that take one are skipped, as
// getopt consumes them ("-b --add" names the file "--add").
std::vector<Action> take_actions(std::span<const std::string> args, std::vector<std::string>& rest, bool& missing_merge) {
    static constexpr std::string_view SHORT_WITH_VALUE[] = {"-b", "-f", "-F", "-g"};
    static constexpr std::string_view LONG_WITH_VALUE[] = {"--object", "--source-file", "--source-format",
                                                           "--granularity", "--allow-path", "--qemu-version",
                                                           "--max-guest-memory", "--sandbox"};
    std::vector<Action> out;
    missing_merge = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--") {
            rest.insert(rest.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
            break;
        }
        using K = guest::BitmapActionKind;
        if (a == "--add") {
            out.push_back({K::Add, {}, "add"});
        } else if (a == "--remove") {
            out.push_back({K::Remove, {}, "remove"});
        } else if (a == "--clear") {
            out.push_back({K::Clear, {}, "clear"});
        } else if (a == "--enable") {
            out.push_back({K::Enable, {}, "enable"});
        } else if (a == "--disable") {
            out.push_back({K::Disable, {}, "disable"});
        } else if (a.rfind("--merge=", 0) == 0) {
            out.push_back({K::Merge, a.substr(8), "merge"});
        } else if (a == "--merge") {
            if (i + 1 >= args.size()) {
                missing_merge = true;
                rest.push_back(a);
                continue;
            }
            out.push_back({K::Merge, args[++i], "merge"});
        } else {
            rest.push_back(a);
            bool takes = false;
            for (auto s : SHORT_WITH_VALUE)
                takes = takes || a == s;
            for (auto l : LONG_WITH_VALUE)
                takes = takes || a == l;
            if (takes && i + 1 < args.size())
                rest.push_back(args[++i]);
        }
    }
    return out;
}

template <class T>
void put(std::vector<std::uint8_t>& out, const T& v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

void put_str(std::vector<std::uint8_t>& out, const std::string& s) { out.insert(out.end(), s.begin(), s.end()); }

// The node name qemu prints: --image-opts' node-name, else its generated "#block" name (a counter,
// 1 for the first node qemu-img opens, then two random digits).
std::string node_name(bool image_opts, const std::string& given) {
    if (image_opts) {
        std::size_t start = 0;
        while (start <= given.size()) {
            const std::size_t end = std::min(given.find(',', start), given.size());
            const std::string kv = given.substr(start, end - start);
            if (kv.rfind("node-name=", 0) == 0)
                return kv.substr(10);
            start = end + 1;
        }
    }
    unsigned char r = 0;
    if (::getrandom(&r, 1, 0) != 1)
        r = 0;
    const unsigned n = r % 100u;
    return std::string("#block1") + static_cast<char>('0' + n / 10) + static_cast<char>('0' + n % 10);
}

// Last value of a repeatable option (getopt keeps the last).
std::optional<std::string> last(const po::variables_map& vm, const char* name) {
    if (!vm.count(name))
        return std::nullopt;
    return vm[name].as<std::vector<std::string>>().back();
}

} // namespace

int cmd_bitmap(Context& ctx, std::span<const std::string> args) {
    static constexpr std::string_view KNOWN[] = {"help",      "object",      "image-opts",    "add",
                                                 "remove",    "clear",       "enable",        "disable",
                                                 "merge",     "granularity", "source-file",   "source-format"};
    static constexpr std::string_view OWN[] = {"allow-path", "unsafe-quirks"};
    if (auto st = refuse_unknown_long_options(ctx, "bitmap", args, KNOWN, OWN))
        return *st;
    std::vector<std::string> rest;
    bool missing_merge = false;
    std::vector<Action> actions = take_actions(args, rest, missing_merge);
    if (missing_merge)
        return report_option_error(ctx, "bitmap", OptionErrorKind::MissingArgument, "--merge");

    po::options_description opts("bitmap options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("granularity,g", po::value<std::vector<std::string>>())
        ("source-file,b", po::value<std::vector<std::string>>())
        ("source-format,F", po::value<std::vector<std::string>>())
        ("object", po::value<std::vector<std::string>>())
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "bitmap", opts, rest, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, BITMAP_HELP);
        return 0;
    }
    // cvtnum("granularity", ...) while parsing, then qemu keeps it in a uint32_t (4G becomes 0 and
    // is refused as "not a power of 2"; 0 itself means "not given").
    std::uint64_t granularity = 0;
    bool granularity_given = false;
    // Every value given, in order (qemu checks each as getopt returns it; the last one stands).
    std::vector<std::string> granularities;
    if (vm.count("granularity"))
        granularities = vm["granularity"].as<std::vector<std::string>>();
    for (const std::string& g : granularities) {
        const SizeParse p = parse_qemu_size(g, ctx.profile.version);
        constexpr std::uint64_t MAX = INT64_MAX; // cvtnum's range
        if (p.status == ParseStatus::Invalid) {
            if (ctx.profile.version >= qemu_version(8, 0))
                return report_error(ctx, "Invalid granularity specified: '" + g + "'.");
            report_error(ctx, "Invalid granularity specified. You may use k, M, G, T, P or E suffixes for");
            return report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        if (p.status == ParseStatus::OutOfRange || p.value > MAX)
            return report_error(ctx, "Invalid granularity specified. Must be between 0 and " + std::to_string(MAX) + ".");
        if (p.warning)
            report_warning(ctx, *p.warning);
        granularity = p.value;
        granularity_given = p.value != 0;
    }
    bool add = false, merge = false;
    for (const auto& a : actions) {
        add = add || a.kind == guest::BitmapActionKind::Add;
        merge = merge || a.kind == guest::BitmapActionKind::Merge;
    }
    const auto src_file = last(vm, "source-file");
    const auto src_fmt = last(vm, "source-format");
    if (actions.empty())
        return report_error(ctx, "Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
    if (granularity_given && !add)
        return report_error(ctx, "granularity only supported with --add");
    if (src_fmt && !src_file)
        return report_error(ctx, "-F only supported with -b");
    if (src_file && !merge)
        return report_error(ctx, "Merge bitmap source file only supported with --merge");
    if (parsed->positional.size() != 2)
        return report_error(ctx, "Expecting filename and bitmap name");
    const bool image_opts = vm.count("image-opts") > 0;
    const auto format = last(vm, "format");
    if (image_opts && format)
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    const std::string& given = parsed->positional[0];
    const std::string& bitmap = parsed->positional[1];
    auto name = image_opts ? parse_image_opts(given) : parse_image_name(given, true);
    if (!name)
        return report_error(ctx, "Could not open '" + given + "': " + name.error());
    for (const auto& w : name->warnings)
        report_warning(ctx, w);

    EditOpen eo;
    eo.filename = name->path;
    eo.format = format ? format : name->format;
    eo.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    eo.read_write = true;
    eo.repair_dirty = [&](const std::string& text) { print_guest_text(ctx, text); }; // qemu's read-write open
    eo.secret = named_image_secret(vm, *name);
    const OpenKey open_with = open_key(vm, *name); // qemu looks a luks key up before it reads the header
    eo.opens_without_key = open_with.without;
    if (vm.count("allow-path"))
        eo.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    const auto sandbox = ctx.sandbox_config();
    const std::string node = node_name(image_opts, given);
    // The edit's argument: `todo` (none: qemu-img only opened and closed the image, which stores
    // its bitmaps anew), the bitmap and the node name.
    auto bitmap_args = [&](const std::vector<Action>& todo, std::uint32_t flags) {
        std::vector<std::uint8_t> args;
        guest::BitmapArgs head{};
        head.action_count = static_cast<std::uint32_t>(todo.size());
        head.flags = flags;
        head.granularity = granularity; // the guest keeps qemu's uint32_t truncation
        head.name_len = static_cast<std::uint32_t>(bitmap.size());
        head.node_len = static_cast<std::uint32_t>(node.size());
        put(args, head);
        for (const auto& a : todo) {
            guest::BitmapAction rec{static_cast<std::uint32_t>(a.kind), static_cast<std::uint32_t>(a.src.size())};
            put(args, rec);
            put_str(args, a.src);
        }
        put_str(args, bitmap);
        put_str(args, node);
        return args;
    };
    // What the edit printed and whether it failed: qemu-img's words.
    auto finish = [&](const EditReport& report) -> int {
        ctx.out << report.out;
        for (char c : report.err) {
            if (c == '\x01')
                ctx.err << ctx.prog << ": ";
            else
                ctx.err << c;
        }
        // A failed action printed qemu's message itself (stderr text); a refusal sends a reason.
        if (report.status != guest::Status::Ok)
            return report.reason.empty() ? 1 : report_error(ctx, report.reason);
        return 0;
    };
    OpenedChain chain;
    // Without -b, on a qcow2 image that stands alone: one sandbox start (edit_op's try_quick_edit);
    // everything else goes the ordinary way, reusing the inspection.
    std::optional<PrefetchedInfo> prefetched;
    if (!src_file && !name->unsupported_option && actions.size() <= guest::BITMAP_MAX_ACTIONS) {
        QuickEdit q;
        q.open = eo;
        q.filename = given;
        q.command = guest::EditCommand::Bitmap;
        q.args = bitmap_args(actions, 0);
        q.accept = [](const LoadedPlugin& p) { return p.answers_to("qcow2"); };
        q.prefetched = &prefetched;
        EditReport r;
        auto done = try_quick_edit(q, ctx.plugins(), sandbox, ctx.profile.version, chain, r);
        if (!done)
            return report_error(ctx, done.error());
        if (*done)
            return finish(r);
    }
    EditOpen first_open = eo; // the quick attempt's inspection is not run again
    first_open.prefetched = prefetched ? &*prefetched : nullptr;
    if (auto ok = open_for_edit(first_open, ctx.plugins(), sandbox, ctx.profile.version, chain); !ok)
        return report_error(ctx, missing_key(quote_given(*name, ok.error()), open_with));
    if (name->unsupported_option)
        return report_error(ctx, unsupported_option_error(*name, chain.links.front().node.format));
    const ChainLink& link = chain.links.front();
    // qemu opens the image for I/O: an encrypted one needs its secret (instar needs none to change
    // bitmaps, but answers as qemu-img does).
    auto needs_secret = [](const ChainLink& l, const ImageName* n) {
        return l.node.encrypted.value_or(false) && (n == nullptr || !n->strong.contains("encrypt.key-secret"));
    }; // -b's source (a plain name: it cannot name a secret)
    if (auto unlocked = unlock_for_command(vm, *name, link, sandbox, ctx.profile.version); !unlocked)
        return report_error(ctx, unlocked.error());

    const bool qcow2 = link.node.format == "qcow2";
    // The edit of a qcow2 image.
    auto run = [&](const std::vector<Action>& todo, std::uint32_t flags,
                   std::vector<vmm::Device> extra) -> int {
        EditCall call;
        call.link = &link;
        call.filename = given;
        call.command = guest::EditCommand::Bitmap;
        call.extra = std::move(extra);
        call.args = bitmap_args(todo, flags);
        auto report = run_edit(call, sandbox, ctx.profile.version);
        if (!report)
            return report_error(ctx, report.error());
        return finish(*report);
    };
    // qemu-img fails after opening the image (the source cannot be opened): it still closes the
    // image, which stores its bitmaps.
    auto fail_after_open = [&](const std::string& msg) {
        if (qcow2 && run({}, guest::BITMAP_STORE_ONLY, {}) != 0)
            return 1;
        return report_error(ctx, msg);
    };

    // -b: the source image, read-only, its backing chain not opened (BDRV_O_NO_BACKING).
    OpenedChain src_chain;
    std::vector<vmm::Device> extra;
    bool src_has_bitmaps = true;
    if (src_file) {
        EditOpen so;
        so.filename = *src_file;
        so.format = src_fmt;
        so.unsafe_quirks = eo.unsafe_quirks;
        so.allow_paths = eo.allow_paths;
        if (auto ok = open_for_edit(so, ctx.plugins(), sandbox, ctx.profile.version, src_chain); !ok)
            return fail_after_open(ok.error());
        const ChainLink& s = src_chain.links.front();
        if (needs_secret(s, nullptr))
            return fail_after_open("Could not open '" + *src_file +
                                   "': Parameter 'encrypt.key-secret' is required for cipher");
        src_has_bitmaps = s.node.format == "qcow2";
        if (src_has_bitmaps)
            extra.push_back({s.image.fd, s.image.size, false});
    }

    // Formats other than qcow2 store no bitmaps: the first action fails as qemu's does.
    if (!qcow2) {
        const Action& a = actions.front();
        std::string why;
        if (a.kind != guest::BitmapActionKind::Add)
            why = "Dirty bitmap '" + bitmap + "' not found";
        else if (bitmap.empty())
            why = "Bitmap name cannot be empty";
        else if (const std::uint64_t g32 = granularity & 0xffffffffu; // qmp's uint32_t
                 granularity_given && (g32 < 512 || (g32 & (g32 - 1)) != 0))
            why = "Granularity must be power of 2 and at least 512";
        else
            why = "Can't store persistent bitmaps to " + node + ": Operation not supported";
        return report_error(ctx, std::string("Operation ") + a.op + " on bitmap " + bitmap + " failed: " + why);
    }

    if (actions.size() > guest::BITMAP_MAX_ACTIONS)
        return report_error(ctx, "too many bitmap actions (at most " + std::to_string(guest::BITMAP_MAX_ACTIONS) + ")");
    return run(actions, (src_file ? guest::BITMAP_SOURCE_FILE : 0u) | (src_has_bitmaps ? 0u : guest::BITMAP_SOURCE_EMPTY),
               extra);
}

} // namespace instar::cli
