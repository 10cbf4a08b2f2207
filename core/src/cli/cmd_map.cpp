// `instar map`: qemu-img map's command line and img_map's checks, in qemu's order; the walk itself
// is ops/map_op (one sandbox run: the formats' readers answer block status).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/map_op.h"
#include "options/size.h"

#include <algorithm>
#include <cstdint>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view MAP_HELP =
    "Usage:\n"
    "Dump image metadata.  Usage:\n"
    "\n"
    "  qemu-img map [-f FMT | --image-opts] [--object OBJDEF] [--output human|json]\n"
    "        [--start-offset OFFSET] [--max-length LENGTH] [-U] FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -f, --format FMT\n"
    "     specify FILENAME image format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  --start-offset OFFSET\n"
    "  --max-length LENGTH\n"
    "  --output human|json\n"
    "     specify output format name (default human)\n"
    "  -U, --force-share\n"
    "     open image in shared mode for concurrent access\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME\n"
    "     image file name (or specification with --image-opts)\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images (backing files, extents) under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

// qemu-img's cvtnum(name, text) with each profile's messages; nullopt after reporting.
std::optional<std::uint64_t> parse_offset(Context& ctx, const char* name, const std::string& text) {
    constexpr std::uint64_t MAX = INT64_MAX; // qemu's offsets are int64_t
    const SizeParse p = parse_qemu_size(text, ctx.profile.version);
    if (p.status == ParseStatus::Invalid) {
        if (ctx.profile.version >= qemu_version(8, 0)) {
            report_error(ctx, std::string("Invalid ") + name + " specified: '" + text + "'.");
        } else {
            report_error(ctx, std::string("Invalid ") + name + " specified. You may use k, M, G, T, P or E suffixes for");
            report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        return std::nullopt;
    }
    if (p.status == ParseStatus::OutOfRange || p.value > MAX) {
        report_error(ctx, std::string("Invalid ") + name + " specified. Must be between 0 and " + std::to_string(MAX) +
                              ".");
        return std::nullopt;
    }
    if (p.warning)
        report_warning(ctx, *p.warning);
    return p.value;
}

// Where option `long_name` (or -short) first appears in args: qemu checks values in argv order.
std::size_t position_of(std::span<const std::string> args, std::string_view long_name, char short_name) {
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.rfind("--", 0) == 0) {
            if (long_option_name(a) == long_name)
                return i;
        } else if (short_name != 0 && a.size() >= 2 && a[0] == '-' && a[1] == short_name) {
            return i;
        }
    }
    return args.size();
}

} // namespace

int cmd_map(Context& ctx, std::span<const std::string> in_args) {
    // qemu's getopt takes "--start-offset=" as an empty value (then cvtnum refuses it); the option
    // parser would refuse the form itself, so pass the empty value as its own word.
    std::vector<std::string> args;
    for (std::size_t i = 0; i < in_args.size(); ++i) {
        const std::string& a = in_args[i];
        if (a == "--") {
            args.insert(args.end(), in_args.begin() + static_cast<std::ptrdiff_t>(i), in_args.end());
            break;
        }
        if (a.size() > 3 && a.rfind("--", 0) == 0 && a.back() == '=' && a.find('=') == a.size() - 1) {
            args.push_back(a.substr(0, a.size() - 1));
            args.emplace_back();
        } else {
            args.push_back(a);
        }
    }
    po::options_description opts("map options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::string>())
        ("output", po::value<std::string>())
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("force-share,U", "")
        ("start-offset,s", po::value<std::string>())
        ("max-length,l", po::value<std::string>())
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "map", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, MAP_HELP);
        return 0;
    }
    // Values qemu checks while parsing, in argv order (10.0 checks --output there too; 7.2 after the
    // file name).
    const bool early_output = ctx.profile.getopt_messages();
    struct Check {
        std::size_t at;
        int which; // 0 start, 1 length, 2 output
    };
    std::vector<Check> checks;
    if (vm.count("start-offset"))
        checks.push_back({position_of(args, "start-offset", 's'), 0});
    if (vm.count("max-length"))
        checks.push_back({position_of(args, "max-length", 'l'), 1});
    if (vm.count("output") && early_output)
        checks.push_back({position_of(args, "output", 0), 2});
    std::sort(checks.begin(), checks.end(), [](const Check& a, const Check& b) { return a.at < b.at; });
    std::uint64_t start = 0;
    std::optional<std::uint64_t> max_length;
    std::optional<OutputFormat> output = OutputFormat::Human;
    auto check_output = [&] {
        if (vm.count("output"))
            output = parse_output_format(ctx, "map", vm["output"].as<std::string>());
        return output.has_value();
    };
    // Each value an option was given (a repeated option's earlier ones too), as getopt returns them.
    auto offsets = [&](const char* key, const char* what, auto& out) {
        return each_value(*parsed, key, [&](const std::string& text) -> std::optional<int> {
            auto v = parse_offset(ctx, what, text);
            if (!v)
                return 1;
            out = *v;
            return std::nullopt;
        });
    };
    for (const Check& c : checks) {
        if (c.which == 0) {
            if (offsets("start-offset", "start offset", start))
                return 1;
        } else if (c.which == 1) {
            if (offsets("max-length", "max length", max_length))
                return 1;
        } else if (each_value(*parsed, "output", [&](const std::string& v) -> std::optional<int> {
                       output = parse_output_format(ctx, "map", v);
                       return output ? std::nullopt : std::optional<int>(1);
                   })) {
            return 1;
        }
    }
    if (parsed->positional.size() != 1)
        return report_usage_error(ctx, "map", "Expecting one image file name");
    if (!early_output && !check_output())
        return 1;
    const std::string given = parsed->positional[0];
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && vm.count("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    auto secrets = command_secrets(vm); // --object: qemu makes the objects before opening the image
    if (!secrets)
        return report_error(ctx, secrets.error());
    // file:, json:{...} and --image-opts name local files only (cli/image_name.h, docs/info.md).
    const HeaderDrivers detached = header_drivers(ctx.plugins()); // detached headers (header_in_profile)
    auto name = image_opts ? parse_image_opts(given, false, detached) : parse_image_name(given, true, false, detached);
    if (!name)
        return report_error(ctx, "Could not open '" + given + "': " + name.error());
    header_in_profile(*name, ctx.profile.version);
    for (const auto& w : name->warnings)
        report_warning(ctx, w);
    // qemu opens (and probes) the image before it refuses the option.
    if (name->unsupported_option)
        return report_error(
            ctx, unsupported_option_after_probe(
                     ctx, *name, vm.count("format") ? std::optional(vm["format"].as<std::string>()) : name->format,
                     vm.count("allow-path") ? vm["allow-path"].as<std::vector<std::string>>()
                                            : std::vector<std::string>{},
                     vm.count("unsafe-quirks") > 0));

    MapSpec spec;
    spec.filename = name->path;
    spec.header = name->header;
    auto secret = image_secret(*secrets, *name);
    if (!secret)
        return report_error(ctx, secret.error());
    spec.secret = std::move(*secret);
    if (vm.count("format"))
        spec.format = vm["format"].as<std::string>();
    else if (name->format)
        spec.format = name->format;
    spec.start = start;
    spec.max_length = max_length;
    spec.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    spec.no_backing = name->no_backing;
    if (vm.count("allow-path"))
        spec.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    // Runs are printed as each sandbox run delivers them (a huge map takes several).
    MapPrinter printer(*output == OutputFormat::Json, ctx.profile.version, start);
    std::string text;
    auto result = map_image(spec, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version,
                            [&](const std::vector<MapEntry>& entries, const std::vector<std::string>& files) {
                                printer.add(entries, files, text);
                                ctx.out << text;
                                text.clear();
                            });
    if (!result)
        return report_error(ctx, quote_given(*name, result.error()));
    printer.finish(*result, text);
    ctx.out << text;
    ctx.out.flush();
    if (printer.notice())
        ctx.err << *printer.notice() << '\n';
    if (printer.error())
        return report_error(ctx, *printer.error());
    return 0;
}

} // namespace instar::cli
