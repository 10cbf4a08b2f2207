// `instar info`: qemu-img info's command line; the image is parsed in the sandbox (ops/info_op).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "ops/guest_info_runner.h"
#include "ops/info_first.h"
#include "ops/info_op.h"
#include "output/info_render.h"
#include "output/json_pretty.h"

#include <boost/json.hpp>

#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text (typos included), then instar's own options.
constexpr std::string_view INFO_HELP =
    "Usage:\n"
    "Display information about image.  Usage:\n"
    "\n"
    "  qemu-img info [-f FMT | --image-opts] [-b] [-U] [--object OBJDEF]\n"
    "        [--output human|json] FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -f, --format FMT\n"
    "     specify FILENAME image format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -b, --backing-chain\n"
    "     display information about backing chaing\n"
    "  (in case the image is stacked\n"
    "  -U, --force-share\n"
    "     open image in shared mode for concurrent access\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  --output human|json\n"
    "     specify output format name (default human)\n"
    "  FILENAME\n"
    "     image file name (or specification with --image-opts)\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images (backing files, extents) under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "  --ignore-quirks\n"
    "     true sizes: file lengths instead of allocated blocks, sizes with one decimal\n"
    "  --extra-detail\n"
    "     format-specific details qemu-img does not print (none yet for the supported formats)\n"
    "\n";

} // namespace

int cmd_info(Context& ctx, std::span<const std::string> args) {
    po::options_description opts("info options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::string>())
        ("image-opts", "")
        ("backing-chain,b", "")
        ("force-share,U", "")
        ("output", po::value<std::string>()->default_value("human"))
        ("object", po::value<std::vector<std::string>>())
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "")
        ("ignore-quirks", "")
        ("extra-detail", "");
    int status = 0;
    auto parsed = parse_command(ctx, "info", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, INFO_HELP);
        return 0;
    }
    // 10.0 checks --output as getopt returns it (each value given); 7.2 the last, after the loop.
    if (ctx.profile.getopt_messages())
        if (const auto bad = each_value(*parsed, "output", [&](const std::string& v) -> std::optional<int> {
                return parse_output_format(ctx, "info", v) ? std::nullopt : std::optional<int>(1);
            }))
            return *bad;
    const auto output = parse_output_format(ctx, "info", vm["output"].as<std::string>());
    if (!output)
        return 1;
    if (parsed->positional.size() != 1)
        return report_usage_error(ctx, "info", "Expecting one image file name");
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && vm.count("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    // A plain name, file:NAME, json:{...}, or with --image-opts an option list: local files only.
    const std::string& given = parsed->positional[0];
    const HeaderDrivers detached = header_drivers(ctx.plugins()); // detached headers (header_in_profile)
    auto name = image_opts ? parse_image_opts(given, false, detached) : parse_image_name(given, true, false, detached);
    if (!name)
        return report_error(ctx, "Could not open '" + given + "': " + name.error());
    header_in_profile(*name, ctx.profile.version);
    for (const auto& w : name->warnings)
        report_warning(ctx, w);

    InfoOptions io;
    io.filename = name->path;
    io.header = name->header;
    if (vm.count("format"))
        io.format = vm["format"].as<std::string>();
    else if (name->format)
        io.format = name->format; // driver=FMT: as -f
    io.backing_chain = vm.count("backing-chain") > 0 && !name->no_backing; // "backing": null
    io.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    io.ignore_quirks = vm.count("ignore-quirks") > 0;
    io.extra_detail = vm.count("extra-detail") > 0;
    if (vm.count("allow-path"))
        io.allow_paths = vm["allow-path"].as<std::vector<std::string>>();

    auto runner = make_sandbox_info_runner(ctx.sandbox_config(), ctx.profile.version);
    if (!runner)
        return report_error(ctx, runner.error());
    // A chain in one start where every level is a plain image (info_first.h); else level by level,
    // the top's inspection reused.
    std::optional<PrefetchedInfo> top_inspection;
    std::optional<std::vector<NodeInfo>> quick;
    if (io.backing_chain && !io.header) { // (a detached LUKS header is a file the top needs: ordinary path)
        auto tried = try_quick_chain_info(io, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, top_inspection);
        if (!tried)
            return report_error(ctx, quote_given(*name, tried.error()));
        quick = std::move(*tried);
    }
    auto nodes = quick ? Expected<std::vector<NodeInfo>>(std::move(*quick))
                       : collect_info(io, ctx.plugins(),
                                      top_inspection ? with_prefetched(*runner, *top_inspection) : *runner);
    if (!nodes)
        return report_error(ctx, quote_given(*name, nodes.error()));
    if (name->unsupported_option)
        return report_error(ctx, unsupported_option_error(*name, nodes->front().format));
    nodes->front().filename = image_display_name(*name, nodes->front().format);

    if (*output == OutputFormat::Json) {
        if (io.backing_chain) {
            boost::json::array all;
            for (const auto& n : *nodes)
                all.push_back(info_json(n, ctx.profile));
            ctx.out << qemu_json_pretty(all) << '\n';
        } else {
            ctx.out << qemu_json_pretty(info_json(nodes->front(), ctx.profile)) << '\n';
        }
        return 0;
    }
    const InfoRenderOptions render{.ignore_quirks = io.ignore_quirks};
    bool first = true;
    for (const auto& n : *nodes) {
        if (!first)
            ctx.out << '\n';
        first = false;
        ctx.out << render_info_human(n, ctx.profile, render);
    }
    return 0;
}

} // namespace instar::cli
