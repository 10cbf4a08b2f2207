// Shared CLI plumbing: context, messages in each profile's shape, option parsing.
#include "cli/common.h"

#include "cli/image_name.h"
#include "ops/guest_info_runner.h"
#include "ops/info_op.h"
#include "options/option_list.h"
#include "options/size.h"
#include "output/option_help.h"

#include <algorithm>
#include <iostream>
#include <map>

namespace instar::cli {

const PluginRegistry& Context::plugins() {
    if (!registry_)
        registry_ = PluginRegistry::discover(discovery_inputs_from_environment(),
                                             [this](const std::string& w) { report_warning(*this, w); });
    return *registry_;
}

vmm::SandboxConfig Context::sandbox_config() const {
    vmm::SandboxConfig c;
    c.max_guest_memory = max_guest_memory;
    c.max_guest_memory_given = max_guest_memory_given;
    c.sandbox = sandbox;
    c.timeout = guest_timeout;
    c.detached_teardown = true; // a command line is a one-shot process (vmm::SandboxConfig)
    return c;
}

int report_error(Context& ctx, std::string_view msg) {
    // A guest's reason may carry lines qemu error_reports before failing ('\x01' LINE '\n':
    // printable_reason keeps the marker at a line start): each is printed first, as qemu-img does,
    // with the program's name.
    std::string rest(msg);
    for (std::size_t at; (at = rest.find('\x01')) != std::string::npos;) {
        std::size_t eol = rest.find('\n', at);
        if (eol == std::string::npos)
            eol = rest.size();
        ctx.err << ctx.prog << ": " << std::string_view(rest).substr(at + 1, eol - at - 1) << '\n';
        rest.erase(at, eol - at + (eol < rest.size() ? 1 : 0));
    }
    ctx.err << ctx.prog << ": " << rest << '\n';
    return 1;
}

void report_warning(Context& ctx, std::string_view msg) { ctx.err << ctx.prog << ": warning: " << msg << '\n'; }

void print_guest_text(Context& ctx, std::string_view text) {
    std::size_t at = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\x01' || (i > 0 && text[i - 1] != '\n'))
            continue; // a marker only starts a line: a 0x01 in a name is printed as it is
        ctx.err.write(text.data() + at, static_cast<std::streamsize>(i - at));
        ctx.err << ctx.prog << ": ";
        at = i + 1;
    }
    ctx.err.write(text.data() + at, static_cast<std::streamsize>(text.size() - at));
}

namespace {

// 7.2: "Try 'qemu-img --help' for more information"; 10.0: "Try 'ARGV0 CMD --help' for more info".
void try_help(Context& ctx, std::string_view command) {
    if (ctx.profile.getopt_messages()) {
        ctx.err << "Try '" << ctx.argv0;
        if (!command.empty())
            ctx.err << ' ' << command;
        ctx.err << " --help' for more info\n";
    } else {
        ctx.err << "Try '" << ctx.prog << " --help' for more information\n";
    }
}

} // namespace

int report_usage_error(Context& ctx, std::string_view command, std::string_view msg) {
    ctx.err << ctx.prog << ": " << msg << '\n';
    try_help(ctx, command);
    return 1;
}

int report_option_error(Context& ctx, std::string_view command, OptionErrorKind kind, std::string_view token) {
    const bool is_long = token.rfind("--", 0) == 0;
    const std::string bare(token.substr(is_long ? 2 : 1));
    if (ctx.profile.getopt_messages()) {
        ctx.err << ctx.argv0;
        if (!command.empty())
            ctx.err << ' ' << command;
        ctx.err << ": ";
        if (kind == OptionErrorKind::Unknown)
            ctx.err << (is_long ? "unrecognized option '" + std::string(token) + "'" : "invalid option -- '" + bare + "'");
        else
            ctx.err << (is_long ? "option '" + std::string(token) + "' requires an argument"
                                : "option requires an argument -- '" + bare + "'");
        ctx.err << '\n';
    } else {
        ctx.err << ctx.prog << ": "
                << (kind == OptionErrorKind::Unknown ? "unrecognized option '" : "missing argument for option '")
                << token << "'\n";
    }
    try_help(ctx, command);
    return 1;
}

po::options_description common_options() {
    po::options_description d("instar options");
    d.add_options()
        ("qemu-version", po::value<std::string>(), "qemu-img version whose output to reproduce (7.2, 8.0+)")
        ("max-guest-memory", po::value<std::string>(), "cap on the sandbox VM's RAM (size, e.g. 256M)")
        ("sandbox", po::value<std::string>(), "where guest code runs: auto, kvm or process");
    return d;
}

namespace {

// Program_options names an option by its canonical long form; recover what the user typed.
std::string token_as_typed(std::span<const std::string> args, const po::error_with_option_name& e) {
    const std::string name = e.get_option_name(); // "--format" or "-f"
    for (const auto& a : args) {
        if (a == name || a.rfind(name + "=", 0) == 0)
            return name;
    }
    // A short option given as "-f" shows up under its long name; find the short spelling used.
    for (const auto& a : args)
        if (a.size() >= 2 && a[0] == '-' && a[1] != '-' && name.size() > 2 && name.rfind("--", 0) == 0)
            return a.substr(0, 2);
    return name;
}

// getopt's rule, which qemu-img's commands follow: an option given again replaces its value, and a
// flag given again changes nothing (`-q -q`, `-f raw -f qcow2`: the last wins), where boost would
// refuse the repeat. Options that collect (declared as string vectors: --object, -o, the positional
// words) keep every occurrence, in order.
void keep_last_occurrences(po::parsed_options& parsed, const po::options_description& all,
                           std::map<std::string, std::vector<std::string>>& replaced) {
    auto collects = [&](const std::string& key) {
        const po::option_description* d = all.find_nothrow(key, false);
        return d != nullptr && dynamic_cast<const po::typed_value<std::vector<std::string>>*>(d->semantic().get()) != nullptr;
    };
    std::map<std::string, size_t> last;
    for (size_t i = 0; i < parsed.options.size(); ++i)
        last[parsed.options[i].string_key] = i;
    std::vector<po::option> kept;
    kept.reserve(parsed.options.size());
    for (size_t i = 0; i < parsed.options.size(); ++i) {
        const po::option& o = parsed.options[i];
        if (last[o.string_key] == i || collects(o.string_key))
            kept.push_back(o);
        else if (!o.value.empty())
            replaced[o.string_key].push_back(o.value.front());
    }
    parsed.options = std::move(kept);
}

} // namespace

std::optional<ParsedCommand> parse_command(Context& ctx, std::string_view command,
                                           const po::options_description& options,
                                           std::span<const std::string> args, int& status) {
    po::options_description all;
    all.add(options).add(common_options());
    all.add_options()("positional-args", po::value<std::vector<std::string>>());
    po::positional_options_description pos;
    pos.add("positional-args", -1);
    namespace cls = po::command_line_style;
    const int style = cls::allow_short | cls::short_allow_adjacent | cls::short_allow_next | cls::allow_long |
                      cls::long_allow_adjacent | cls::long_allow_next | cls::allow_dash_for_short;
    ParsedCommand parsed;
    try {
        const std::vector<std::string> argv(args.begin(), args.end());
        po::parsed_options given = po::command_line_parser(argv).options(all).positional(pos).style(style).run();
        keep_last_occurrences(given, all, parsed.replaced);
        po::store(given, parsed.vm);
        po::notify(parsed.vm);
    } catch (const po::unknown_option& e) {
        status = report_option_error(ctx, command, OptionErrorKind::Unknown, e.get_option_name());
        return std::nullopt;
    } catch (const po::invalid_command_line_syntax& e) {
        if (e.kind() == po::invalid_command_line_syntax::missing_parameter) {
            status = report_option_error(ctx, command, OptionErrorKind::MissingArgument, token_as_typed(args, e));
            return std::nullopt;
        }
        status = report_usage_error(ctx, command, e.what());
        return std::nullopt;
    } catch (const po::error& e) {
        status = report_usage_error(ctx, command, e.what());
        return std::nullopt;
    }
    if (parsed.vm.count("positional-args"))
        parsed.positional = parsed.vm["positional-args"].as<std::vector<std::string>>();
    if (!apply_common_options(ctx, parsed.vm)) {
        status = 1;
        return std::nullopt;
    }
    return parsed;
}

std::string long_option_name(std::string_view arg) {
    const std::string_view name = arg.substr(2);
    return std::string(name.substr(0, name.find('=')));
}

std::optional<int> refuse_unknown_long_options(Context& ctx, std::string_view command,
                                               std::span<const std::string> args,
                                               std::span<const std::string_view> known,
                                               std::span<const std::string_view> instar_own) {
    if (ctx.profile.getopt_messages())
        return std::nullopt;
    auto listed = [](std::span<const std::string_view> list, std::string_view name) {
        return std::find(list.begin(), list.end(), name) != list.end();
    };
    // instar's global options, accepted among every command's options too.
    static constexpr std::string_view GLOBAL[] = {"qemu-version", "max-guest-memory", "sandbox"};
    for (const auto& a : args) {
        if (a == "--")
            break;
        if (a.rfind("--", 0) != 0)
            continue;
        const std::string name = long_option_name(a);
        if (!listed(known, name) && !listed(instar_own, name) && !listed(GLOBAL, name))
            return report_option_error(ctx, command, OptionErrorKind::Unknown, a);
    }
    return std::nullopt;
}

bool valid_cache_mode(std::string_view mode) {
    return mode == "none" || mode == "off" || mode == "writeback" || mode == "writethrough" ||
           mode == "directsync" || mode == "unsafe";
}

std::string unknown_format(std::string_view fmt) {
    return "Unknown file format '" + std::string(fmt) + "'" + missing_plugin_hint(fmt);
}

std::optional<OutputFormat> parse_output_format(Context& ctx, std::string_view command, const std::string& value) {
    if (value == "human")
        return OutputFormat::Human;
    if (value == "json")
        return OutputFormat::Json;
    if (ctx.profile.getopt_messages())
        report_usage_error(ctx, command, "--output expects 'human' or 'json' not '" + value + "'");
    else
        report_error(ctx, "--output must be used with human or json as argument.");
    return std::nullopt;
}

bool apply_common_options(Context& ctx, const po::variables_map& vm) {
    if (vm.count("sandbox")) {
        const auto& kind = vm["sandbox"].as<std::string>();
        const auto parsed = vmm::parse_sandbox_kind(kind);
        if (!parsed) {
            report_error(ctx, "invalid --sandbox '" + kind + "': expected auto, kvm or process");
            return false;
        }
        ctx.sandbox = *parsed;
    }
    if (!vm.count("max-guest-memory"))
        return true;
    const auto& text = vm["max-guest-memory"].as<std::string>();
    const SizeParse p = parse_qemu_size(text, ctx.profile.version);
    if (p.status != ParseStatus::Ok || p.value == 0) {
        report_error(ctx, "invalid --max-guest-memory '" + text + "': expected a size such as 256M");
        return false;
    }
    ctx.max_guest_memory = p.value;
    ctx.max_guest_memory_given = true;
    return true;
}

// qemu-img's internal_snapshot_opts (the list -l's "snapshot.*" form is parsed with), for the help
// a help flag prints.
const OptionDesc INTERNAL_SNAPSHOT_OPTS[] = {
    {"snapshot.id", OptionType::String, nullptr, "snapshot id", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"snapshot.name", OptionType::String, nullptr, "snapshot name", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
};

std::optional<InternalSnapshotOpts> parse_internal_snapshot_opts(Context& ctx, const std::string& param,
                                                                 std::string& error) {
    InternalSnapshotOpts out;
    for (const auto& item : split_option_list(param)) {
        if (item.flag && item.value == "on" && (item.key == "help" || item.key == "?")) {
            // qemu_opts_parse_noisily stops at a help flag and lists the options.
            ctx.out << "snapshot options:\n";
            for (const OptionDesc& d : INTERNAL_SNAPSHOT_OPTS)
                ctx.out << option_help_line(d) << '\n';
            error = "Failed in parsing snapshot param '" + param + "'";
            return std::nullopt;
        }
        if (item.flag)
            if (auto w = short_form_flag(item.value == "off" ? "no" + item.key : item.key).warning)
                report_warning(ctx, *w);
        if (item.key == "snapshot.id") {
            out.id = item.value;
        } else if (item.key == "snapshot.name") {
            out.name = item.value;
        } else {
            report_error(ctx, "Invalid parameter '" + item.key + "'");
            error = "Failed in parsing snapshot param '" + param + "'";
            return std::nullopt;
        }
    }
    return out;
}

std::optional<int> parse_rate_limit(Context& ctx, const std::string& text, std::uint64_t& out) {
    const SizeParse p = parse_qemu_size(text, ctx.profile.version);
    // cvtnum_full's range: 0..INT64_MAX. 10.0 (Debian's parser) also calls a plain negative
    // integer ("-1", " -5", "-0") out of range; 7.2 calls it invalid.
    const bool newer = ctx.profile.version >= qemu_version(8, 0);
    const auto first = text.find_first_not_of(" \t\n\r\f\v");
    const bool negative_integer = first != std::string::npos && text[first] == '-' && first + 1 < text.size() &&
                                  text.find_first_not_of("0123456789", first + 1) == std::string::npos;
    const bool minus = text.find('-') != std::string::npos;
    if ((p.status == ParseStatus::OutOfRange && !minus) || (p.status == ParseStatus::Ok && p.value > INT64_MAX) ||
        (newer && negative_integer))
        return report_error(ctx, "Invalid rate limit specified. Must be between 0 and 9223372036854775807.");
    if (p.status != ParseStatus::Ok) {
        if (newer)
            return report_error(ctx, "Invalid rate limit specified: '" + text + "'.");
        report_error(ctx, "Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for");
        return report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    }
    out = p.value;
    return std::nullopt;
}

std::string unsupported_option_after_probe(Context& ctx, const ImageName& name,
                                           const std::optional<std::string>& format,
                                           const std::vector<std::string>& allow_paths, bool unsafe_quirks) {
    InfoOptions io;
    io.filename = name.path;
    io.format = format ? format : name.format;
    io.unsafe_quirks = unsafe_quirks;
    io.allow_paths = allow_paths;
    auto runner = make_sandbox_info_runner(ctx.sandbox_config(), ctx.profile.version);
    if (!runner)
        return runner.error();
    auto nodes = collect_info(io, ctx.plugins(), *runner);
    if (!nodes)
        return quote_given(name, nodes.error());
    return unsupported_option_error(name, nodes->front().format);
}

} // namespace instar::cli
