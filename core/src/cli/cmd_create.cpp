// `instar create`: qemu-img create's command line and bdrv_img_create's checks, in qemu's order;
// the image itself is written by ops/create_op (the format's guest half, or the host for raw).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/create_op.h"
#include "ops/guest_info_runner.h"
#include "ops/info_op.h"
#include "options/option_list.h"
#include "options/size.h"
#include "output/create_line.h"
#include "output/json_pretty.h"
#include "output/option_help.h"

#include <boost/json.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
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

// Per-target flags: alternatives to `-o KEY=VALUE` for the format whose table has KEY (checked
// like any -o key, so a flag for another format's key gets qemu's "Invalid parameter" error).
struct TargetFlag {
    const char* flag;
    const char* key;
    bool value; // takes a value; without one the flag means KEY=on
};
constexpr TargetFlag TARGET_FLAGS[] = {
    {"cluster-size", "cluster_size", true},   {"refcount-bits", "refcount_bits", true},
    {"extended-l2", "extended_l2", false},    {"lazy-refcounts", "lazy_refcounts", false},
    {"compat", "compat", true},               {"subformat", "subformat", true},
    {"grain-size", "grain_size", true},       {"block-size", "block_size", true},
    {"preallocation", "preallocation", true},
};

// qemu-img's cvtnum("image size", ...) with each profile's messages.
std::optional<std::uint64_t> parse_image_size(Context& ctx, const std::string& text) {
    constexpr std::uint64_t MAX_IMAGE_SIZE = INT64_MAX; // qemu-img's limit: sizes are int64_t
    const SizeParse p = parse_qemu_size(text, ctx.profile.version);
    if (p.status == ParseStatus::Invalid) {
        if (ctx.profile.version >= qemu_version(8, 0)) {
            report_error(ctx, "Invalid image size specified: '" + text + "'.");
        } else {
            report_error(ctx, "Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
            report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        return std::nullopt;
    }
    if (p.status == ParseStatus::OutOfRange || p.value > MAX_IMAGE_SIZE) {
        report_error(ctx, "Invalid image size specified. Must be between 0 and " + std::to_string(MAX_IMAGE_SIZE) + ".");
        return std::nullopt;
    }
    if (p.warning)
        report_warning(ctx, *p.warning);
    return p.value;
}

// One create invocation after option parsing: what bdrv_img_create works with.
struct CreateRequestLine {
    Context& ctx;
    const std::string& filename; // as the user wrote it (the Formatting line, messages)
    const std::string& path;     // the file to create: filename without a `file:` prefix
    const FormatDescriptor& format;
    OptionSet set; // validated -o settings (flags folded in)
    std::optional<std::uint64_t> img_size;
    std::optional<std::string> backing_file;
    std::optional<std::string> backing_fmt;
    bool unsafe = false;         // -u: do not open the backing file
    bool unsafe_quirks = false;  // --unsafe-quirks: qemu's raw fallback when detecting its format
    std::vector<std::string> allow_paths;
    const SecretStore* secrets = nullptr; // --object secret (key-secret / encrypt.key-secret name one)
};

void set_item(OptionSet& set, const std::string& key, const std::string& value) {
    for (auto& item : set.items)
        if (item.key == key) {
            item.value = value;
            return;
        }
    set.items.push_back({key, value});
}

// The backing file's format and virtual size, read by the guest (an info run) after the path policy
// allowed it. qemu's messages: "Could not open 'NAME': REASON" then "Could not open backing image.".
struct BackingProbe {
    OpenedFile file;
    std::string format;
    std::uint64_t virtual_size = 0;
};
Expected<BackingProbe> probe_backing(CreateRequestLine& r, const std::string& name) {
    auto policy = default_policy(r.path, r.allow_paths);
    if (!policy)
        return Error{policy.error()};
    auto checked = check_referenced(*policy, r.path, "backing file", name);
    if (!checked)
        return Error{checked.error() + "\nCould not open backing image."};
    const std::string display = *checked;
    struct stat st{};
    if (::stat(display.c_str(), &st) != 0)
        return Error{r.filename + ": Could not open '" + display + "': " + std::strerror(errno) +
                     "\nCould not open backing image."};
    auto opened = open_referenced(*policy, r.path, "backing file", name);
    if (!opened)
        return Error{opened.error() + "\nCould not open backing image."};
    auto runner = make_sandbox_info_runner(r.ctx.sandbox_config(), r.ctx.profile.version);
    if (!runner) {
        close_file(*opened);
        return Error{runner.error()};
    }
    InfoOptions io;
    io.filename = display;
    io.format = r.backing_fmt;
    io.allow_paths = r.allow_paths;
    io.unsafe_quirks = r.unsafe_quirks;
    io.top = &*opened;
    auto nodes = collect_info(io, r.ctx.plugins(), *runner);
    if (!nodes) {
        close_file(*opened);
        // bdrv_img_create reports the backing open's own error: the format's words without the
        // "Could not open 'NAME': " frame qemu-img puts around a top image's (a file that cannot be
        // opened keeps file-posix's own "Could not open 'NAME': ...").
        std::string why = nodes.error();
        const std::string frame = "Could not open '" + display + "': ";
        if (why.rfind(frame, 0) == 0)
            why.erase(0, frame.size());
        return Error{r.filename + ": " + why + "\nCould not open backing image."};
    }
    return BackingProbe{*opened, nodes->front().format, nodes->front().virtual_size};
}

int run_create(CreateRequestLine& r, const LoadedPlugin& plugin, bool quiet, bool json) {
    Context& ctx = r.ctx;
    const FormatDescriptor& d = r.format;
    const std::span<const OptionDesc> table{d.options, d.option_count};
    const std::string fmt = d.name;
    if (r.set.find("size") && r.img_size)
        return report_error(ctx, r.filename + ": The image size must be specified only once");
    const bool has_backing_key = find_option(table, "backing_file", ctx.profile.version) != nullptr;
    const bool differencing = (d.capabilities & CAP_CREATE_DIFFERENCING) != 0;
    if (r.backing_file && !has_backing_key && !differencing)
        return report_error(ctx, r.filename + ": Backing file not supported for file format '" + fmt + "'");
    if (r.backing_fmt && !has_backing_key && !differencing)
        return report_error(ctx, r.filename + ": Backing file format not supported for file format '" + fmt + "'");
    if (r.backing_file)
        set_item(r.set, "backing_file", *r.backing_file);
    if (r.backing_fmt)
        set_item(r.set, "backing_fmt", *r.backing_fmt);
    // Copies: r.set grows below (size), which would move the strings.
    const std::optional<std::string> backing =
        r.set.find("backing_file") ? std::optional(*r.set.find("backing_file")) : std::nullopt;
    const std::optional<std::string> backing_fmt =
        r.set.find("backing_fmt") ? std::optional(*r.set.find("backing_fmt")) : std::nullopt;
    if (backing && *backing == r.filename)
        return report_error(ctx, r.filename +
                                     ": Error: Trying to create an image with the same filename as the backing file");
    if (backing && backing->empty())
        return report_error(ctx, r.filename + ": Expected backing file name, got empty string");

    std::optional<std::uint64_t> size = r.img_size;
    if (const std::string* s = r.set.find("size"))
        size = parse_qemu_size(*s, ctx.profile.version).value;
    std::optional<BackingProbe> probe;
    if (backing && !r.unsafe) {
        r.backing_fmt = backing_fmt;
        auto p = probe_backing(r, *backing);
        if (!p)
            return report_error(ctx, p.error());
        probe = std::move(*p);
        if (!backing_fmt) {
            close_file(probe->file);
            // 7.2's hint really has no newline (error_append_hint without "\n").
            const std::string hint = "Detected format of " + probe->format + ".";
            report_error(ctx, r.filename + ": Backing file specified without backing format");
            ctx.err << hint << (ctx.profile.version >= qemu_version(8, 0) ? "\n" : "");
            return 1;
        }
        if (!size)
            size = probe->virtual_size;
    } else if (backing && !backing_fmt) {
        return report_error(ctx, r.filename + ": Backing file specified without backing format");
    }
    // With -u qemu-img reads neither size nor format from the backing file, but a format that
    // records its parent's identity (vmdk's parentCID) still reads it when the policy allows it.
    std::optional<OpenedFile> unsafe_backing;
    if (backing && r.unsafe)
        if (auto policy = default_policy(r.path, r.allow_paths))
            if (auto f = open_referenced(*policy, r.path, "backing file", *backing))
                unsafe_backing = *f;
    struct CloseBacking {
        std::optional<OpenedFile>& a;
        std::optional<BackingProbe>& b;
        ~CloseBacking() {
            if (a)
                close_file(*a);
            if (b)
                close_file(b->file);
        }
    } close_backing{unsafe_backing, probe};
    // bdrv_img_create (qemu 9.0+) asks for no size when a format's detached-header (luks) is on: its
    // Formatting line says size=-1 and the format then refuses the option (docs/formats/luks.md).
    const OptionDesc* detached = find_option(table, "detached-header", ctx.profile.version);
    const std::string* detached_value = r.set.find("detached-header");
    const bool sizeless =
        detached && detached_value && normalised_value(*detached, *detached_value, ctx.profile.version) == "on";
    if (!size && !sizeless)
        return report_error(ctx, r.filename + ": Image creation needs a size parameter");
    set_item(r.set, "size", size ? std::to_string(*size) : "-1");
    if (!quiet) {
        ctx.out << formatting_line(r.filename, fmt, table, file_protocol_options(), r.set, ctx.profile.version)
                << '\n';
        ctx.out.flush();
    }

    // Formats without their own preallocation key hand it to the file protocol, which checks it.
    if (const std::string* mode = r.set.find("preallocation");
        mode && !find_option(table, "preallocation", ctx.profile.version)) {
        if (*mode == "metadata")
            return report_error(ctx, r.filename + ": Unsupported preallocation mode: metadata");
        if (*mode != "off" && *mode != "falloc" && *mode != "full")
            return report_error(ctx, r.filename + ": invalid parameter value: " + *mode);
    }

    // qcow2's external data file: made by the host (qcow2_co_create_opts creates it before the
    // format checks its options), stored in the image under the name without a `file:` prefix.
    std::optional<std::string> data_file;
    if (const std::string* df = r.set.find("data_file")) {
        auto name = parse_image_name(*df, false);
        if (!name)
            return report_error(ctx, r.filename + ": " + name.error());
        data_file = name->path;
    }

    CreateSpec spec;
    // The image's secret (qemu looks it up in the driver, after the Formatting line).
    // A detached-header at any value is refused by the format before that lookup (luks_create.cpp).
    for (const char* key : {"key-secret", "encrypt.key-secret"})
        if (const std::string* id = r.set.find(key); id && r.secrets && !(detached && detached_value)) {
            auto secret = secret_for(*r.secrets, *id);
            if (!secret)
                return report_error(ctx, r.filename + ": " + secret.error());
            spec.secret = std::move(*secret);
        }
    spec.filename = r.path;
    spec.data_file = data_file;
    spec.plugin = &plugin;
    spec.size = size.value_or(0);
    spec.qemu_version = ctx.profile.version;
    for (const auto& item : r.set.items) {
        if (item.key == "size" || item.key == "backing_file" || item.key == "backing_fmt")
            continue;
        const OptionDesc* desc = find_option(table, item.key, ctx.profile.version);
        if (!desc)
            desc = find_option(file_protocol_options(), item.key, ctx.profile.version);
        if (item.key == "data_file") {
            spec.options.push_back({item.key, *data_file});
            continue;
        }
        spec.options.push_back({item.key, desc ? normalised_value(*desc, item.value, ctx.profile.version) : item.value});
        if (item.key == "preallocation")
            spec.preallocation = item.value;
    }
    spec.backing_file = backing;
    spec.backing_fmt = backing_fmt;
    if (probe) {
        spec.backing = &probe->file;
        spec.backing_size = probe->virtual_size;
    } else if (unsafe_backing) {
        spec.backing = &*unsafe_backing;
    }
    auto created = create_image(spec, ctx.sandbox_config());
    if (!created)
        return report_error(ctx, created.error());
    if (json) {
        boost::json::object o;
        o["format"] = fmt;
        o["filename"] = r.filename;
        o["virtual_size"] = spec.size;
        o["resolved_unit_size"] = created->unit_size;
        o["metadata_bytes_written"] = created->metadata_bytes;
        o["file_size_after"] = created->file_size;
        ctx.out << qemu_json_pretty(o) << '\n';
    }
    return 0;
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
        ("object", po::value<std::vector<std::string>>())
        ("output", po::value<std::string>()->default_value("human"))
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    for (const auto& f : TARGET_FLAGS)
        if (f.value)
            opts.add_options()(f.flag, po::value<std::string>());
        else
            opts.add_options()(f.flag, "");
    int status = 0;
    auto parsed = parse_command(ctx, "create", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, CREATE_HELP);
        return 0;
    }
    const auto output = parse_output_format(ctx, "create", vm["output"].as<std::string>());
    if (!output)
        return 1;
    // --object secret: qemu makes the objects while parsing the command line, so errors come first.
    SecretStore secrets;
    if (vm.count("object")) {
        auto store = parse_objects(vm["object"].as<std::vector<std::string>>());
        if (!store)
            return report_error(ctx, store.error());
        secrets = std::move(*store);
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
        // qemu's print_block_option_help: a driver without create options (bochs, cloop, dmg).
        if (!((*plugin)->capabilities & CAP_CREATE) && (*plugin)->option_count == 0)
            return report_error(ctx, "Format driver '" + fmt + "' does not support image creation");
        print_option_help(ctx.out, fmt, {(*plugin)->options, (*plugin)->option_count}, filename != nullptr,
                          ctx.profile.version);
        return 0;
    }
    if (!filename)
        return report_usage_error(ctx, "create", "Expecting image file name");
    std::optional<std::uint64_t> img_size;
    if (parsed->positional.size() >= 2) {
        img_size = parse_image_size(ctx, parsed->positional[1]);
        if (!img_size)
            return 1;
    }
    if (parsed->positional.size() > 2)
        return report_usage_error(ctx, "create", "Unexpected argument: " + parsed->positional[2]);

    const LoadedPlugin* plugin = ctx.plugins().find(fmt);
    if (!plugin)
        return report_error(ctx, *filename + ": " + unknown_format(fmt));
    const FormatDescriptor& d = **plugin;
    if (!(d.capabilities & CAP_CREATE))
        return report_error(ctx, *filename + ": Format driver '" + std::string(d.name) +
                                     "' does not support image creation");
    const std::span<const OptionDesc> table{d.options, d.option_count};
    // bdrv_img_create finds the protocol before it reads any option: "a:b" is protocol "a".
    auto name = parse_image_name(*filename, false);
    if (!name)
        return report_error(ctx, *filename + ": " + name.error());

    // Per-target flags first, so any -o setting of the same key wins (last setting wins).
    std::vector<OptionItem> items;
    for (const auto& f : TARGET_FLAGS) {
        const std::string name = std::string(f.flag);
        if (vm.count(name))
            items.push_back({f.key, f.value ? vm[name].as<std::string>() : "on"});
    }
    for (auto& item : split_option_list(options))
        items.push_back(std::move(item));
    std::vector<std::string> warnings;
    auto set = apply_option_table(items, table, file_protocol_options(), ctx.profile.version, &warnings);
    for (const auto& w : warnings)
        report_warning(ctx, w);
    if (!set)
        return report_error(ctx, *filename + ": " + set.error());

    CreateRequestLine req{ctx, *filename, name->path, d, *set, img_size, {}, {}, false, false, {}, &secrets};
    req.backing_file = vm.count("backing") ? std::optional(vm["backing"].as<std::string>()) : std::nullopt;
    req.backing_fmt =
        vm.count("backing-format") ? std::optional(vm["backing-format"].as<std::string>()) : std::nullopt;
    req.unsafe = vm.count("backing-unsafe") > 0;
    req.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    if (vm.count("allow-path"))
        req.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    return run_create(req, *plugin, vm.count("quiet") > 0 || *output == OutputFormat::Json,
                      *output == OutputFormat::Json);
}

} // namespace instar::cli
