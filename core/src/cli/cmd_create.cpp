// `instar create`: qemu-img create's command line. This stage implements option handling and
// `-o help`; writing images arrives with the create work.
#include "cli/commands.h"
#include "cli/help.h"
#include "options/option_list.h"
#include "output/option_help.h"

#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0 really prints the stray "Usage:" line first.
constexpr std::string_view CREATE_HELP =
    "Usage:\n"
    "Create and format new image file.  Usage:\n"
    "\n"
    "  qemu-img create [-f FMT] [-o FMT_OPTS] [-b BACKING_FILENAME [-F BACKING_FMT]]\n"
    "        [--object OBJDEF] [-u] FILENAME [SIZE[bkKMGTPE]]\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operations\n"
    "  -f, --format FMT\n"
    "     specifies format of the new image, default is raw\n"
    "  -o, --options FMT_OPTS\n"
    "     format-specific options ('-o list' for list)\n"
    "  -b, --backing BACKING_FILENAME\n"
    "     stack new image on top of BACKING_FILENAME\n"
    "     (for formats which support stacking)\n"
    "  -F, --backing-format BACKING_FMT\n"
    "     specify format of BACKING_FILENAME\n"
    "  -u, --backing-unsafe\n"
    "     do not fail if BACKING_FMT can not be read\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME\n"
    "     image file to create.  It will be overridden if exists\n"
    "  SIZE\n"
    "     image size with optional suffix (multiplies in 1024)\n"
    "     SIZE is required unless BACKING_IMG is specified,\n"
    "     in which case it will be the same as size of BACKING_IMG\n"
    "\n";

// In-tree formats name the package that ships them, for distros that split plugins out.
std::string unknown_format(std::string_view fmt) {
    std::string msg = "Unknown file format '" + std::string(fmt) + "'";
    for (std::string_view in_tree : {"qcow2", "vmdk", "vpc", "vhdx", "raw"})
        if (fmt == in_tree)
            msg += " (its plugin is not installed: install the package instar-plugin-" +
                   std::string(fmt == "vpc" ? "vhd" : fmt) + ")";
    return msg;
}

} // namespace

int cmd_create(Context& ctx, std::span<const std::string> args) {
    po::options_description opts("create options");
    opts.add_options()
        ("help,h", "")
        ("quiet,q", "")
        ("format,f", po::value<std::string>())
        ("options,o", po::value<std::vector<std::string>>())
        ("backing,b", po::value<std::string>())
        ("backing-format,F", po::value<std::string>())
        ("backing-unsafe,u", "")
        ("object", po::value<std::vector<std::string>>());
    int status = 0;
    auto parsed = parse_command(ctx, "create", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, CREATE_HELP);
        return 0;
    }
    std::string options;
    if (vm.count("options"))
        for (const auto& o : vm["options"].as<std::vector<std::string>>())
            if (auto err = accumulate_option_list(options, o))
                return report_error(ctx, err->message);

    const std::string fmt = vm.count("format") ? vm["format"].as<std::string>() : "raw";
    const std::string* filename = parsed->positional.empty() ? nullptr : &parsed->positional[0];
    if (!options.empty() && has_help_option(options)) {
        const LoadedPlugin* plugin = ctx.plugins().find(fmt);
        if (!plugin)
            return report_error(ctx, unknown_format(fmt));
        print_option_help(ctx.out, fmt, {(*plugin)->options, (*plugin)->option_count}, filename != nullptr,
                          ctx.profile.version);
        return 0;
    }
    if (!filename)
        return report_usage_error(ctx, "create", "Expecting image file name");

    const LoadedPlugin* plugin = ctx.plugins().find(fmt);
    if (!plugin)
        return report_error(ctx, *filename + ": " + unknown_format(fmt));
    std::vector<std::string> warnings;
    auto set = apply_option_table(split_option_list(options), {(*plugin)->options, (*plugin)->option_count},
                                  file_protocol_options(), ctx.profile.version, &warnings);
    for (const auto& w : warnings)
        report_warning(ctx, w);
    if (!set)
        return report_error(ctx, *filename + ": " + set.error());
    return report_error(ctx, *filename + ": creating images is not implemented yet");
}

} // namespace instar::cli
