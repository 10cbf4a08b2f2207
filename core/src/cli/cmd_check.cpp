// `instar check`: qemu-img check's command line, output and exit codes; the image is checked in the
// sandbox by the format's guest half (ops/check_op, docs/check.md).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/cache_mode.h"
#include "ops/check_op.h"
#include "ops/edit_op.h"
#include "output/json_pretty.h"
#include "output/qemu_format.h"

#include <boost/json.hpp>
#include <instar/guest/edit_bitmap.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view CHECK_HELP =
    "Usage:\n"
    "Check basic image integrity.  Usage:\n"
    "\n"
    "  qemu-img check [-f FMT | --image-opts] [-T CACHE_MODE] [-r] [-u]\n"
    "        [--output human|json] [--object OBJDEF] FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operations\n"
    "  -f, --format FMT\n"
    "     specifies format of the image explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -T, --cache CACHE_MODE\n"
    "     image cache mode (writeback)\n"
    "  -U, --force-share\n"
    "     open image in shared mode for concurrent access\n"
    "  --output human|json\n"
    "     output format\n"
    "  -r, --repair leaks|all\n"
    "     repair particular aspect of the image\n"
    "     (image will be open in read-write mode, incompatible with --force-share)\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME\n"
    "     the image file (or image specification) to operate on\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

// qemu-img 7.2's check knows --help, --format, --repair, --output, --object, --image-opts and
// --force-share; 10.0's Debian build adds these two, which 7.2 refuses as unrecognised.
constexpr std::string_view LONG_OPTIONS_10_ONLY[] = {"cache", "quiet"};

std::string percent(std::uint64_t num, std::uint64_t den) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%0.2f", static_cast<double>(num) * 100.0 / static_cast<double>(den));
    return buf;
}

// qemu-img's dump_human_image_check.
void print_human(std::ostream& out, const instar_check_result& c) {
    if (!(c.corruptions || c.leaks || c.check_errors)) {
        out << "No errors were found on the image.\n";
    } else {
        if (c.corruptions)
            out << "\n" << c.corruptions << " errors were found on the image.\n"
                << "Data may be corrupted, or further writes to the image may corrupt it.\n";
        if (c.leaks)
            out << "\n" << c.leaks << " leaked clusters were found on the image.\n"
                << "This means waste of disk space, but no harm to data.\n";
        if (c.check_errors)
            out << "\n" << c.check_errors << " internal errors have occurred during the check.\n";
    }
    if (c.total_clusters != 0 && c.allocated_clusters != 0)
        out << c.allocated_clusters << "/" << c.total_clusters << " = " << percent(c.allocated_clusters, c.total_clusters)
            << "% allocated, " << percent(c.fragmented_clusters, c.allocated_clusters) << "% fragmented, "
            << percent(c.compressed_clusters, c.allocated_clusters) << "% compressed clusters\n";
    if (c.image_end_offset)
        out << "Image end offset: " << c.image_end_offset << "\n";
}

// qemu's ImageCheck in QAPI field order (optional members only when non-zero), then QDict order.
std::string render_json(const std::string& filename, const std::string& format, const instar_check_result& c) {
    boost::json::object o;
    o["filename"] = filename;
    o["format"] = format;
    o["check-errors"] = static_cast<std::int64_t>(c.check_errors);
    auto opt = [&](const char* key, std::uint64_t v) {
        if (v)
            o[key] = static_cast<std::int64_t>(v);
    };
    opt("image-end-offset", c.image_end_offset);
    opt("corruptions", c.corruptions);
    opt("leaks", c.leaks);
    opt("corruptions-fixed", c.corruptions_fixed);
    opt("leaks-fixed", c.leaks_fixed);
    opt("total-clusters", c.total_clusters);
    opt("allocated-clusters", c.allocated_clusters);
    opt("fragmented-clusters", c.fragmented_clusters);
    opt("compressed-clusters", c.compressed_clusters);
    return qemu_json_pretty(qdict_order(o));
}

} // namespace

int cmd_check(Context& ctx, std::span<const std::string> args) {
    const bool v10 = ctx.profile.getopt_messages();
    if (!v10) {
        for (const auto& a : args) {
            if (a == "--")
                break;
            if (a.rfind("--", 0) != 0)
                continue;
            const std::string name = long_option_name(a);
            if (std::find(std::begin(LONG_OPTIONS_10_ONLY), std::end(LONG_OPTIONS_10_ONLY), name) !=
                std::end(LONG_OPTIONS_10_ONLY))
                return report_option_error(ctx, "check", OptionErrorKind::Unknown, a);
        }
    }
    po::options_description opts("check options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::string>())
        ("repair,r", po::value<std::string>())
        ("output", po::value<std::string>())
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("force-share,U", "")
        ("cache,T", po::value<std::string>())
        ("quiet,q", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int parse_status = 0;
    auto parsed = parse_command(ctx, "check", opts, args, parse_status);
    if (!parsed)
        return parse_status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, CHECK_HELP);
        return 0;
    }
    std::uint32_t fix = 0;
    if (const auto bad = each_value(*parsed, "repair", [&](const std::string& r) -> std::optional<int> {
            if (r == "leaks")
                fix = INSTAR_CHECK_FIX_LEAKS;
            else if (r == "all")
                fix = INSTAR_CHECK_FIX_LEAKS | INSTAR_CHECK_FIX_ERRORS;
            else if (v10)
                return report_usage_error(ctx, "check", "--repair (-r) expects 'leaks' or 'all' not '" + r + "'");
            else
                return report_usage_error(ctx, "check",
                                          "Unknown option value for -r (expecting 'leaks' or 'all'): " + r);
            return std::nullopt;
        }))
        return *bad;
    // 10.0 checks --output while parsing options (each value given), 7.2 the last after the file name
    // count.
    std::optional<OutputFormat> output = OutputFormat::Human;
    if (v10)
        if (const auto bad = each_value(*parsed, "output", [&](const std::string& v) -> std::optional<int> {
                if (!(output = parse_output_format(ctx, "check", v)))
                    return 1;
                return std::nullopt;
            }))
            return *bad;
    if (parsed->positional.size() != 1)
        return report_usage_error(ctx, "check", "Expecting one image file name");
    if (!v10 && vm.count("output") && !(output = parse_output_format(ctx, "check", vm["output"].as<std::string>())))
        return 1;
    if (vm.count("cache") && !valid_cache_mode(vm["cache"].as<std::string>()))
        return report_error(ctx, "Invalid source cache option: " + vm["cache"].as<std::string>());
    const std::string filename = parsed->positional[0];
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && vm.count("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    // file:, json:{...} and --image-opts name local files only (cli/image_name.h, docs/info.md).
    // backing.[…]encrypt.key-secret / key-secret: the secrets of encrypted backing images.
    auto name = image_opts ? parse_image_opts(filename, true) : parse_image_name(filename, true, true);
    if (!name)
        return report_error(ctx, "Could not open '" + filename + "': " + name.error());
    for (const auto& w : name->warnings)
        report_warning(ctx, w);
    // qemu opens (and probes) the image before it refuses the option: nothing is repaired first.
    if (name->unsupported_option)
        return report_error(
            ctx, unsupported_option_after_probe(
                     ctx, *name, vm.count("format") ? std::optional(vm["format"].as<std::string>()) : name->format,
                     vm.count("allow-path") ? vm["allow-path"].as<std::vector<std::string>>()
                                            : std::vector<std::string>{},
                     vm.count("unsafe-quirks") > 0));
    if (fix && vm.count("force-share"))
        return report_error(ctx, "Could not open '" + filename + "': force-share=on can only be used with read-only images");
    const bool quiet = vm.count("quiet") > 0;

    CheckOptions co;
    co.filename = name->path;
    if (vm.count("format"))
        co.format = vm["format"].as<std::string>();
    else if (name->format)
        co.format = name->format;
    co.fix = fix;
    co.flush = !vm.count("cache") || cache_flushes(vm["cache"].as<std::string>());
    auto secrets = command_secrets(vm);
    if (!secrets)
        return report_error(ctx, secrets.error());
    auto secret = image_secret(*secrets, *name);
    if (!secret)
        return report_error(ctx, secret.error());
    co.secret = std::move(*secret);
    co.backing_secret = backing_secret_fn(*secrets, *name);
    co.backing_keys = backing_keys_named(vm, *name);
    co.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    if (vm.count("allow-path"))
        co.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    // One pass: run it, print its stderr lines; nullopt after reporting a failure (status set).
    auto pass = [&](std::uint32_t how, int& status) -> std::optional<CheckReport> {
        co.fix = how;
        auto report = run_check(co, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version);
        if (!report) {
            status = report_error(ctx, quote_given(*name, report.error()));
            return std::nullopt;
        }
        // In runs between the program-name markers: stderr is unbuffered, one write per piece (a
        // character at a time made 10,000 leak lines 400,000 write calls, 15x qemu-img's time).
        print_guest_text(ctx, report->diagnostics);
        if (report->truncated)
            ctx.err << ctx.prog << ": further check messages were dropped (more than the guest's 12 MiB of text)\n";
        if (report->failure) {
            status = report_error(ctx, *report->failure);
            return std::nullopt;
        }
        const int error = report->result.error;
        if (error == -95) {
            report_error(ctx, "This image format does not support checks");
            status = 63;
            return std::nullopt;
        }
        if (error < 0) {
            status = report_error(ctx, std::string("Check failed: ") + std::strerror(-error));
            return std::nullopt;
        }
        return std::move(*report);
    };
    int status = 0;
    auto report = pass(fix, status);
    if (!report)
        return status;
    // qemu-img: after a repair, say what was fixed and check again read-only; the summary is the
    // second check's with the first one's fixed counts.
    if (report->result.corruptions_fixed || report->result.leaks_fixed) {
        const std::uint64_t leaks_fixed = report->result.leaks_fixed;
        const std::uint64_t corruptions_fixed = report->result.corruptions_fixed;
        if (*output == OutputFormat::Human && !quiet)
            ctx.out << "The following inconsistencies were found and repaired:\n\n    " << leaks_fixed
                    << " leaked clusters\n    " << corruptions_fixed << " corruptions\n\n"
                    << "Double checking the fixed image now...\n";
        ctx.out.flush();
        report = pass(0, status);
        if (!report)
            return status;
        report->result.leaks_fixed = leaks_fixed;
        report->result.corruptions_fixed = corruptions_fixed;
        // qemu-img closes the read-write image only now, after the double check: its close stores
        // every persistent bitmap anew (qcow2_inactivate). The repair run left that to this point
        // (a run that fixed nothing stored them itself); the bitmap editor's store-only run does it.
        // What it could not do leaves the image as the repair left it, and changes nothing printed.
        if (report->format == "qcow2") {
            EditOpen eo;
            eo.filename = co.filename;
            eo.format = std::string("qcow2");
            eo.unsafe_quirks = co.unsafe_quirks;
            eo.allow_paths = co.allow_paths;
            OpenedChain chain;
            const auto sandbox = ctx.sandbox_config();
            if (auto ok = open_for_edit(eo, ctx.plugins(), sandbox, ctx.profile.version, chain);
                ok && !chain.links.empty() && chain.links.front().node.format == "qcow2") {
                EditCall call;
                call.link = &chain.links.front();
                call.filename = filename;
                call.command = guest::EditCommand::Bitmap;
                guest::BitmapArgs head{};
                head.flags = guest::BITMAP_STORE_ONLY;
                call.args.resize(sizeof head);
                std::memcpy(call.args.data(), &head, sizeof head);
                (void)run_edit(call, sandbox, ctx.profile.version);
            }
        }
    }
    const instar_check_result& c = report->result;
    if (!quiet) {
        if (*output == OutputFormat::Json)
            ctx.out << render_json(filename, report->format, c) << '\n';
        else
            print_human(ctx.out, c);
    }
    if (c.check_errors)
        return report_error(ctx, "Check failed");
    if (c.corruptions)
        return 2;
    if (c.leaks)
        return 3;
    return 0;
}

} // namespace instar::cli
