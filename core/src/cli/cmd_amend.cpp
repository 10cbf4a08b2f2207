// `instar amend`: qemu-img amend's command line, option parsing, messages and exit codes; the
// change itself runs in the sandbox as INSTAR_OP_EDIT with EditCommand::Amend (docs/amend.md).
#include "cli/amend_keyslots.h"
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/cache_mode.h"
#include "ops/edit_op.h"
#include "options/option_list.h"
#include "options/size.h"
#include "output/option_help.h"

#include <instar/guest/edit_amend.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text (typos included), then instar's own options.
constexpr std::string_view AMEND_HELP =
    "Usage:\n"
    "Update format-specific options of the image.  Usage:\n"
    "\n"
    "  qemu-img amend [-f FMT | --image-opts] [t CACHE] [--force] [-p] [-q]\n"
    "        [--object OBJDEF -o OPTIONS FILENAME\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operation\n"
    "  -p, --progres\n"
    "     show progress\n"
    "  -f, --format FMT\n"
    "     specify FILENAME format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "   instead of a file name (incompatible with --format)\n"
    "  -t, --cache CACHE\n"
    "     cache mode for FILENAME (writeback)\n"
    "  --force\n"
    "     allow certain unsafe operations\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images (backing files, data files) under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

// qemu-img 7.2's amend knows only these long options; 10.0's Debian build adds --quiet,
// --progress, --format and --cache, which 7.2 refuses as unrecognised.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts", "force"};
constexpr std::string_view LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks"};

constexpr auto H = OptionPolicy::Honoured;

// The format's amend table (FormatDescriptor::amend_options; empty: no bdrv_amend_options).
std::span<const OptionDesc> amend_table(const LoadedPlugin& plugin) {
    return {plugin->amend_options, plugin->amend_option_count};
}

constexpr const char* SIZE_HINT = "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                                  "and exabytes, respectively.";

// qemu_opts_do_parse: every key known to `table`, every value of its type, in command-line order.
std::optional<std::string> check_items(const std::vector<OptionItem>& items, std::span<const OptionDesc> table,
                                       std::uint32_t profile) {
    for (const auto& item : items) {
        const OptionDesc* d = find_option(table, item.key, profile);
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
            errno = 0;
            char* end = nullptr;
            (void)std::strtoull(item.value.c_str(), &end, 0);
            if (item.value.empty() || end == item.value.c_str() || *end != '\0')
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
            break;
        }
        }
    }
    return std::nullopt;
}

const std::string* last_value(const std::vector<OptionItem>& items, std::string_view key) {
    const std::string* v = nullptr;
    for (const auto& item : items)
        if (item.key == key)
            v = &item.value;
    return v;
}

bool bool_value(const std::string& v) { return v == "on" || v == "yes" || v == "true" || v == "y"; }

// qemu's print_amend_option_help: the table sorted by name, as qemu_opts_print_help prints it.
void print_amend_help(std::ostream& out, std::string_view format, std::span<const OptionDesc> table) {
    std::vector<const OptionDesc*> sorted;
    for (const auto& d : table)
        sorted.push_back(&d);
    std::sort(sorted.begin(), sorted.end(),
              [](const OptionDesc* a, const OptionDesc* b) { return std::strcmp(a->key, b->key) < 0; });
    out << "Amend options for '" << format << "':\n";
    for (const OptionDesc* d : sorted) {
        std::string line = std::string(d->key) + "=<" + std::string(option_type_name(d->type)) + ">";
        if (line.size() < 22)
            line.append(22 - line.size(), ' ');
        out << "  " << line << " - " << d->help << '\n';
    }
}

// qemu_progress_print with qemu-img amend's min_skip of 1%: "    (P/100%)\r" lines.
struct Progress {
    std::ostream* out = nullptr;
    float last = 0;
    void print(float current) {
        if (!out)
            return;
        if (current > 100)
            current = 100;
        if (current > last + 1.0f || current < last - 1.0f || current == 100 || current == 0) {
            last = current;
            char buf[64];
            std::snprintf(buf, sizeof buf, "    (%3.2f/100%%)\r", static_cast<double>(current));
            *out << buf << std::flush;
        }
    }
};

} // namespace

int cmd_amend(Context& ctx, std::span<const std::string> args) {
    if (auto refused = refuse_unknown_long_options(ctx, "amend", args, LONG_OPTIONS_72, LONG_OPTIONS_INSTAR))
        return *refused;
    po::options_description opts("amend options");
    opts.add_options()
        ("help,h", "")
        ("options,o", po::value<std::vector<std::string>>())
        ("format,f", po::value<std::string>())
        ("cache,t", po::value<std::string>())
        ("progress,p", "")
        ("quiet,q", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("force", "")
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int parse_status = 0;
    auto parsed = parse_command(ctx, "amend", opts, args, parse_status);
    if (!parsed)
        return parse_status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, AMEND_HELP);
        return 0;
    }
    std::string options;
    if (vm.count("options"))
        for (const auto& o : vm["options"].as<std::vector<std::string>>())
            if (auto err = accumulate_option_list(options, o))
                return report_error(ctx, err->message);
    if (options.empty())
        return report_usage_error(ctx, "amend", "Must specify options (-o)");
    const bool quiet = vm.count("quiet") > 0;
    Progress progress;
    if (vm.count("progress") && !quiet)
        progress.out = &ctx.out;
    std::optional<std::string> fmt =
        vm.count("format") ? std::optional<std::string>(vm["format"].as<std::string>()) : std::nullopt;
    const bool help = has_help_option(options);

    // qemu_progress_end's newline, wherever the command ends after qemu_progress_init.
    struct EndLine {
        Progress& p;
        ~EndLine() {
            if (p.out)
                *p.out << '\n' << std::flush;
        }
    };
    auto print_help_for = [&](const std::string& format) -> int {
        const LoadedPlugin* plugin = ctx.plugins().find(format);
        if (!plugin)
            return report_error(ctx, unknown_format(format));
        const auto table = amend_table(*plugin);
        if (table.empty())
            return report_error(ctx, "Format driver '" + format + "' does not support option amendment");
        print_amend_help(ctx.out, format, table);
        return 0;
    };
    if (fmt && help) {
        EndLine end{progress};
        return print_help_for(*fmt);
    }
    if (parsed->positional.size() != 1) {
        EndLine end{progress};
        return report_error(ctx, "Expecting one image file name");
    }
    const std::string cache = vm.count("cache") ? vm["cache"].as<std::string>() : "writeback";
    if (!valid_cache_mode(cache)) {
        EndLine end{progress};
        return report_error(ctx, "Invalid cache option: " + cache);
    }
    const std::string filename = parsed->positional[0];
    // A plain name, file:NAME, json:{...}, or with --image-opts an option list: local files only
    // (cli/image_name.h). qemu's messages quote the name as given.
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && fmt) {
        EndLine end{progress};
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    }
    auto name = image_opts ? parse_image_opts(filename, true) : parse_image_name(filename, true, true);
    if (!name) {
        EndLine end{progress};
        return report_error(ctx, "Could not open '" + filename + "': " + name.error());
    }
    for (const auto& w : name->warnings)
        report_warning(ctx, w);
    if (!fmt && name->format)
        fmt = name->format;

    EditOpen eo;
    eo.filename = name->path;
    eo.format = fmt;
    eo.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    eo.backing_chain = true; // qemu opens the backing chain: a missing backing file fails the same way
    eo.read_write = true;
    eo.repair_dirty = [&](const std::string& text) { print_guest_text(ctx, text); }; // qemu's read-write open
    eo.secret = named_image_secret(vm, *name);
    const OpenKey open_with = open_key(vm, *name); // qemu looks a luks key up before it reads the header
    eo.opens_without_key = open_with.without;
    eo.backing_keys = backing_keys_named(vm, *name);
    if (vm.count("allow-path"))
        eo.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    if (fmt && !ctx.plugins().find(*fmt)) {
        EndLine end{progress};
        return report_error(ctx, "Could not open '" + filename + "': Unknown driver '" + *fmt + "'");
    }
    OpenedChain chain;
    auto opened = open_for_edit(eo, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain);
    if (!opened) {
        EndLine end{progress};
        return report_error(ctx, after_unlocking_above(vm, *name, chain,
                                                  missing_key(quote_given(*name, opened.error()), open_with),
                                                  ctx.sandbox_config(), ctx.profile.version));
    }
    const ChainLink& link = chain.links.front();
    // qemu opens (and probes) the image before it refuses an option given to it.
    if (name->unsupported_option) {
        EndLine end{progress};
        return report_error(ctx, unsupported_option_error(*name, link.node.format));
    }
    // qemu opens the image for I/O: an encrypted one's key is unlocked first (named only through
    // json: or --image-opts: encrypt.key-secret).
    auto unlocked = unlock_chain_for_command(vm, *name, chain, ctx.sandbox_config(), ctx.profile.version);
    if (!unlocked) {
        EndLine end{progress};
        return report_error(ctx, unlocked.error());
    }
    const std::string format = link.node.format;
    if (!fmt && format == "raw") // only with --unsafe-quirks: qemu's warning for a probed raw opened for writing
        ctx.err << "WARNING: Image format was not specified for '" << name->path
                << "' and probing guessed raw.\n"
                   "         Automatically detecting the format is dangerous for raw images, write operations on "
                   "block 0 will be restricted.\n"
                   "         Specify the 'raw' format explicitly to remove the restrictions.\n";
    if (help) {
        EndLine end{progress};
        return print_help_for(format);
    }
    const auto table = amend_table(*link.plugin);
    if (table.empty()) {
        EndLine end{progress};
        return report_error(ctx, "Format driver '" + format + "' does not support option amendment");
    }
    const auto items = split_option_list(options);
    if (auto err = check_items(items, table, ctx.profile.version)) {
        EndLine end{progress};
        // Valid as a create option? qemu says so in a hint.
        const LoadedPlugin* plugin = link.plugin;
        std::vector<OptionDesc> both(table.begin(), table.end());
        both.insert(both.end(), (*plugin)->options, (*plugin)->options + (*plugin)->option_count);
        report_error(ctx, *err);
        if (!check_items(items, both, ctx.profile.version))
            ctx.err << "This option is only supported for image creation\n";
        return 1;
    }

    // LUKS key-slot changes (FormatDescriptor::amend_keyslot_prefix). With no prefix every amend
    // option is one and qemu checks them first (block_crypto_amend_options_luks); under a prefix
    // (qcow2's encrypt.*) qemu checks them (QAPI) only when it gets to the encryption update, after
    // its option loop and the upgrade, so a failed check travels to the guest.
    std::optional<KeySlotAmend> keyslots;
    const char* const keyslot_prefix = (*link.plugin)->amend_keyslot_prefix;
    const std::string prefix = keyslot_prefix ? keyslot_prefix : "";
    if (keyslot_prefix && prefix.empty()) {
        auto k = keyslot_amend(items, "", vm);
        if (!k) {
            EndLine end{progress};
            return report_error(ctx, k.error());
        }
        keyslots = std::move(*k);
    } else if (keyslot_prefix && std::any_of(items.begin(), items.end(), [&](const OptionItem& item) {
                   return item.key.rfind(prefix, 0) == 0;
               })) {
        auto k = keyslot_amend(items, prefix, vm);
        keyslots = k ? std::move(*k) : keyslot_error(k.error());
    }
    guest::AmendArgs a{};
    if (chain.links.size() > 1) {
        a.has_backing = 1;
        a.backing_size = chain.links[1].node.virtual_size;
    }
    std::string compat, backing_file, backing_fmt, data_file;
    auto take_string = [&](const char* key, std::uint32_t bit, std::string& dst, std::uint32_t& len) {
        if (const std::string* v = last_value(items, key)) {
            a.given |= bit;
            dst = *v;
            len = static_cast<std::uint32_t>(std::min<std::size_t>(dst.size(), guest::AMEND_MAX_STRING));
            dst.resize(len);
        }
    };
    take_string("compat", guest::AMEND_COMPAT, compat, a.compat_len);
    take_string("backing_file", guest::AMEND_BACKING_FILE, backing_file, a.backing_file_len);
    take_string("backing_fmt", guest::AMEND_BACKING_FMT, backing_fmt, a.backing_fmt_len);
    take_string("data_file", guest::AMEND_DATA_FILE, data_file, a.data_file_len);
    if (const std::string* v = last_value(items, "size")) {
        a.given |= guest::AMEND_SIZE;
        a.size = parse_qemu_size(*v, ctx.profile.version).value;
    }
    if (const std::string* v = last_value(items, "data_file_raw")) {
        a.given |= guest::AMEND_DATA_FILE_RAW;
        a.data_file_raw = bool_value(*v) ? 1 : 0;
    }
    if (const std::string* v = last_value(items, "lazy_refcounts")) {
        a.given |= guest::AMEND_LAZY_REFCOUNTS;
        a.lazy_refcounts = bool_value(*v) ? 1 : 0;
    }
    if (const std::string* v = last_value(items, "refcount_bits")) {
        a.given |= guest::AMEND_REFCOUNT_BITS;
        a.refcount_bits = std::strtoull(v->c_str(), nullptr, 0);
    }
    if (keyslots)
        a.given |= guest::AMEND_ENCRYPT;
    if (vm.count("force"))
        a.flags |= guest::AMEND_FORCE;
    if (progress.out)
        a.flags |= guest::AMEND_PROGRESS;

    EditCall call;
    call.link = &link;
    call.filename = name->path;
    call.command = guest::EditCommand::Amend;
    call.flush = cache_flushes(cache); // -t unsafe: none of the amendment's flushes is made
    const auto* p = reinterpret_cast<const std::uint8_t*>(&a);
    call.args.assign(p, p + sizeof a);
    for (const std::string* s : {&compat, &backing_file, &backing_fmt, &data_file})
        call.args.insert(call.args.end(), s->begin(), s->end());
    if (keyslots) {
        append_keyslot_args(call.args, *keyslots);
        call.secrets = {*unlocked, keyslots->new_secret, keyslots->old_secret};
    }
    if (progress.out)
        call.progress = [&](std::uint64_t done, std::uint64_t total) {
            if (total != 0)
                progress.print(100.f * static_cast<float>(done) / static_cast<float>(total));
        };

    EndLine end{progress};
    progress.print(0.f); // in case the driver reports no progress
    auto report = run_edit(call, ctx.sandbox_config(), ctx.profile.version);
    progress.print(100.f); // qemu-img prints it whether the amendment worked or not
    if (!report)
        return report_error(ctx, quote_given(*name, report.error()));
    ctx.out << report->out;
    for (const char c : report->err) {
        if (c == '\x01')
            ctx.err << ctx.prog << ": ";
        else
            ctx.err << c;
    }
    if (report->status != guest::Status::Ok) {
        if (!report->reason.empty())
            report_error(ctx, report->reason);
        else if (report->err.empty())
            report_error(ctx, "amend failed: " + status_message(report->status));
        return 1;
    }
    return 0;
}

} // namespace instar::cli
