// What every subcommand shares: the invocation context, qemu-shaped error reporting, and
// Boost.Program_options parsing with qemu-img's error messages.
#pragma once

#include "output/profile.h"
#include "plugins/registry.h"
#include "vmm/sandbox.h"

#include <boost/program_options.hpp>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace instar::cli {

namespace po = boost::program_options;

struct Context {
    Context(std::string argv0_, std::string prog_, std::ostream& out_, std::ostream& err_)
        : argv0(std::move(argv0_)), prog(std::move(prog_)), out(out_), err(err_) {}

    std::string argv0; // as invoked (qemu 10 echoes it in usage hints)
    std::string prog;  // basename of argv0: the "prog: " prefix of every message
    Profile profile;
    std::uint64_t max_guest_memory = vmm::DEFAULT_GUEST_MEMORY;
    bool max_guest_memory_given = false; // --max-guest-memory was on the command line
    vmm::SandboxKind sandbox = vmm::SandboxKind::Auto; // --sandbox (Auto: INSTAR_SANDBOX, then probe)
    std::ostream& out;
    std::ostream& err;

    std::chrono::milliseconds guest_timeout = vmm::DEFAULT_TIMEOUT;

    // The sandbox settings these options ask for.
    vmm::SandboxConfig sandbox_config() const;

    // Loaded on first use, so `--version` and `--help` never pay for plugin loading.
    const PluginRegistry& plugins();

private:
    std::optional<PluginRegistry> registry_;
};

// "prog: msg"; returns exit status 1.
int report_error(Context& ctx, std::string_view msg);
void report_warning(Context& ctx, std::string_view msg);
// Text a guest wrote for stderr (check's lines, an edit's messages), printed as it is except that
// each program-name marker 0x01 at the start of a line becomes "prog: " (one elsewhere, in an
// image's name for instance, is printed as it is). One write per run between markers (stderr is
// unbuffered).
void print_guest_text(Context& ctx, std::string_view text);

// A usage error qemu-img raises itself ("Expecting image file name"), followed by the profile's
// "Try ... --help" hint; `command` is empty for global errors. Returns 1.
int report_usage_error(Context& ctx, std::string_view command, std::string_view msg);

enum class OptionErrorKind { Unknown, MissingArgument };
// An option-parsing error, in getopt's words (10.0) or qemu-img's own (7.2). `token` is the option as
// the user wrote it ("-z", "--bogus"). Returns 1.
int report_option_error(Context& ctx, std::string_view command, OptionErrorKind kind, std::string_view token);

// Under a profile whose qemu-img lacks 10.0's long option names (7.2), the first `--NAME` in `args`
// (up to "--") that is in neither `known` (that qemu-img's long names), `instar_own` nor instar's global
// options is refused as its getopt refuses it: the exit status, or nothing when every long option is known.
std::optional<int> refuse_unknown_long_options(Context& ctx, std::string_view command,
                                               std::span<const std::string> args,
                                               std::span<const std::string_view> known,
                                               std::span<const std::string_view> instar_own);

// The name of a long option as written ("--name" or "--name=value"): "name".
std::string long_option_name(std::string_view arg);

// -r RATE (convert, commit): qemu's cvtnum("rate limit") in bytes per second, 0..INT64_MAX. On a bad
// value, reports it in the profile's words and returns the exit status.
std::optional<int> parse_rate_limit(Context& ctx, const std::string& text, std::uint64_t& out);

// -l when it starts with "snapshot." (convert, measure): qemu's internal_snapshot_opts, parsed as
// qemu_opts_parse_noisily parses them: snapshot.id and snapshot.name (the last of each wins), a
// short-form flag warned about as qemu does; another key prints "Invalid parameter 'KEY'" and gives
// the error "Failed in parsing snapshot param 'PARAM'".
struct InternalSnapshotOpts {
    std::optional<std::string> id;
    std::optional<std::string> name;
};
std::optional<InternalSnapshotOpts> parse_internal_snapshot_opts(Context& ctx, const std::string& param,
                                                                 std::string& error);

// qemu's block cache modes (bdrv_parse_cache_mode's names), for -t and -T.
bool valid_cache_mode(std::string_view mode);

// qemu's "Unknown file format 'FMT'"; for an in-tree format whose plugin is missing, also the package
// that ships it (distros split plugins out).
std::string unknown_format(std::string_view fmt);

// Options every subcommand accepts besides its own (--qemu-version, --max-guest-memory).
po::options_description common_options();

struct ParsedCommand {
    po::variables_map vm;
    std::vector<std::string> positional;
    // An option given more than once takes its last value (getopt's rule); the values it was given
    // before, in order, by long name. qemu-img checks some options as getopt returns them, so an
    // earlier bad value is refused even where a later one would win: each_value() walks them all.
    std::map<std::string, std::vector<std::string>> replaced;
};

// Calls check(value) for every value option `key` was given, in command-line order (the replaced
// ones, then the one in vm), and stops at the first that returns a status; returns that status, or
// nullopt when all pass (or the option was not given).
template <typename Check>
std::optional<int> each_value(const ParsedCommand& parsed, const std::string& key, Check check) {
    if (!parsed.vm.count(key))
        return std::nullopt;
    if (const auto it = parsed.replaced.find(key); it != parsed.replaced.end())
        for (const std::string& v : it->second)
            if (std::optional<int> st = check(v))
                return st;
    return check(parsed.vm[key].template as<std::string>());
}

// Parses `args` (everything after the subcommand name) with qemu-img's conventions: short options
// may be glued to their values (-fqcow2), long ones take =VALUE or the next word, options and
// positionals mix, `--` ends options. On error, reports it and returns nullopt with `status` set.
std::optional<ParsedCommand> parse_command(Context& ctx, std::string_view command,
                                           const po::options_description& options,
                                           std::span<const std::string> args, int& status);

enum class OutputFormat { Human, Json };
// --output's value, or nullopt after printing the profile's error ("--output must be used with human
// or json as argument." in 7.2; "--output expects 'human' or 'json' not 'X'" + hint in 10.0).
std::optional<OutputFormat> parse_output_format(Context& ctx, std::string_view command, const std::string& value);

// Applies --max-guest-memory from a parsed command (qemu size syntax). Returns false after
// reporting a bad value.
bool apply_common_options(Context& ctx, const po::variables_map& vm);

struct ImageName; // cli/image_name.h
// qemu opens an image before it looks at the options it was given, so an unknown option named
// without driver= is refused naming the probed format ("Block format 'qcow2' does not support the
// option 'foo'"), and an image that cannot be opened is refused for that instead. One sandbox run
// (the error path only): the format of `name` (or `format`, -f) as info finds it, or the open's error
// quoted as the user wrote the name. Returns the message to report.
std::string unsupported_option_after_probe(Context& ctx, const ImageName& name,
                                           const std::optional<std::string>& format,
                                           const std::vector<std::string>& allow_paths, bool unsafe_quirks);

} // namespace instar::cli
