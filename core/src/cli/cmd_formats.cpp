// `instar formats`: every loaded plugin, its metadata and where it came from (instar only).
#include "cli/commands.h"
#include "cli/help.h"
#include "ops/sandbox_selftest.h"
#include "output/json_pretty.h"
#include "output/option_help.h"

#include <boost/json.hpp>

#include <cstdio>
#include <ostream>

namespace instar::cli {
namespace {

namespace json = boost::json;

constexpr std::string_view FORMATS_HELP =
    "List the image format plugins instar has loaded.  Usage:\n"
    "\n"
    "  instar formats [--output human|json] [--probe FILE]\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  --output human|json\n"
    "     output format (default: human)\n"
    "  --probe FILE\n"
    "     sandbox self-test: boot a guest, read FILE's first sectors through its device, crc32 them\n"
    "     in the guest with zlib, run the raw module's partition-table probe, print one JSON line\n"
    "\n";

constexpr std::pair<Capability, const char*> CAPABILITY_NAMES[] = {
    {CAP_INFO, "info"},         {CAP_CHECK, "check"},       {CAP_CREATE, "create"}, {CAP_CONVERT, "convert"},
    {CAP_COMPARE, "compare"},   {CAP_MAP, "map"},           {CAP_MEASURE, "measure"}, {CAP_RESIZE, "resize"},
    {CAP_SNAPSHOT, "snapshot"}, {CAP_REBASE, "rebase"},     {CAP_COMMIT, "commit"}, {CAP_AMEND, "amend"},
    {CAP_CREATE_PLAIN_FILE, "create-plain-file"}, {CAP_CREATE_DIFFERENCING, "create-differencing"},
    {CAP_CONVERT_TARGET, "convert-target"}, {CAP_CONVERT_COMPRESS, "convert-compress"},
    {CAP_READ_ONLY, "read-only"}, {CAP_MAKE_EMPTY, "make-empty"},
};

const char* policy_name(OptionPolicy p) {
    switch (p) {
    case OptionPolicy::Honoured: return "honoured";
    case OptionPolicy::Ignored: return "ignored";
    case OptionPolicy::Rejected: return "rejected";
    case OptionPolicy::Extension: return "extension";
    }
    return "honoured";
}

std::string version_text(std::uint32_t v) {
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

std::string hex_bytes(const unsigned char* b, std::uint32_t n) {
    std::string s;
    char buf[4];
    for (std::uint32_t i = 0; i < n; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", b[i]);
        s += buf;
    }
    return s;
}

json::array strings(const char* const* list) {
    json::array a;
    if (list)
        for (; *list; ++list)
            a.emplace_back(*list);
    return a;
}

// The descriptor's capabilities; "measure" where it has measure hooks (ABI 6: the hooks, not
// CAP_MEASURE, say that a format can be measured).
std::uint32_t capabilities(const FormatDescriptor& d) {
    return d.capabilities | (d.measure ? std::uint32_t{CAP_MEASURE} : 0u);
}

json::array capability_list(std::uint32_t caps) {
    json::array a;
    for (const auto& [bit, name] : CAPABILITY_NAMES)
        if (caps & bit)
            a.emplace_back(name);
    return a;
}

// How `measure -O <format>` answers: qemu-img's figures, instar's --estimate, or not at all.
const char* measure_kind(const FormatDescriptor& d) {
    if (!d.measure)
        return nullptr;
    return (d.measure->flags & MEASURE_HOOKS_EXTENSION) ? "estimate" : "qemu";
}

json::object plugin_json(const LoadedPlugin& p) {
    const FormatDescriptor& d = *p;
    json::object o;
    o["name"] = d.name;
    o["aliases"] = strings(d.aliases);
    o["version"] = d.version;
    o["description"] = d.description;
    o["file"] = p.file.string();
    o["guest-module"] = d.guest_module ? json::value(p.guest_module_path().string()) : json::value(nullptr);
    o["capabilities"] = capability_list(capabilities(d));
    o["measure"] = measure_kind(d) ? json::value(measure_kind(d)) : json::value(nullptr);
    o["probe-priority"] = d.probe_priority;
    json::array rules;
    for (std::uint32_t i = 0; i < d.probe_rule_count; ++i) {
        json::array rule;
        for (std::uint32_t m = 0; m < d.probe_rules[i].match_count; ++m) {
            const ProbeMatch& pm = d.probe_rules[i].matches[m];
            rule.push_back(json::object{{"from", pm.anchor == ProbeMatch::FromStart ? "start" : "end"},
                                        {"offset", pm.offset},
                                        {"bytes", hex_bytes(pm.bytes, pm.length)},
                                        {"compare", pm.compare == ProbeMatch::AtLeast ? "at-least" : "equal"}});
        }
        rules.push_back(std::move(rule));
    }
    o["probe-rules"] = std::move(rules);
    json::array options;
    for (std::uint32_t i = 0; i < d.option_count; ++i) {
        const OptionDesc& od = d.options[i];
        json::object x;
        x["key"] = od.key;
        x["type"] = option_type_name(od.type);
        x["default"] = od.default_value ? json::value(od.default_value) : json::value(nullptr);
        x["help"] = od.help;
        x["policy"] = policy_name(od.policy);
        if (od.reason)
            x["reason"] = od.reason;
        if (od.choices)
            x["choices"] = strings(od.choices);
        if (od.min_qemu)
            x["since-qemu"] = version_text(od.min_qemu);
        if (od.max_qemu)
            x["until-qemu"] = version_text(od.max_qemu);
        options.push_back(std::move(x));
    }
    o["options"] = std::move(options);
    json::array divs;
    for (std::uint32_t i = 0; i < d.divergence_count; ++i) {
        const Divergence& v = d.divergences[i];
        divs.push_back(json::object{{"id", v.id}, {"subcommand", v.subcommand}, {"what", v.what}, {"why", v.why}});
    }
    o["divergences"] = std::move(divs);
    return o;
}

void print_human(std::ostream& out, const LoadedPlugin& p) {
    const FormatDescriptor& d = *p;
    out << d.name << ' ' << d.version << ": " << d.description << '\n';
    out << "  file:         " << p.file.string() << '\n';
    std::string aliases;
    if (d.aliases)
        for (const char* const* a = d.aliases; *a; ++a)
            aliases += (aliases.empty() ? "" : ", ") + std::string(*a);
    out << "  aliases:      " << (aliases.empty() ? "-" : aliases) << '\n';
    std::string caps;
    for (const auto& [bit, name] : CAPABILITY_NAMES)
        if (capabilities(d) & bit)
            caps += (caps.empty() ? "" : ", ") + std::string(name) +
                    (bit == CAP_MEASURE && d.measure && (d.measure->flags & MEASURE_HOOKS_EXTENSION)
                         ? " (--estimate)"
                         : "");
    out << "  capabilities: " << (caps.empty() ? "none yet" : caps) << '\n';
    std::string keys;
    for (std::uint32_t i = 0; i < d.option_count; ++i)
        keys += (i ? ", " : "") + std::string(d.options[i].key) +
                (d.options[i].policy == OptionPolicy::Extension ? " (instar extension)" : "");
    out << "  options:      " << (keys.empty() ? "-" : keys) << '\n';
    for (std::uint32_t i = 0; i < d.divergence_count; ++i)
        out << "  divergence:   " << d.divergences[i].id << " (" << d.divergences[i].subcommand
            << "): " << d.divergences[i].what << '\n';
}

} // namespace

int cmd_formats(Context& ctx, std::span<const std::string> args) {
    po::options_description opts("formats options");
    opts.add_options()("help,h", "")("output", po::value<std::string>()->default_value("human"))(
        "probe", po::value<std::string>());
    int status = 0;
    auto parsed = parse_command(ctx, "formats", opts, args, status);
    if (!parsed)
        return status;
    if (parsed->vm.count("help")) {
        print_command_help(ctx, FORMATS_HELP);
        return 0;
    }
    if (parsed->vm.count("probe"))
        return ops::sandbox_selftest(parsed->vm["probe"].as<std::string>(), ctx.sandbox_config(), ctx.out, ctx.err);
    if (!parsed->positional.empty())
        return report_usage_error(ctx, "formats", "Unexpected argument: " + parsed->positional[0]);
    const auto output = parse_output_format(ctx, "formats", parsed->vm["output"].as<std::string>());
    if (!output)
        return 1;

    const auto& plugins = ctx.plugins().plugins();
    if (*output == OutputFormat::Json) {
        json::array all;
        for (const auto& p : plugins)
            all.push_back(plugin_json(p));
        ctx.out << qemu_json_pretty(all) << '\n';
        return 0;
    }
    if (plugins.empty())
        ctx.out << "No format plugins found.\n";
    for (const auto& p : plugins)
        print_human(ctx.out, p);
    return 0;
}

} // namespace instar::cli
