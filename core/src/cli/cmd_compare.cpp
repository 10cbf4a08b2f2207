// `instar compare`: qemu-img compare's command line and messages, in img_compare's order; the walk
// itself is ops/compare_op (one sandbox run: both chains read by format code).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/compare_op.h"
#include "ops/info_op.h"
#include "output/progress.h"

#include <algorithm>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view COMPARE_HELP =
    "Usage:\n"
    "Check if two images have the same contents.  Usage:\n"
    "\n"
    "  qemu-img compare [--image-opts | [-f FMT] [-F FMT]] [-s]\n"
    "        [-T CACHE] [-U] [--object OBJDEF] FILENAME1 FILENAME2\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operation\n"
    "  -p, --progress\n"
    "     show operation progress\n"
    "  -f, --a-format FMT\n"
    "     specify FILENAME1 image format explicitly\n"
    "  -F, --b-format FMT\n"
    "     specify FILENAME2 image format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAMEs are complete image specifications\n"
    "     instead of file names (incompatible with --a-format and --b-format)\n"
    "  -s, --strict\n"
    "     strict mode, also check if sizes are equal\n"
    "  -T, --cache CACHE_MODE\n"
    "     images caching mode (writeback)\n"
    "  -U, --force-share\n"
    "     open images in shared mode for concurrent access\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME1, FILENAME2\n"
    "     image files (or specifications) to compare\n"
    "\n";

// qemu-img 7.2 knows only these long options for compare; 10.0's Debian build adds --a-format,
// --b-format, --strict, --cache, --progress and --quiet, which 7.2 refuses as unrecognised.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts", "force-share"};
constexpr std::string_view LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "qemu-version",
                                                    "max-guest-memory"};

} // namespace

int cmd_compare(Context& ctx, std::span<const std::string> args) {
    if (auto refused = refuse_unknown_long_options(ctx, "compare", args, LONG_OPTIONS_72, LONG_OPTIONS_INSTAR))
        return *refused;
    po::options_description opts("compare options");
    opts.add_options()
        ("help,h", "")
        ("a-format,f", po::value<std::string>())
        ("b-format,F", po::value<std::string>())
        ("cache,T", po::value<std::string>())
        ("progress,p", "")
        ("quiet,q", "")
        ("strict,s", "")
        ("force-share,U", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "compare", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, COMPARE_HELP);
        return 0;
    }
    auto has = [&](const char* k) { return vm.count(k) > 0; };
    const bool quiet = has("quiet");
    if (parsed->positional.size() != 2)
        return report_usage_error(ctx, "compare", "Expecting two image file names");

    // From here on qemu-img has initialised its progress display: every exit ends it.
    Progress progress(has("progress") && !quiet ? Progress::Mode::Human : Progress::Mode::Off, ctx.out, ctx.err,
                      "compare");
    progress.set_min_skip(2.0f);
    auto finish = [&](int code) {
        progress.end();
        return code;
    };
    if (has("cache") && !valid_cache_mode(vm["cache"].as<std::string>())) {
        report_error(ctx, "Invalid source cache option: " + vm["cache"].as<std::string>());
        return finish(2);
    }
    const bool image_opts = has("image-opts");
    if (image_opts && (has("a-format") || has("b-format"))) {
        report_error(ctx, "--image-opts and --format are mutually exclusive");
        return finish(2);
    }
    // --object secret (cli/secrets.h): qemu makes the objects while parsing its options (exit 1).
    SecretStore secrets;
    if (has("object")) {
        auto store = parse_objects(vm["object"].as<std::vector<std::string>>());
        if (!store) {
            report_error(ctx, store.error());
            return finish(1);
        }
        secrets = std::move(*store);
    }
    // file:, json:{...} and --image-opts name local files only (cli/image_name.h, docs/info.md).
    const std::string given1 = parsed->positional[0], given2 = parsed->positional[1];
    const HeaderDrivers detached = header_drivers(ctx.plugins()); // detached headers (header_in_profile)
    auto name1 = image_opts ? parse_image_opts(given1, false, detached) : parse_image_name(given1, true, false, detached);
    if (!name1) {
        report_error(ctx, "Could not open '" + given1 + "': " + name1.error());
        return finish(2);
    }
    auto name2 = image_opts ? parse_image_opts(given2, false, detached) : parse_image_name(given2, true, false, detached);
    if (!name2) {
        report_error(ctx, "Could not open '" + given2 + "': " + name2.error());
        return finish(2);
    }
    header_in_profile(*name1, ctx.profile.version);
    header_in_profile(*name2, ctx.profile.version);
    // qemu opens (and probes) each image before it refuses an option given to it.
    for (const auto* n : {&*name1, &*name2}) {
        for (const auto& w : n->warnings)
            report_warning(ctx, w);
        if (n->unsupported_option) {
            const char* fkey = n == &*name1 ? "a-format" : "b-format";
            report_error(ctx, unsupported_option_after_probe(
                                  ctx, *n, has(fkey) ? std::optional(vm[fkey].as<std::string>()) : n->format,
                                  has("allow-path") ? vm["allow-path"].as<std::vector<std::string>>()
                                                    : std::vector<std::string>{},
                                  has("unsafe-quirks")));
            return finish(2);
        }
    }

    CompareSpec spec;
    spec.file1 = name1->path;
    spec.file2 = name2->path;
    spec.headers[0] = name1->header;
    spec.headers[1] = name2->header;
    // Each image's key-secret / encrypt.key-secret, looked up (docs/usage.md, "Secrets").
    for (const auto* n : {&*name1, &*name2}) {
        auto secret = image_secret(secrets, *n);
        if (!secret) {
            report_error(ctx, secret.error());
            return finish(2);
        }
        spec.secrets.push_back(std::move(*secret));
    }
    if (has("a-format"))
        spec.format1 = vm["a-format"].as<std::string>();
    else if (name1->format)
        spec.format1 = name1->format;
    if (has("b-format"))
        spec.format2 = vm["b-format"].as<std::string>();
    else if (name2->format)
        spec.format2 = name2->format;
    spec.no_backing[0] = name1->no_backing;
    spec.no_backing[1] = name2->no_backing;
    spec.strict = has("strict");
    spec.unsafe_quirks = has("unsafe-quirks");
    if (has("allow-path"))
        spec.allow_paths = vm["allow-path"].as<std::vector<std::string>>();

    // qemu prints "Warning: Image size mismatch!" between the common part and the larger image's
    // tail, so with progress shown it falls between two progress figures.
    bool warned = false;
    std::uint64_t common = 0, last = 0;
    bool sizes_differ = false;
    auto warn = [&] {
        if (!warned && !quiet)
            ctx.out << "Warning: Image size mismatch!\n";
        warned = true;
    };
    if (has("progress") && !quiet) {
        spec.progress = [&](std::uint64_t done, std::uint64_t total) {
            if (done <= last || total == 0)
                return;
            if (sizes_differ && done > common)
                warn();
            const float delta = (static_cast<float>(done - last) / static_cast<float>(total)) * 100;
            last = done;
            progress.print(delta, 100);
        };
    }
    spec.opened = [&](std::uint64_t size1, std::uint64_t size2) {
        common = std::min(size1, size2);
        sizes_differ = size1 != size2;
        progress.print(0, 100); // once both images are open, as qemu-img
    };
    auto report = compare_images(spec, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version);
    if (!report) {
        report_error(ctx, quote_given(*name2, quote_given(*name1, report.error())));
        return finish(2);
    }
    const auto say = [&](const std::string& line) {
        if (!quiet)
            ctx.out << line << '\n';
    };
    if (report->size_mismatch)
        warn();
    const std::string& over = report->size1 > report->size2 ? given1 : given2;
    const std::string& side = report->side == 0 ? given1 : given2;
    switch (report->outcome) {
    case INSTAR_COMPARE_IDENTICAL:
        say("Images are identical.");
        return finish(0);
    case INSTAR_COMPARE_MISMATCH:
        say("Content mismatch at offset " + std::to_string(report->offset) + "!");
        return finish(1);
    case INSTAR_COMPARE_SIZE_STRICT:
        say("Strict mode: Image size mismatch!");
        return finish(1);
    case INSTAR_COMPARE_STATUS_STRICT:
        say("Strict mode: Offset " + std::to_string(report->offset) + " block status mismatch!");
        return finish(1);
    case INSTAR_COMPARE_STATUS_FAILED:
        report_error(ctx, "Sector allocation test failed for " + (report->size_mismatch ? over : side));
        return finish(3);
    default:
        report_error(ctx, "Error while reading offset " + std::to_string(report->offset) + " of " + side + ": " +
                              status_errno_text(report->read_status));
        return finish(4);
    }
}

} // namespace instar::cli
