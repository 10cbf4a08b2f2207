// `instar dd`: qemu-img dd's command line (img_dd: -f, -O, -U, --object, --image-opts and the
// operands bs=, count=, if=, of=, skip=) and its checks in qemu's order. The copy is convert's
// (ops/convert_op with a byte window of the input): one sandbox run, the output appearing atomically.
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/convert_op.h"
#include "options/size.h"

#include <cctype>
#include <climits>
#include <ostream>

namespace instar::cli {
namespace {

constexpr std::string_view DD_HELP =
    "Usage:\n"
    "Copy input to output with optional format conversion.  Usage:\n"
    "\n"
    "  qemu-img dd [-f FMT|--image-opts] [-O OUTPUT_FMT] [-U]\n"
    "        [bs=BLOCK_SIZE] [count=BLOCKS] if=INPUT of=OUTPUT\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -f, --format FMT\n"
    "     specify format for INPUT explicitly\n"
    "  --image-opts\n"
    "     indicates that INPUT is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -O, --output-format OUTPUT_FMT\n"
    "     format of the OUTPUT (default raw)\n"
    "  -U, --force-share\n"
    "     open images in shared mode for concurrent access\n"
    "  bs=BLOCK_SIZE[kKMGTP]\n"
    "     size of I/O block (default 512)\n"
    "  count=COUNT\n"
    "     number of blocks to convert (default whole INPUT)\n"
    "  if=INPUT\n"
    "     input file name (or image specification with --image-opts)\n"
    "  of=OUTPUT\n"
    "     output file name to create\n"
    "\n";

// qemu-img 7.2's dd knows only these long options; 10.0's Debian build adds --format and
// --output-format, which 7.2 refuses as unrecognised.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts", "force-share"};
constexpr std::string_view LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "qemu-version",
                                                    "max-guest-memory", "sandbox"};

// qemu's block drivers without an instar plugin, by what img_dd says of them as -O. Without create
// support in qemu (bdrv_find_format finds them; 7.2 also has these network protocols):
constexpr std::string_view QEMU_NO_CREATE[] = {"blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress",
                                               "copy-before-write", "copy-on-read", "dmg", "null-aio", "null-co",
                                               "preallocate", "quorum", "replication", "snapshot-access",
                                               "throttle", "vvfat"};
constexpr std::string_view QEMU_NO_CREATE_72[] = {"ftp", "ftps", "http", "https"};
// ...and with it: qemu creates these, instar cannot.
constexpr std::string_view QEMU_CREATES[] = {"file", "host_device", "host_cdrom", "nbd", "nvme", "parallels", "qcow",
                                             "qed", "vdi", "luks", "gluster", "iscsi", "iser", "nfs", "rbd", "ssh"};

template <std::size_t N>
bool listed(const std::string_view (&list)[N], std::string_view name) {
    for (const auto& l : list)
        if (l == name)
            return true;
    return false;
}

// qemu's cvtnum_full(name, text, min, max) with each profile's messages; nullopt after reporting.
// 7.2 calls a minus sign invalid syntax; 10.0 (Debian's parser) calls a negative integer out of range.
std::optional<std::uint64_t> parse_operand_number(Context& ctx, const std::string& name, const std::string& text,
                                                  std::uint64_t min, std::uint64_t max) {
    const bool newer = ctx.profile.version >= qemu_version(8, 0);
    const auto range = [&] {
        report_error(ctx, "Invalid " + name + " specified. Must be between " + std::to_string(min) + " and " +
                              std::to_string(max) + ".");
        return std::nullopt;
    };
    const auto first = text.find_first_not_of(" \t\n\r\f\v");
    const bool negative_integer = first != std::string::npos && text[first] == '-' && first + 1 < text.size() &&
                                  text.find_first_not_of("0123456789", first + 1) == std::string::npos;
    if (newer && negative_integer)
        return range();
    const SizeParse p = parse_qemu_size(text, ctx.profile.version);
    const bool minus = text.find('-') != std::string::npos;
    if ((p.status == ParseStatus::OutOfRange && !minus) ||
        (p.status == ParseStatus::Ok && (p.value < min || p.value > max)))
        return range();
    if (p.status != ParseStatus::Ok) {
        if (newer) {
            report_error(ctx, "Invalid " + name + " specified: '" + text + "'.");
        } else {
            report_error(ctx, "Invalid " + name + " specified. You may use k, M, G, T, P or E suffixes for");
            report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        return std::nullopt;
    }
    if (p.warning)
        report_warning(ctx, *p.warning);
    return p.value;
}

// 10.0's count= and skip= (Debian's parser): a plain integer as strtoll reads it with base 0 (leading
// blanks, a sign, 0x hex or 0 octal, nothing after the digits), then 0..INT64_MAX; no size suffixes.
std::optional<std::uint64_t> parse_plain_count(Context& ctx, const std::string& name, const std::string& text) {
    constexpr std::uint64_t MAX = INT64_MAX;
    std::size_t i = text.find_first_not_of(" \t\n\r\f\v");
    bool negative = false;
    if (i != std::string::npos && (text[i] == '+' || text[i] == '-'))
        negative = text[i++] == '-';
    unsigned base = 10;
    if (i != std::string::npos && i + 1 < text.size() && text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X') &&
        i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
        base = 16;
        i += 2;
    } else if (i != std::string::npos && i < text.size() && text[i] == '0') {
        base = 8;
    }
    std::uint64_t value = 0;
    bool overflow = false;
    std::size_t digits = 0;
    for (; i != std::string::npos && i < text.size(); ++i, ++digits) {
        const char c = text[i];
        unsigned d = 0;
        if (c >= '0' && c <= '9')
            d = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = static_cast<unsigned>(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = static_cast<unsigned>(c - 'A' + 10);
        else
            break;
        if (d >= base)
            break;
        if (value > (MAX - d) / base)
            overflow = true;
        else
            value = value * base + d;
    }
    if (digits == 0 || i == std::string::npos || i != text.size()) {
        report_error(ctx, "Invalid " + name + " specified: '" + text + "'.");
        return std::nullopt;
    }
    if (overflow || (negative && value != 0)) {
        report_error(ctx, "Invalid " + name + " specified. Must be between 0 and " + std::to_string(MAX) + ".");
        return std::nullopt;
    }
    return value;
}

} // namespace

int cmd_dd(Context& ctx, std::span<const std::string> args) {
    if (auto refused = refuse_unknown_long_options(ctx, "dd", args, LONG_OPTIONS_72, LONG_OPTIONS_INSTAR))
        return *refused;
    po::options_description opts("dd options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::string>())
        ("output-format,O", po::value<std::string>())
        ("force-share,U", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int status = 0;
    auto parsed = parse_command(ctx, "dd", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, DD_HELP);
        return 0;
    }
    auto has = [&](const char* k) { return vm.count(k) > 0; };
    auto str = [&](const char* k) { return vm[k].as<std::string>(); };

    // The operands, in order; the first bad one ends the command (img_dd's loop). A repeated
    // operand's last value counts.
    ConvertSpec::DdWindow window;
    std::optional<std::string> input, output;
    constexpr std::uint64_t MAX_BS = INT_MAX;      // img_dd_bs: cvtnum_full("bs", arg, 1, INT_MAX)
    constexpr std::uint64_t MAX_NUMBER = INT64_MAX; // cvtnum: 0..INT64_MAX
    const bool newer = ctx.profile.version >= qemu_version(8, 0); // 10.0's count/skip syntax
    for (const std::string& operand : parsed->positional) {
        const auto eq = operand.find('=');
        if (eq == std::string::npos)
            return report_error(ctx, "unrecognized operand " + operand);
        const std::string name = operand.substr(0, eq);
        const std::string value = operand.substr(eq + 1);
        if (name == "bs") {
            auto v = parse_operand_number(ctx, "bs", value, 1, MAX_BS);
            if (!v)
                return 1;
            window.block_size = *v;
        } else if (name == "count") {
            auto v = newer ? parse_plain_count(ctx, "count", value)
                           : parse_operand_number(ctx, "count", value, 0, MAX_NUMBER);
            if (!v)
                return 1;
            window.count = *v;
        } else if (name == "skip") {
            auto v = newer ? parse_plain_count(ctx, "skip", value)
                           : parse_operand_number(ctx, "skip", value, 0, MAX_NUMBER);
            if (!v)
                return 1;
            window.skip = *v;
        } else if (name == "if") {
            input = value;
        } else if (name == "of") {
            output = value;
        } else {
            return report_error(ctx, "unrecognized operand " + name);
        }
    }
    if (!input || !output)
        return report_error(ctx, "Must specify both input and output files");
    // (-U needs nothing: instar takes no image locks.)
    ConvertSpec spec;
    spec.unsafe_quirks = has("unsafe-quirks");
    if (has("allow-path"))
        spec.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    // if=: a plain, file: or json: name, or with --image-opts an option list (img_open); local
    // files only (cli/image_name.h).
    const bool image_opts = has("image-opts");
    if (image_opts && has("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    const HeaderDrivers detached = header_drivers(ctx.plugins()); // detached headers (header_in_profile)
    auto in_name =
        image_opts ? parse_image_opts(*input, false, detached) : parse_image_name(*input, true, false, detached);
    if (!in_name)
        return report_error(ctx, "Could not open '" + *input + "': " + in_name.error());
    header_in_profile(*in_name, ctx.profile.version);
    for (const auto& w : in_name->warnings)
        report_warning(ctx, w);
    if (has("format"))
        spec.source_format = str("format");
    else if (in_name->format)
        spec.source_format = in_name->format;
    // qemu opens (and probes) the image before it refuses an option given to it.
    if (in_name->unsupported_option)
        return report_error(ctx, unsupported_option_after_probe(ctx, *in_name, spec.source_format, spec.allow_paths,
                                                                spec.unsafe_quirks));
    spec.sources = {in_name->path};
    spec.source_no_backing = {in_name->no_backing}; // "backing": null: the image alone, as in convert
    spec.source_headers = {in_name->header};
    // The input's secret (--object secret named by its key-secret / encrypt.key-secret).
    auto secrets = command_secrets(vm);
    if (!secrets)
        return report_error(ctx, secrets.error());
    auto secret = image_secret(*secrets, *in_name);
    if (!secret)
        return report_error(ctx, secret.error());
    spec.source_secrets = {std::move(*secret)};
    const std::string out_fmt = has("output-format") ? str("output-format") : "raw";
    // of=: bdrv_create's name: a plain path or file:PATH ("Unknown protocol 'json'" for json:).
    auto out_name = parse_image_name(*output, false);
    if (out_name)
        spec.target.filename = out_name->path;
    else
        window.target_name_error = out_name.error();
    spec.target.plugin = ctx.plugins().find(out_fmt);
    if (listed(QEMU_NO_CREATE, out_fmt) ||
        (ctx.profile.version < qemu_version(8, 0) && listed(QEMU_NO_CREATE_72, out_fmt)))
        window.no_plugin_error = "Format driver '" + out_fmt + "' does not support image creation";
    else if (listed(QEMU_CREATES, out_fmt))
        window.no_plugin_error = *output + ": error while creating output image: instar cannot create " + out_fmt +
                                 " images (qemu-img can)";
    spec.min_sparse = 0; // img_dd writes every block
    bool skipped_past_end = false;
    window.skipped_past_end = &skipped_past_end;
    spec.dd = window;
    std::vector<std::string> driver_lines; // a format driver's own lines, without the program name
    spec.warnings = &driver_lines;
    auto done = convert_image(spec, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version);
    for (const auto& line : driver_lines)
        ctx.err << line << '\n';
    if (!done)
        return report_error(ctx, quote_given(*in_name, done.error()));
    // qemu warns after creating the (empty) output and still succeeds, as dd(1) does.
    if (skipped_past_end)
        report_error(ctx, *input + ": cannot skip to specified offset");
    return 0;
}

} // namespace instar::cli
