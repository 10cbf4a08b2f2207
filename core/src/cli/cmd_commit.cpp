// `instar commit`: qemu-img commit's command line, messages and exit codes; the data is copied into
// the base in the sandbox and the top emptied through the edit path (ops/commit_op, docs/commit.md).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/commit_op.h"
#include "output/progress.h"

#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view COMMIT_HELP =
    "Usage:\n"
    "Commit image to its backing file.  Usage:\n"
    "\n"
    "  qemu-img commit [-f FMT | --image-opts] [-t CACHE_MODE] [-b BASE_IMG] [-d]\n"
    "        [-r RATE] [--object OBJDEF] FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operations\n"
    "  -p, --progress\n"
    "     show operation progress\n"
    "  -f, --format FMT\n"
    "     specify FILENAME image format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -t, --cache CACHE_MODE image cache mode (writeback)\n"
    "  -d, --drop\n"
    "     skip emptying FILENAME on completion\n"
    "  -b, --base BASE_IMG\n"
    "     image in the backing chain to which to commit changes\n"
    "     instead of the previous one (implies --drop)\n"
    "  -r, --rate RATE\n"
    "     I/O rate limit\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME\n"
    "     name of the image file to operate on\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

// qemu-img 7.2's commit knows only these long options; 10.0's Debian build adds --format, --cache,
// --base, --drop, --progress, --quiet and --rate, which 7.2 refuses as unrecognised.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts"};
constexpr std::string_view LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "qemu-version",
                                                    "max-guest-memory"};

} // namespace

int cmd_commit(Context& ctx, std::span<const std::string> args) {
    if (auto refused = refuse_unknown_long_options(ctx, "commit", args, LONG_OPTIONS_72, LONG_OPTIONS_INSTAR))
        return *refused;
    po::options_description opts("commit options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::string>())
        ("cache,t", po::value<std::string>())
        ("base,b", po::value<std::string>())
        ("drop,d", "")
        ("progress,p", "")
        ("quiet,q", "")
        ("rate,r", po::value<std::string>())
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "commit", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, COMMIT_HELP);
        return 0;
    }
    auto has = [&](const char* k) { return vm.count(k) > 0; };
    std::uint64_t rate_limit = 0;
    if (auto bad = each_value(*parsed, "rate", [&](const std::string& v) { return parse_rate_limit(ctx, v, rate_limit); }))
        return *bad;
    const bool quiet = has("quiet");
    if (parsed->positional.size() != 1)
        return report_usage_error(ctx, "commit", "Expecting one image file name");
    const std::string cache = has("cache") ? vm["cache"].as<std::string>() : std::string("writeback");
    if (!valid_cache_mode(cache))
        return report_error(ctx, "Invalid cache option: " + cache);
    const bool image_opts = has("image-opts");
    if (image_opts && has("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    // A plain name, file:NAME, json:{...}, or with --image-opts an option list: local files only.
    const std::string& given = parsed->positional[0];
    // backing.[…]encrypt.key-secret / key-secret: the secrets of an encrypted base or images between.
    auto name = image_opts ? parse_image_opts(given, true) : parse_image_name(given, true, true);
    if (!name)
        return report_error(ctx, "Could not open '" + given + "': " + name.error());
    for (const auto& w : name->warnings)
        report_warning(ctx, w);

    CommitSpec spec;
    spec.filename = name->path;
    auto secrets = command_secrets(vm);
    if (!secrets)
        return report_error(ctx, secrets.error());
    auto secret = image_secret(*secrets, *name);
    if (!secret)
        return report_error(ctx, secret.error());
    spec.secret = std::move(*secret);
    spec.given = name->given;
    spec.overridden_levels = name->backing_strong.size();
    spec.level_name = [&](std::size_t depth, const std::vector<std::pair<std::string, std::string>>& below) {
        ImageName level;
        level.path = level.display = below.front().second;
        level.strong = name->backing_strong[depth - 1];
        level.backing_strong.assign(name->backing_strong.begin() + static_cast<std::ptrdiff_t>(depth),
                                    name->backing_strong.end());
        return image_display_name(level, below.front().first, {below.begin() + 1, below.end()});
    };
    spec.backing_secret = backing_secret_fn(*secrets, *name);
    spec.backing_keys = backing_keys_named(vm, *name);
    if (has("format"))
        spec.format = vm["format"].as<std::string>();
    else if (name->format)
        spec.format = name->format;
    if (has("base"))
        spec.base = vm["base"].as<std::string>();
    spec.drop = has("drop") || has("base"); // qemu: -b implies -d
    spec.cache = cache;
    spec.rate_limit = rate_limit;
    spec.unsafe_quirks = has("unsafe-quirks");
    if (has("allow-path"))
        spec.allow_paths = vm["allow-path"].as<std::vector<std::string>>();

    // qemu-img starts its progress display once the image is open; the display ends on every exit
    // after that. instar opens inside commit_image, so the first figure comes with the first report.
    Progress progress(has("progress") && !quiet ? Progress::Mode::Human : Progress::Mode::Off, ctx.out, ctx.err,
                      "commit");
    if (has("progress") && !quiet) {
        progress.print(0, 100);
        // 100% is printed once, when the job is over (qemu-img's run_block_job).
        spec.progress = [&](std::uint64_t done, std::uint64_t total) {
            if (done < total)
                progress.work(done, total);
        };
    }
    spec.diagnostics = [&](const std::string& text) { print_guest_text(ctx, text); };
    auto done = commit_image(spec, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version);
    if (!done) {
        progress.end();
        return report_error(ctx, quote_given(*name, done.error()));
    }
    progress.print(100, 0);
    progress.end();
    if (!quiet)
        ctx.out << "Image committed.\n";
    return 0;
}

} // namespace instar::cli
