// `instar convert`: qemu-img convert's command line and img_convert's checks, in qemu's order; the
// copy itself is ops/convert_op (one sandbox run: sources read and target written by format code).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/convert_op.h"
#include "ops/guest_info_runner.h"
#include "ops/info_op.h"
#include "options/option_list.h"
#include "options/size.h"
#include "output/create_line.h"
#include "output/option_help.h"
#include "output/progress.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ostream>

namespace instar::cli {
namespace {

constexpr std::string_view CONVERT_HELP =
    "Usage:\n"
    "Copy one image to another with optional format conversion.  Usage:\n"
    "\n"
    "  qemu-img convert [-f SRC_FMT|--image-opts] [-T SRC_CACHE] [--bitmaps [--skip-broken-bitmaps]]\n"
    "        [-o TGT_OPTS|--target-image-opts] [-t TGT_CACHE] [-n]\n"
    "        [-B BACKING_FILENAME [-F BACKING_FMT]]\n"
    "        SRC_FILENAME [SRC_FILENAME2 [...]] TGT_FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operations\n"
    "  -p, --progress\n"
    "     show operation progress\n"
    "  --progress=json\n"
    "     instar: progress as one JSON object per line on stderr (phase, percent, done, total)\n"
    "  -f, --source-format SRC_FMT\n"
    "     specify SRC_FILENAME source image format explicitly\n"
    "  --source-image-opts\n"
    "     indicates that SRC_FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --source-format)\n"
    "  -l, --source-snapshot SNAPSHOT_PARAMS\n"
    "     specify source snapshot parameters\n"
    "  -T, --source-cache SRC_CACHE\n"
    "     source image(s) cache mode (writeback)\n"
    "  -O, --target-format TGT_FMT\n"
    "     specify TGT_FILENAME image format (default is raw)\n"
    "  --target-image-opts\n"
    "     indicates that TGT_FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --output-format)\n"
    "  -o, --target-options TGT_OPTS\n"
    "     TARGET_FMT-specific options\n"
    "  -c, --compress\n"
    "     create compressed output image (qcow and qcow2 format only)\n"
    "  -t, --target-cache TGT_CACHE\n"
    "     cache mode when opening output image (unsafe)\n"
    "  -B, --backing BACKING_FILENAME\n"
    "     create output to be a CoW on top of BACKING_FILENAME\n"
    "  -F, --backing-format BACKING_FMT\n"
    "     specify BACKING_FILENAME image format explicitly\n"
    "  -n, --no-create\n"
    "     omit target volume creation (eg on rbd)\n"
    "  --target-is-zero\n"
    "  -S, --sparse-size SPARSE_SIZE\n"
    "     XXX todo\n"
    "  --bitmaps\n"
    "     also copy any persistent bitmaps present in source\n"
    "  --skip-broken-bitmaps\n"
    "     skip (do not error out) any broken bitmaps\n"
    "  -U, --force-share\n"
    "     open images in shared mode for concurrent access\n"
    "  -r, --rate RATE\n"
    "     I/O rate limit\n"
    "  -m, --parallel NUM_COROUTINES\n"
    "     specify parallelism (default 8)\n"
    "  -C, --copy-range-offloading\n"
    "     use copy_range offloading\n"
    "  --salvage\n"
    "     XXX todo\n"
    "  -W, --oob-writes\n"
    "     enable out-of-order writes to improve performance\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  SRC_FILENAME\n"
    "     source image file name (or specification with --image-opts)\n"
    "  TGT_FILENAME\n"
    "     target (output) image file name\n"
    "\n";

// qemu-img 7.2 knows only these long options for convert; 10.0's Debian build adds long names for
// most short ones (--source-format, --source-cache, ...; not those below), which 7.2 refuses as
// unrecognised.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts", "force-share", "target-image-opts",
                                                "salvage", "target-is-zero", "bitmaps", "skip-broken-bitmaps"};
// qemu-img 10.0 (Debian's 10.0.2) lists these long names in convert's --help but its getopt table
// lacks them: "unrecognized option". Refused under every profile before 10.1 (10.1's table is not
// verified here); `--progress=VALUE` stays instar's own (--progress=json).
constexpr std::string_view LONG_OPTIONS_UNLISTED_100[] = {"compress",        "no-create",    "progress",
                                                          "source-snapshot", "target-cache", "target-format",
                                                          "target-options"};
// instar's own long options, accepted under every profile.
constexpr std::string_view LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "progress", "qemu-version",
                                                    "max-guest-memory", "sandbox"};


// MAX_BUF_SECTORS in qemu-img: -S is at most 16 MiB.
constexpr std::uint64_t MAX_SPARSE = 32768ull * 512;
constexpr long MAX_COROUTINES = 16;

} // namespace

int cmd_convert(Context& ctx, std::span<const std::string> in_args) {
    // --progress=json (instar) selects JSON lines; a bare -p/--progress is qemu's flag. Rewritten
    // here so the flag never takes the next word as its value.
    std::vector<std::string> args(in_args.begin(), in_args.end());
    std::optional<std::string> progress_mode;
    for (auto& a : args) {
        if (a == "--")
            break;
        if (a.rfind("--progress=", 0) == 0) {
            progress_mode = a.substr(11);
            a = "--progress";
        }
    }
    // 7.2 refuses the long names only 10.0 has (--progress is instar's --progress=json under 7.2).
    if (auto refused = refuse_unknown_long_options(ctx, "convert", args, LONG_OPTIONS_72, LONG_OPTIONS_INSTAR))
        return *refused;
    if (ctx.profile.version < qemu_version(10, 1)) { // 7.2 lacks them as well (a bare --progress too)
        for (const auto& a : in_args) {
            if (a == "--")
                break;
            if (a.rfind("--", 0) != 0 || a.rfind("--progress=", 0) == 0)
                continue;
            const std::string name = long_option_name(a);
            if (std::find(std::begin(LONG_OPTIONS_UNLISTED_100), std::end(LONG_OPTIONS_UNLISTED_100), name) !=
                std::end(LONG_OPTIONS_UNLISTED_100))
                return report_option_error(ctx, "convert", OptionErrorKind::Unknown, a);
        }
    }
    po::options_description opts("convert options");
    opts.add_options()
        ("help,h", "")
        ("quiet,q", "")
        ("source-format,f", po::value<std::string>())
        ("target-format,O", po::value<std::string>())
        ("backing,B", po::value<std::string>())
        ("copy-range-offloading,C", "")
        ("compress,c", "")
        ("backing-format,F", po::value<std::string>())
        ("target-options,o", po::value<std::vector<std::string>>())
        ("source-snapshot,l", po::value<std::string>())
        ("sparse-size,S", po::value<std::string>())
        ("progress,p", "")
        ("target-cache,t", po::value<std::string>())
        ("source-cache,T", po::value<std::string>())
        ("no-create,n", "")
        ("parallel,m", po::value<std::string>())
        ("oob-writes,W", "")
        ("force-share,U", "")
        ("rate,r", po::value<std::string>())
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("source-image-opts", "")
        ("target-image-opts", "")
        ("salvage", "")
        ("target-is-zero", "")
        ("bitmaps", "")
        ("skip-broken-bitmaps", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "convert", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, CONVERT_HELP);
        return 0;
    }
    auto has = [&](const char* k) { return vm.count(k) > 0; };
    auto str = [&](const char* k) { return vm[k].as<std::string>(); };

    // Option values qemu checks while parsing, in argv order there; instar checks them in the order
    // qemu's switch would meet a single bad one.
    std::uint64_t min_sparse = 4096;
    const bool explicit_sparse = has("sparse-size");
    if (const auto bad = each_value(*parsed, "sparse-size", [&](const std::string& text) -> std::optional<int> {
        const SizeParse p = parse_qemu_size(text, ctx.profile.version);
        if (p.status != ParseStatus::Ok) {
            if (ctx.profile.version >= qemu_version(8, 0))
                return report_error(ctx, "Invalid buffer size for sparse output specified: '" + text + "'.");
            report_error(ctx, "Invalid buffer size for sparse output specified. You may use k, M, G, T, P or E "
                              "suffixes for");
            return report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        if (p.value % 512 != 0 || p.value > MAX_SPARSE)
            return report_error(ctx, "Invalid buffer size for sparse output specified. Valid sizes are multiples of "
                                     "512 up to 16777216. Select 0 to disable sparse detection (fully allocates "
                                     "output).");
        min_sparse = p.value;
        return std::nullopt;
    }))
        return *bad;
    unsigned coroutines = 8; // qemu-img's default
    if (const auto bad = each_value(*parsed, "parallel", [&](const std::string& text) -> std::optional<int> {
        char* end = nullptr;
        errno = 0;
        const long n = std::strtol(text.c_str(), &end, 0);
        const bool not_a_number = text.empty() || *end != 0;
        if (not_a_number || errno != 0 || n < 1 || n > MAX_COROUTINES) {
            // 10.0 names a value that is not a number; one out of range (overflow too) gets the range.
            if (ctx.profile.getopt_messages() && not_a_number)
                return report_error(ctx, "Invalid number of coroutines specified: '" + text + "'.");
            if (ctx.profile.getopt_messages())
                return report_error(ctx, "Invalid number of coroutines specified. Must be between 1 and 16.");
            return report_error(ctx, "Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
        }
        coroutines = static_cast<unsigned>(n);
        return std::nullopt;
    }))
        return *bad;
    std::uint64_t rate_limit = 0;
    if (auto bad = each_value(*parsed, "rate", [&](const std::string& v) { return parse_rate_limit(ctx, v, rate_limit); }))
        return *bad;
    std::string options;
    if (has("target-options"))
        for (const auto& o : vm["target-options"].as<std::vector<std::string>>())
            if (auto err = accumulate_option_list(options, o))
                return report_error(ctx, err->message);

    const bool skip_create = has("no-create");
    const bool compressed = has("compress");
    const bool copy_range = has("copy-range-offloading");
    const bool target_image_opts = has("target-image-opts");
    const bool target_is_zero = has("target-is-zero");
    std::optional<std::string> out_fmt = has("target-format") ? std::optional(str("target-format")) : std::nullopt;
    if (!out_fmt && !target_image_opts)
        out_fmt = "raw";
    if (has("skip-broken-bitmaps") && !has("bitmaps"))
        return report_error(ctx, "Use of --skip-broken-bitmaps requires --bitmaps");
    if (compressed && copy_range)
        return report_error(ctx, "Cannot enable copy offloading when -c is used");
    if (explicit_sparse && copy_range)
        return report_error(ctx, "Cannot enable copy offloading when -S is used");
    if (copy_range && has("salvage"))
        return report_error(ctx, "Cannot use copy offloading in salvaging mode");
    if (target_image_opts && !skip_create)
        return report_error(ctx, "--target-image-opts requires use of -n flag");
    if (skip_create && !options.empty())
        return report_error(ctx, "-o has no effect when skipping image creation");
    if (target_is_zero && !skip_create)
        return report_error(ctx, "--target-is-zero requires use of -n flag");

    const auto& pos = parsed->positional;
    const std::size_t src_num = pos.empty() ? 0 : pos.size() - 1;
    const std::string* out_filename = src_num >= 1 ? &pos.back() : nullptr;
    if (!options.empty() && has_help_option(options)) {
        const LoadedPlugin* plugin = out_fmt ? ctx.plugins().find(*out_fmt) : nullptr;
        if (!plugin)
            return report_error(ctx, unknown_format(*out_fmt));
        // qemu's print_block_option_help: a driver without create options (bochs, cloop, dmg).
        if (!((*plugin)->capabilities & CAP_CREATE) && (*plugin)->option_count == 0)
            return report_error(ctx, "Format driver '" + *out_fmt + "' does not support image creation");
        print_option_help(ctx.out, *out_fmt, {(*plugin)->options, (*plugin)->option_count}, out_filename != nullptr,
                          ctx.profile.version);
        return 0;
    }
    if (src_num < 1)
        return report_error(ctx, "Must specify image file name");
    if (has("source-cache") && !valid_cache_mode(str("source-cache")))
        return report_error(ctx, "Invalid source cache option: " + str("source-cache"));

    // --object secret: the secrets encrypted sources name (cli/secrets.h); qemu makes the objects
    // while parsing the command line, so their errors come first.
    SecretStore secrets;
    if (has("object")) {
        auto store = parse_objects(vm["object"].as<std::vector<std::string>>());
        if (!store)
            return report_error(ctx, store.error());
        secrets = std::move(*store);
    }
    const bool source_image_opts = has("image-opts") || has("source-image-opts");
    Progress::Mode mode = Progress::Mode::Off;
    if (has("progress")) {
        const std::string p = progress_mode.value_or("human");
        if (p == "json")
            mode = Progress::Mode::Json;
        else if (p == "human")
            mode = Progress::Mode::Human;
        else
            return report_error(ctx, "--progress expects 'human' or 'json' not '" + p + "'");
    }
    if (has("quiet"))
        mode = Progress::Mode::Off;
    Progress progress(mode, ctx.out, ctx.err, "convert");
    progress.print(0, 100);

    // The target, as qemu's bdrv_create would make it.
    const LoadedPlugin* plugin = out_fmt ? ctx.plugins().find(*out_fmt) : nullptr;
    auto fail = [&](const std::string& msg) {
        if (!msg.empty()) // empty: a failure qemu-img reports with its exit status only
            report_error(ctx, msg);
        progress.end();
        return 1;
    };
    ConvertSpec spec;
    if (has("allow-path"))
        spec.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    spec.unsafe_quirks = has("unsafe-quirks");
    if (has("source-format"))
        spec.source_format = str("source-format");
    // The sources' names (cli/image_name.h): plain, file:, json:{...}, or --image-opts option
    // lists; local files only. qemu's img_open checks each in turn, before any is read.
    std::vector<ImageName> source_names;
    for (std::size_t i = 0; i < src_num; ++i) {
        const std::string& given = pos[i];
        if (source_image_opts && spec.source_format)
            return fail("--image-opts and --format are mutually exclusive");
        const HeaderDrivers detached = header_drivers(ctx.plugins()); // detached headers (header_in_profile)
        auto name = source_image_opts ? parse_image_opts(given, false, detached)
                                      : parse_image_name(given, true, false, detached);
        if (!name)
            return fail("Could not open '" + given + "': " + name.error());
        header_in_profile(*name, ctx.profile.version);
        for (const auto& w : name->warnings)
            report_warning(ctx, w);
        const std::optional<std::string> format = spec.source_format ? spec.source_format : name->format;
        // qemu opens (and probes) the image before it refuses an option given to it.
        if (name->unsupported_option)
            return fail(unsupported_option_after_probe(ctx, *name, format, spec.allow_paths, spec.unsafe_quirks));
        // The source's secret: --object secret named by its key-secret / encrypt.key-secret.
        std::optional<std::string> id;
        for (const char* key : {"key-secret", "encrypt.key-secret"})
            if (const auto* v = name->strong.if_contains(key); v && v->is_string())
                id = std::string(v->as_string());
        auto secret = secret_for(secrets, id);
        if (!secret)
            return fail("Could not open '" + given + "': " + secret.error());
        spec.sources.push_back(name->path);
        spec.source_formats.push_back(format);
        spec.source_secrets.push_back(std::move(*secret));
        spec.source_no_backing.push_back(name->no_backing);
        spec.source_headers.push_back(name->header);
        source_names.push_back(std::move(*name));
    }
    // instar's messages quote the opened path; qemu quotes the name as the user gave it.
    std::optional<ImageName> existing_target_name; // -n
    auto quote_sources = [&](std::string message) {
        for (const auto& n : source_names)
            message = quote_given(n, message);
        if (existing_target_name)
            message = quote_given(*existing_target_name, message);
        return message;
    };
    if (has("source-snapshot")) {
        const std::string l = str("source-snapshot");
        if (l.rfind("snapshot.", 0) == 0) {
            // qemu's internal_snapshot_opts, each matched exactly by bdrv_snapshot_load_tmp.
            std::string why;
            const auto opts = parse_internal_snapshot_opts(ctx, l, why);
            if (!opts)
                return fail(why);
            spec.snapshot_id = opts->id;
            spec.snapshot_name = opts->name;
            spec.snapshot_exact = true;
        } else if (src_num > 1) {
            return fail("No support for concatenating multiple snapshot");
        } else {
            spec.snapshot = l; // perhaps empty: qemu looks it up and finds nothing
        }
    }
    spec.min_sparse = min_sparse;
    spec.compressed = compressed;
    spec.out_of_order = has("oob-writes");
    spec.coroutines = coroutines;
    // -t/-T (qemu's bdrv_parse_cache_mode; an invalid -t with -n is reported where qemu checks it).
    if (has("target-cache") && valid_cache_mode(str("target-cache")))
        spec.target_cache = str("target-cache");
    if (has("source-cache"))
        spec.source_cache = str("source-cache");
    spec.rate_limit = rate_limit;
    spec.salvage = has("salvage");
    spec.quiet = has("quiet");
    spec.bitmaps = has("bitmaps");
    spec.skip_broken_bitmaps = has("skip-broken-bitmaps");
    spec.progress = mode == Progress::Mode::Off ? nullptr : &progress;
    spec.repair_dirty = [&](const std::string& text) { print_guest_text(ctx, text); }; // -n: qemu's read-write open
    std::vector<std::string> salvage_warnings;
    spec.warnings = &salvage_warnings;
    auto run_convert = [&]() {
        auto done = convert_image(spec, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version);
        if (!done)
            done = Error{quote_sources(done.error())};
        for (const auto& w : salvage_warnings) {
            if (w.rfind("qcow2: ", 0) == 0)
                ctx.err << w << '\n'; // a driver's own line, without the program name
            else
                report_warning(ctx, w);
        }
        return done;
    };
    if (skip_create) {
        // -n: qemu opens the existing target with -O's format (default raw), never probing, and
        // skips every creation check (convert_op checks the rest in img_convert's order). The
        // target's name is a plain, file: or json: name, or with --target-image-opts an option list
        // whose driver= (or, without one, the probed format) is the target's format.
        spec.target.filename = *out_filename;
        std::string target_format = out_fmt.value_or("");
        std::optional<std::string> open_error;
        if (target_image_opts) {
            auto name = parse_image_opts(*out_filename);
            if (out_fmt)
                open_error = "--image-opts and --format are mutually exclusive";
            else if (!name)
                open_error = "Could not open '" + *out_filename + "': " + name.error();
            else {
                spec.target.filename = name->path;
                existing_target_name = *name;
                for (const auto& w : name->warnings)
                    report_warning(ctx, w);
                if (name->format) {
                    target_format = *name->format;
                } else {
                    // qemu probes the target; instar's probe reads it in the sandbox as info does.
                    InfoOptions io;
                    io.filename = name->path;
                    io.unsafe_quirks = spec.unsafe_quirks;
                    io.allow_paths = spec.allow_paths;
                    auto runner = make_sandbox_info_runner(ctx.sandbox_config(), ctx.profile.version);
                    if (!runner)
                        return fail(runner.error());
                    auto nodes = collect_info(io, ctx.plugins(), *runner);
                    if (!nodes) {
                        open_error = quote_given(*name, nodes.error());
                    } else {
                        target_format = nodes->front().format;
                        if (target_format == "raw")
                            ctx.err << "WARNING: Image format was not specified for '" << name->path
                                    << "' and probing guessed raw.\n"
                                       "         Automatically detecting the format is dangerous for raw images, "
                                       "write operations on block 0 will be restricted.\n"
                                       "         Specify the 'raw' format explicitly to remove the restrictions.\n";
                    }
                }
                if (!open_error && name->unsupported_option)
                    open_error = unsupported_option_error(*name, target_format);
            }
        } else {
            // img_open_file: -O's driver (default raw) wins over a json: name's own.
            auto name = parse_image_name(*out_filename, true);
            if (!name) {
                open_error = "Could not open '" + *out_filename + "': " + name.error();
            } else {
                spec.target.filename = name->path;
                existing_target_name = *name;
                for (const auto& w : name->warnings)
                    report_warning(ctx, w);
                if (name->unsupported_option)
                    open_error = unsupported_option_error(*name, target_format);
            }
        }
        // The existing target's secret (--target-image-opts key-secret / encrypt.key-secret).
        if (existing_target_name && !open_error) {
            std::optional<std::string> id;
            for (const char* key : {"key-secret", "encrypt.key-secret"})
                if (const auto* v = existing_target_name->strong.if_contains(key); v && v->is_string())
                    id = std::string(v->as_string());
            auto secret = secret_for(secrets, id);
            if (!secret)
                open_error = "Could not open '" + *out_filename + "': " + secret.error();
            else
                spec.target.secret = std::move(*secret);
        }
        spec.target_open_error = open_error;
        spec.target.plugin = ctx.plugins().find(target_format);
        spec.existing_target = true;
        spec.target_is_zero = target_is_zero;
        spec.target_format = target_format;
        if (has("backing"))
            spec.target.backing_file = str("backing");
        if (has("target-cache") && !valid_cache_mode(str("target-cache")))
            spec.target_cache_error = "Invalid cache option: " + str("target-cache");
        auto done = run_convert();
        if (!done)
            return fail(done.error());
        if (!*done) {
            // qemu-img reports this conflict after opening the sources but leaves ret at 0: the
            // message is printed, nothing is written, and the exit status is 0.
            report_error(ctx, "Cannot use --target-is-zero when the destination image has a backing file");
        }
        progress.print(100, 0);
        progress.end();
        return 0;
    }
    if (!plugin)
        return fail(unknown_format(*out_fmt));
    // bdrv_create names the target: a plain path or file:PATH (json: is "Unknown protocol 'json'").
    auto target_name = parse_image_name(*out_filename, false);
    if (!target_name)
        return fail(target_name.error());
    const FormatDescriptor& d = **plugin;
    if (!(d.capabilities & CAP_CREATE))
        return fail("Format driver '" + std::string(d.name) + "' does not support image creation");
    const std::span<const OptionDesc> table{d.options, d.option_count};
    std::vector<std::string> warnings;
    auto set = apply_option_table(split_option_list(options), table, file_protocol_options(), ctx.profile.version,
                                  &warnings);
    for (const auto& w : warnings)
        report_warning(ctx, w);
    if (!set)
        return fail(set.error());
    const bool has_backing_key = find_option(table, "backing_file", ctx.profile.version) != nullptr;
    if (has("backing") && !has_backing_key)
        return fail("Backing file not supported for file format '" + std::string(d.name) + "'");
    if (has("backing-format") && !has_backing_key)
        return fail("Backing file format not supported for file format '" + std::string(d.name) + "'");
    // qemu's add_old_style_options sets -B and -F after parsing -o, so they win over -o's
    // backing_file and backing_fmt.
    std::optional<std::string> backing, backing_fmt;
    if (const std::string* b = set->find("backing_file"))
        backing = *b;
    if (const std::string* f = set->find("backing_fmt"))
        backing_fmt = *f;
    if (has("backing"))
        backing = str("backing");
    if (has("backing-format"))
        backing_fmt = str("backing-format");
    if (backing && src_num > 1)
        return fail("Having a backing file for the target makes no sense when concatenating multiple input images");
    // -B is set as the backing_file option before this check (add_old_style_options), so it
    // applies to both spellings.
    if (backing && !backing_fmt)
        return fail("Use of backing file requires explicit backing format");
    if (compressed) {
        if (!(d.capabilities & CAP_CONVERT_COMPRESS))
            return fail("Compression not supported for this file format");
        const std::string* enc = set->find("encryption");
        if ((enc && *enc == "on") || set->find("encrypt.format"))
            return fail("Compression and encryption not supported at the same time");
        if (const std::string* pre = set->find("preallocation"); pre && *pre != "off")
            return fail("Compression and preallocation not supported at the same time");
    }
    if (!(d.capabilities & CAP_CONVERT_TARGET))
        return fail(*out_filename + ": error while converting " + std::string(d.name) +
                    ": instar cannot write the data of " + std::string(d.name) + " images yet");
    if (has("target-cache") && !valid_cache_mode(str("target-cache")))
        return fail("Invalid cache option: " + str("target-cache"));

    spec.target.filename = target_name->path;
    spec.target.plugin = plugin;
    // qcow2's external data file: made with the target (and renamed into place with it), named in
    // the image without a `file:` prefix, as create does.
    if (const std::string* df = set->find("data_file")) {
        auto name = parse_image_name(*df, false);
        if (!name)
            return fail(*out_filename + ": error while converting " + std::string(d.name) + ": " + name.error());
        spec.target.data_file = name->path;
    }
    for (const auto& item : set->items) {
        if (item.key == "size" || item.key == "backing_file" || item.key == "backing_fmt")
            continue;
        if (item.key == "data_file") {
            spec.target.options.push_back({item.key, *spec.target.data_file});
            continue;
        }
        const OptionDesc* desc = find_option(table, item.key, ctx.profile.version);
        if (!desc)
            desc = find_option(file_protocol_options(), item.key, ctx.profile.version);
        spec.target.options.push_back(
            {item.key, desc ? normalised_value(*desc, item.value, ctx.profile.version) : item.value});
        if (item.key == "preallocation")
            spec.target.preallocation = item.value;
        if (item.key == "compat")
            spec.target_compat = item.value;
    }
    spec.target.backing_file = backing;
    spec.target.backing_fmt = backing_fmt;
    // The new target's secret (-o key-secret / encrypt.key-secret); qemu looks it up when it
    // creates the target, after opening the sources.
    for (const char* key : {"key-secret", "encrypt.key-secret"})
        if (const std::string* id = set->find(key)) {
            auto secret = secret_for(secrets, *id);
            if (!secret)
                return fail(*out_filename + ": error while converting " + std::string(d.name) + ": " + secret.error());
            spec.target.secret = std::move(*secret);
        }
    auto done = run_convert();
    if (!done) {
        std::string msg = done.error();
        for (const auto& n : source_names)
            msg = quote_given(n, msg);
        return fail(msg);
    }
    progress.print(100, 0);
    progress.end();
    return 0;
}

} // namespace instar::cli
