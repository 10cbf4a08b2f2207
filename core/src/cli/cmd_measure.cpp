// `instar measure`: qemu-img measure's command line and checks, in img_measure's order; the
// arithmetic and the source's walk are ops/measure_op.
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/measure_op.h"
#include "options/option_list.h"
#include "options/size.h"
#include "output/json_pretty.h"
#include "output/option_help.h"

#include <boost/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text (its typo included), then instar's own options.
constexpr std::string_view MEASURE_HELP =
    "Usage:\n"
    "Calculate file size requred for a new image.  Usage:\n"
    "\n"
    "  qemu-img measure [-f FMT|--image-opts] [-o OPTIONS] [-O OUTPUT_FMT]\n"
    "       [--output OFMT] [--object OBJDEF] [-l SNAPSHOT_PARAM]\n"
    "       (--size SIZE | FILENAME)\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -O, --target-format FMT\n"
    "     desired target/output image format (default raw)\n"
    "  -s, --size SIZE\n"
    "     measure file size for given image size\n"
    "  FILENAME\n"
    "     measure file size required to convert from FILENAME\n"
    "  -f, --format\n"
    "     specify format of FILENAME explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -l, --snapshot SNAPSHOT\n"
    "     use this snapshot in FILENAME as source\n"
    "  --output human|json\n"
    "     output format\n"
    "  -U, --force-share\n"
    "     open images in shared mode for concurrent access\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images (backing files, extents) under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "  --estimate\n"
    "     for vmdk, vpc and vhdx targets (which qemu-img cannot measure): upper bounds of what\n"
    "     instar convert writes (docs/measure.md)\n"
    "\n";

// Long options only qemu-img 10.0 has; 7.2's getopt refuses them.
constexpr const char* LONG_OPTIONS_72[] = {"help", "image-opts", "object", "output", "size", "force-share",
                                           "qemu-version", "max-guest-memory"};
constexpr const char* LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "estimate"};

// qemu's block drivers that are not instar plugins, by what measure says about them (the formats
// qemu-img lists as supported in each profile; 7.2 has a few more network protocols).
constexpr const char* NO_CREATE[] = {"blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress",
                                     "copy-before-write", "copy-on-read", "dmg", "null-aio", "null-co",
                                     "preallocate", "quorum", "replication", "snapshot-access", "throttle",
                                     "vvfat"};
constexpr const char* NO_CREATE_72[] = {"ftp", "ftps", "http", "https"};
constexpr const char* NO_MEASURE[] = {"file", "host_cdrom", "host_device", "nbd", "nvme", "parallels", "qcow",
                                      "qed", "vdi"};
constexpr const char* NO_MEASURE_72[] = {"gluster", "iscsi", "iser", "nfs", "rbd", "ssh"};

template <std::size_t N>
bool listed(const char* const (&list)[N], std::string_view name) {
    return std::find(std::begin(list), std::end(list), name) != std::end(list);
}

constexpr const char* SIZE_HINT =
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

// qemu_opts_do_parse against the target's create options (the format's, then the file protocol's):
// the value's type is checked, nothing else. Returns qemu's message on failure.
std::optional<std::string> check_measure_options(const std::vector<OptionItem>& items,
                                                 std::span<const OptionDesc> table, std::uint32_t profile,
                                                 std::vector<std::string>& warnings) {
    for (const auto& item : items) {
        const OptionDesc* d = find_option(table, item.key, profile);
        if (!d)
            d = find_option(file_protocol_options(), item.key, profile);
        if (!d)
            return "Invalid parameter '" + item.key + "'";
        switch (d->type) {
        case OptionType::String:
            break;
        case OptionType::Bool:
            if (item.value != "on" && item.value != "off" && item.value != "yes" && item.value != "no" &&
                item.value != "true" && item.value != "false" && item.value != "y" && item.value != "n")
                return "Parameter '" + item.key + "' expects 'on' or 'off'";
            break;
        case OptionType::Number: {
            const std::string s = item.value;
            errno = 0;
            char* end = nullptr;
            (void)std::strtoull(s.c_str(), &end, 0);
            if (s.empty() || end == s.c_str() || *end != '\0')
                return "Parameter '" + item.key + "' expects a number";
            if (errno == ERANGE)
                return "Value '" + item.value + "' is too large for parameter '" + item.key + "'";
            break;
        }
        case OptionType::Size: {
            const SizeParse p = parse_qemu_size(item.value, profile);
            if (p.status == ParseStatus::OutOfRange)
                return "Value '" + item.value + "' is out of range for parameter '" + item.key + "'";
            if (p.status != ParseStatus::Ok)
                return "Parameter '" + item.key + "' expects a non-negative number below 2^64\n" + SIZE_HINT;
            if (p.warning)
                warnings.push_back(*p.warning);
            break;
        }
        }
    }
    return std::nullopt;
}

// The last setting of a key (qemu_opt_get finds the latest).
const std::string* last_value(const std::vector<OptionItem>& items, std::string_view key) {
    const std::string* v = nullptr;
    for (const auto& item : items)
        if (item.key == key)
            v = &item.value;
    return v;
}

// The ids of --object secret,id=ID,... (qemu creates them while parsing the command line).
std::vector<std::string> secret_ids(const po::variables_map& vm) {
    std::vector<std::string> secrets;
    if (!vm.count("object"))
        return secrets;
    for (const auto& o : vm["object"].as<std::vector<std::string>>()) {
        const auto parts = split_option_list(o);
        bool secret = !parts.empty() && parts.front().key == "secret" && parts.front().value == "on";
        std::string id;
        for (const auto& part : parts) {
            if (part.key == "qom-type" && part.value == "secret")
                secret = true;
            if (part.key == "id")
                id = part.value;
        }
        if (secret && !id.empty())
            secrets.push_back(id);
    }
    return secrets;
}

void print_figures(Context& ctx, OutputFormat output, const MeasureAnswer& figures) {
    if (output == OutputFormat::Human) {
        ctx.out << "required size: " << figures.required << '\n'
                << "fully allocated size: " << figures.fully_allocated << '\n';
        if (figures.has_bitmaps)
            ctx.out << "bitmaps size: " << figures.bitmaps << '\n';
        return;
    }
    boost::json::object o;
    if (figures.has_bitmaps)
        o["bitmaps"] = figures.bitmaps;
    o["required"] = figures.required;
    o["fully-allocated"] = figures.fully_allocated;
    ctx.out << qemu_json_pretty(o) << '\n';
}

// -l: "snapshot.id=ID,snapshot.name=NAME" (either or both) or an id or name.
struct SnapshotRequest {
    bool params = false; // snapshot.id= / snapshot.name= given (they win over a plain id or name)
    std::optional<std::string> id;
    std::optional<std::string> name;
    std::optional<std::string> id_or_name;
};

// bdrv_snapshot_load_tmp[_by_id_or_name]'s lookup in the top image's snapshot table: the id to read.
Expected<std::string> find_snapshot(const SnapshotRequest& want, const NodeInfo& top) {
    if (top.format != "qcow2")
        return Error{"Failed to load snapshot: Block format '" + top.format +
                     "' used by device '' does not support temporarily loading internal snapshots"};
    if (!want.params && want.id_or_name) {
        for (const auto& s : top.snapshots)
            if (s.id == *want.id_or_name)
                return s.id;
        for (const auto& s : top.snapshots)
            if (s.name == *want.id_or_name)
                return s.id;
    } else {
        for (const auto& s : top.snapshots)
            if ((!want.id || s.id == *want.id) && (!want.name || s.name == *want.name))
                return s.id;
    }
    return Error{"Failed to load snapshot: Can't find snapshot"};
}

// The target format's plugin when it can measure: no alias (qemu's bdrv_find_format knows none:
// "vhd" is not "vpc"), and extension hooks only with --estimate.
const FormatDescriptor* measuring_plugin(Context& ctx, const std::string& fmt, bool estimate) {
    const LoadedPlugin* plugin = ctx.plugins().find(fmt);
    if (plugin == nullptr || fmt != (*plugin)->name || (*plugin)->measure == nullptr)
        return nullptr;
    if (((*plugin)->measure->flags & MEASURE_HOOKS_EXTENSION) && !estimate)
        return nullptr;
    return &**plugin;
}

// --size, else the last -o size (qemu_opt_get_size finds the latest), in bytes.
std::uint64_t size_option(Context& ctx, const std::vector<OptionItem>& items, std::optional<std::uint64_t> img_size) {
    if (img_size)
        return *img_size;
    const std::string* v = last_value(items, "size");
    return v ? parse_qemu_size(*v, ctx.profile.version).value : 0;
}

// The unit the walk will count in, where the target's plan knows it before the source is open (its
// options are valid and it does not depend on the source's size): the source is then inspected and
// walked in one sandbox start (measure_op.h). Nothing is reported here: the checks after the open
// do that, in qemu's order.
std::optional<std::uint32_t> walk_unit_before_open(Context& ctx, const std::string& fmt, const std::string& options,
                                                   bool estimate, const std::vector<std::string>& secrets) {
    const FormatDescriptor* d = measuring_plugin(ctx, fmt, estimate);
    if (d == nullptr)
        return std::nullopt;
    const std::span<const OptionDesc> table{d->options, d->option_count};
    std::vector<OptionItem> items = split_option_list(options);
    std::vector<std::string> warnings;
    if (check_measure_options(items, table, ctx.profile.version, warnings))
        return std::nullopt;
    const std::uint64_t size = size_option(ctx, items, std::nullopt);
    const std::uint32_t flags =
        MEASURE_HAVE_SOURCE | MEASURE_SIZE_UNKNOWN | (estimate ? std::uint32_t{MEASURE_ESTIMATE} : 0u);
    const TargetMeasure target(*d->measure, std::move(items), table, ctx.profile.version, size, secrets, flags, 0,
                               nullptr);
    auto plan = target.plan();
    if (!plan || plan->walk_unit == 0)
        return std::nullopt;
    return static_cast<std::uint32_t>(plan->walk_unit);
}

// qemu-img 7.2's img_measure sends getopt's '?' to help(): getopt's message on stderr (named after
// the subcommand, qemu-img's argv[0] there), the global help on stdout, exit status 0. Scans like
// getopt_long("hf:O:o:l:U") with 7.2's long options; true when it handled an error.
bool measure_getopt_72(Context& ctx, std::span<const std::string> args, int& status) {
    constexpr std::string_view SHORT_WITH_ARG = "fOol";
    constexpr std::string_view SHORT_FLAGS = "hU";
    constexpr const char* LONG_WITH_ARG[] = {"object", "output", "size", "qemu-version", "max-guest-memory",
                                             "allow-path"};
    auto fail = [&](const std::string& message) {
        ctx.err << "measure: " << message << '\n';
        print_global_help(ctx);
        status = 0;
        return true;
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.size() < 2 || a[0] != '-')
            continue;
        if (a[1] == '-') {
            const auto eq = a.find('=');
            const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            if (!listed(LONG_OPTIONS_72, name) && !listed(LONG_OPTIONS_INSTAR, name))
                return fail("unrecognized option '--" + name + "'");
            const bool takes = listed(LONG_WITH_ARG, name);
            if (takes && eq == std::string::npos && i + 1 >= args.size())
                return fail("option '--" + name + "' requires an argument");
            if (!takes && eq != std::string::npos)
                return fail("option '--" + name + "' doesn't allow an argument");
            if (takes && eq == std::string::npos)
                ++i;
            continue;
        }
        for (std::size_t k = 1; k < a.size(); ++k) {
            const char c = a[k];
            if (SHORT_WITH_ARG.find(c) != std::string_view::npos) {
                if (k + 1 == a.size()) {
                    if (i + 1 >= args.size())
                        return fail(std::string("option requires an argument -- '") + c + "'");
                    ++i;
                }
                break;
            }
            if (SHORT_FLAGS.find(c) == std::string_view::npos)
                return fail(std::string("invalid option -- '") + c + "'");
        }
    }
    return false;
}

// The options that take a value, in the order given, as getopt_long hands them to img_measure's loop
// (short and long spellings folded to the long name). Parsing has already succeeded.
std::vector<std::pair<std::string, std::string>> ordered_values(std::span<const std::string> args) {
    constexpr std::pair<char, const char*> SHORT[] = {{'f', "format"}, {'O', "target-format"}, {'o', "options"},
                                                      {'l', "snapshot"}};
    constexpr const char* LONG_WITH_ARG[] = {"format", "target-format", "options", "snapshot", "object", "output",
                                             "size", "qemu-version", "max-guest-memory", "allow-path"};
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.size() < 2 || a[0] != '-')
            continue;
        if (a[1] == '-') {
            const auto eq = a.find('=');
            const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            if (!listed(LONG_WITH_ARG, name))
                continue;
            if (eq != std::string::npos)
                out.emplace_back(name, a.substr(eq + 1));
            else if (i + 1 < args.size())
                out.emplace_back(name, args[++i]);
            continue;
        }
        for (std::size_t k = 1; k < a.size(); ++k) {
            const auto* s = std::find_if(std::begin(SHORT), std::end(SHORT), [&](const auto& e) { return e.first == a[k]; });
            if (s == std::end(SHORT))
                continue;
            if (k + 1 < a.size())
                out.emplace_back(s->second, a.substr(k + 1));
            else if (i + 1 < args.size())
                out.emplace_back(s->second, args[++i]);
            break;
        }
    }
    return out;
}

} // namespace

int cmd_measure(Context& ctx, std::span<const std::string> args) {
    if (int status = 0; !ctx.profile.getopt_messages() && measure_getopt_72(ctx, args, status))
        return status;
    po::options_description opts("measure options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::vector<std::string>>())
        ("target-format,O", po::value<std::vector<std::string>>())
        ("options,o", po::value<std::vector<std::string>>())
        ("snapshot,l", po::value<std::vector<std::string>>())
        ("force-share,U", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("output", po::value<std::vector<std::string>>())
        ("size", po::value<std::vector<std::string>>())
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "")
        ("estimate", "");
    int status = 0;
    auto parsed = parse_command(ctx, "measure", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, MEASURE_HELP);
        return 0;
    }
    // The option loop's own checks, in command-line order as img_measure's getopt loop meets them.
    std::string options;
    SnapshotRequest snapshot;
    bool has_snapshot = false;
    OutputFormat output = OutputFormat::Human;
    std::optional<std::uint64_t> img_size;
    std::optional<std::string> source_fmt;
    std::string fmt = "raw";
    for (const auto& [key, value] : ordered_values(args)) {
        if (key == "format") {
            source_fmt = value;
        } else if (key == "target-format") {
            fmt = value;
        } else if (key == "options") {
            if (auto err = accumulate_option_list(options, value))
                return report_error(ctx, err->message);
        } else if (key == "snapshot") {
            has_snapshot = true;
            if (value.rfind("snapshot.", 0) == 0) {
                // qemu: sn_opts replaces an earlier -l snapshot.*; a plain name is kept beside it.
                std::string why;
                const auto opts = parse_internal_snapshot_opts(ctx, value, why);
                if (!opts)
                    return report_error(ctx, why);
                snapshot.id = opts->id;
                snapshot.name = opts->name;
                snapshot.params = true; // "snapshot.X..." parsed: at least one snapshot.id/name item
            } else {
                snapshot.id_or_name = value;
            }
        } else if (key == "output") {
            const auto o = parse_output_format(ctx, "measure", value);
            if (!o)
                return 1;
            output = *o;
        } else if (key == "size") {
            const SizeParse p = parse_qemu_size(value, ctx.profile.version);
            if (p.status == ParseStatus::Invalid) {
                if (ctx.profile.version >= qemu_version(8, 0))
                    return report_error(ctx, "Invalid image size specified: '" + value + "'.");
                report_error(ctx, "Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
                return report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            }
            if (p.status == ParseStatus::OutOfRange || p.value > static_cast<std::uint64_t>(INT64_MAX))
                return report_error(ctx, "Invalid image size specified. Must be between 0 and " +
                                             std::to_string(INT64_MAX) + ".");
            if (p.warning)
                report_warning(ctx, *p.warning);
            img_size = p.value;
        }
    }

    if (parsed->positional.size() > 1)
        return report_error(ctx, "At most one filename argument is allowed.");
    const std::string* filename = parsed->positional.empty() ? nullptr : &parsed->positional[0];
    if (!filename && (vm.count("image-opts") || source_fmt || has_snapshot))
        return report_error(ctx, "--image-opts, -f, and -l require a filename argument.");
    if (filename && img_size)
        return report_error(ctx, "--size N cannot be used together with a filename.");
    const bool estimate = vm.count("estimate") > 0;
    if (!filename && !img_size)
        return report_error(ctx, "Either --size N or one filename must be specified.");
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && source_fmt)
        return report_error(ctx, "--image-opts and --format are mutually exclusive");

    MeasureSourceSpec src;
    MeasureSource source;
    std::optional<ImageName> source_name;
    if (filename) {
        // file:, json:{...} and --image-opts name local files only (cli/image_name.h, docs/info.md).
        auto parsed_name = image_opts ? parse_image_opts(*filename) : parse_image_name(*filename, true);
        if (!parsed_name)
            return report_error(ctx, "Could not open '" + *filename + "': " + parsed_name.error());
        source_name = std::move(*parsed_name);
        for (const auto& w : source_name->warnings)
            report_warning(ctx, w);
        src.filename = source_name->path;
        src.format = source_fmt ? source_fmt : source_name->format;
        auto secrets = command_secrets(vm);
        if (!secrets)
            return report_error(ctx, secrets.error());
        auto secret = image_secret(*secrets, *source_name);
        if (!secret)
            return report_error(ctx, secret.error());
        src.secret = std::move(*secret);
        if (vm.count("allow-path"))
            src.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
        src.unsafe_quirks = vm.count("unsafe-quirks") > 0;
        if (!has_snapshot)
            src.quick_cluster_size = walk_unit_before_open(ctx, fmt, options, estimate, secret_ids(vm));
        if (auto ok = open_measure_source(src, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, source); !ok)
            return report_error(ctx, quote_given(*source_name, ok.error()));
        // qemu opens (and probes) the image before it refuses an option given to it.
        if (source_name->unsupported_option)
            return report_error(ctx, unsupported_option_error(*source_name, source.chain.links.front().node.format));
        if (has_snapshot) {
            auto id = find_snapshot(snapshot, source.chain.links.front().node);
            if (!id)
                return report_error(ctx, id.error());
            src.snapshot = *id;
        }
    }

    // img_measure's order: the format (no alias: qemu's bdrv_find_format knows none, "vhd" is not
    // "vpc"), its create options, the -o items against them, then bdrv_measure. A plugin that
    // cannot create and has no measure hooks (bochs, cloop, dmg) is a driver without create_opts.
    const LoadedPlugin* plugin = ctx.plugins().find(fmt);
    if (plugin && fmt != (*plugin)->name)
        plugin = nullptr;
    const bool v72 = ctx.profile.version < qemu_version(8, 0);
    if (listed(NO_CREATE, fmt) || (v72 && listed(NO_CREATE_72, fmt)) ||
        (plugin && !((*plugin)->capabilities & CAP_CREATE) && !(*plugin)->measure))
        return report_error(ctx, "Format driver '" + fmt + "' does not support image creation");
    if (!plugin) {
        // qemu's drivers instar has no plugin for.
        if (listed(NO_MEASURE, fmt) || (v72 && listed(NO_MEASURE_72, fmt)))
            return report_error(ctx, "Block driver '" + fmt + "' does not support size measurement");
        return report_error(ctx, unknown_format(fmt));
    }
    const std::span<const OptionDesc> table{(*plugin)->options, (*plugin)->option_count};
    std::vector<OptionItem> items = split_option_list(options);
    std::vector<std::string> warnings;
    const auto bad = check_measure_options(items, table, ctx.profile.version, warnings);
    for (const auto& w : warnings)
        report_warning(ctx, w);
    if (bad) {
        report_error(ctx, *bad);
        return report_error(ctx, "Invalid options for file format '" + fmt + "'");
    }
    const FormatDescriptor* d = measuring_plugin(ctx, fmt, estimate);
    if (d == nullptr)
        return report_error(ctx, "Block driver '" + fmt + "' does not support size measurement");

    // The source's persistent bitmaps, where its format can carry them in this profile: a qcow2 v3
    // top's, or none for a format qemu marks as supporting them (QEMU_PERSISTENT_BITMAPS_SINCE_8_2).
    const std::vector<SourceBitmap> no_bitmaps;
    const std::vector<SourceBitmap>* bitmaps = nullptr;
    if (filename && source.qcow2_v3)
        bitmaps = &source.bitmaps;
    else if (filename &&
             ((*source.chain.links.front().plugin)->qemu_traits & QEMU_PERSISTENT_BITMAPS_SINCE_8_2) != 0 &&
             ctx.profile.version >= qemu_version(8, 2))
        bitmaps = &no_bitmaps;
    const std::uint32_t flags =
        (filename ? std::uint32_t{MEASURE_HAVE_SOURCE} : 0u) | (estimate ? std::uint32_t{MEASURE_ESTIMATE} : 0u);
    const std::uint64_t size = size_option(ctx, items, img_size);
    const TargetMeasure target(*d->measure, std::move(items), table, ctx.profile.version, size, secret_ids(vm), flags,
                               filename ? source.virtual_size : 0, bitmaps);
    auto plan = target.plan();
    if (!plan)
        return report_error(ctx, plan.error());
    std::uint64_t data = 0;
    if (filename && plan->walk_unit != 0) {
        const bool no_block_status = ((*source.chain.links.front().plugin)->qemu_traits & QEMU_NO_BLOCK_STATUS) != 0;
        if ((plan->flags & MEASURE_QEMU_BLOCK_STATUS) && no_block_status) {
            // qemu's block layer calls every byte of such a source DATA: no walk to run.
            data = measure_round_up(source.virtual_size, plan->walk_unit);
        } else {
            auto walked = measure_data_clusters(src, source, static_cast<std::uint32_t>(plan->walk_unit),
                                                ctx.sandbox_config(), ctx.profile.version);
            if (!walked)
                return report_error(ctx, walked.error());
            data = *walked;
        }
    }
    auto figures = target.figures(data);
    if (!figures)
        return report_error(ctx, figures.error());
    print_figures(ctx, output, *figures);
    return 0;
}

} // namespace instar::cli
