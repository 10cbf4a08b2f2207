// Global option handling and subcommand dispatch, shaped like qemu-img's main().
#include "cli/app.h"

#include "cli/commands.h"
#include "cli/help.h"

#include <array>
#include <cstdlib>
#include <iostream>
#include <vector>

namespace instar::cli {
namespace {

const std::array COMMANDS = {
    Command{"amend", cmd_amend, "Update format-specific options of the image"},
    Command{"bitmap", cmd_bitmap, "Perform modifications of the persistent bitmap in the image"},
    Command{"check", cmd_check, "Check basic image integrity"},
    Command{"commit", cmd_commit, "Commit image to its backing file"},
    Command{"compare", cmd_compare, "Check if two images have the same contents"},
    Command{"convert", cmd_convert, "Copy one image to another with optional format conversion"},
    Command{"create", cmd_create, "Create and format new image file"},
    Command{"dd", cmd_dd, "Copy input to output with optional format conversion"},
    Command{"formats", cmd_formats, "List the format plugins instar has loaded (instar only)"},
    Command{"info", cmd_info, "Display information about image"},
    Command{"map", cmd_map, "Dump image metadata"},
    Command{"measure", cmd_measure, "Calculate file size required for a new image"},
    Command{"rebase", cmd_rebase, "Change backing file of the image"},
    Command{"resize", cmd_resize, "Resize the image"},
    Command{"snapshot", cmd_snapshot, "List or manipulate snapshots in the image"},
};

std::string basename_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// --qemu-version may stand anywhere (before or after the subcommand); the profile is needed before
// any parsing, so that even option errors come out in the profile's shape.
const std::string* find_profile_flag(const std::vector<std::string>& args, std::string& storage) {
    const std::string flag = "--qemu-version";
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--")
            break;
        if (args[i] == flag && i + 1 < args.size())
            return &args[i + 1];
        if (args[i].rfind(flag + "=", 0) == 0) {
            storage = args[i].substr(flag.size() + 1);
            return &storage;
        }
    }
    return nullptr;
}

// Takes the value of a global option given as "--opt=V" or "--opt V"; advances i past it.
bool take_value(const std::vector<std::string>& args, std::size_t& i, const std::string& name, std::string& value) {
    if (args[i] == name && i + 1 < args.size()) {
        value = args[++i];
        return true;
    }
    if (args[i].rfind(name + "=", 0) == 0) {
        value = args[i].substr(name.size() + 1);
        return true;
    }
    return false;
}

} // namespace

std::span<const Command> commands() { return COMMANDS; }

const Command* find_command(std::string_view name) {
    for (const auto& c : COMMANDS)
        if (c.name == name)
            return &c;
    return nullptr;
}

int run(int argc, char** argv, std::ostream& out, std::ostream& err) {
    const std::string argv0 = argc > 0 ? argv[0] : "instar";
    const std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    std::string storage;
    auto profile = select_profile(find_profile_flag(args, storage), std::getenv("INSTAR_QEMU_VERSION"));
    Context ctx(argv0, basename_of(argv0), out, err);
    if (!profile)
        return report_error(ctx, profile.error());
    ctx.profile = *profile;

    std::size_t i = 0;
    for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
        const std::string& a = args[i];
        std::string value;
        if (a == "-h" || a == "--help") {
            print_global_help(ctx);
            return 0;
        }
        if (a == "-V" || a == "--version") {
            print_version(ctx);
            return 0;
        }
        if (take_value(args, i, "--qemu-version", value))
            continue;
        if (take_value(args, i, "--max-guest-memory", value)) {
            po::variables_map vm;
            vm.emplace("max-guest-memory", po::variable_value(value, false));
            if (!apply_common_options(ctx, vm))
                return 1;
            continue;
        }
        if (take_value(args, i, "--sandbox", value)) {
            po::variables_map vm;
            vm.emplace("sandbox", po::variable_value(value, false));
            if (!apply_common_options(ctx, vm))
                return 1;
            continue;
        }
        if (a == "--qemu-version" || a == "--max-guest-memory" || a == "--sandbox")
            return report_option_error(ctx, "", OptionErrorKind::MissingArgument, a);
        return report_option_error(ctx, "", OptionErrorKind::Unknown, a.rfind("--", 0) == 0 ? a.substr(0, a.find('=')) : a.substr(0, 2));
    }
    if (i >= args.size())
        return report_usage_error(ctx, "", "Not enough arguments");
    const Command* cmd = find_command(args[i]);
    if (!cmd)
        return report_usage_error(ctx, "", "Command not found: " + args[i]);
    if (!cmd->run)
        return report_error(ctx, "'" + std::string(cmd->name) + "' is not implemented yet");
    try {
        return cmd->run(ctx, std::span<const std::string>(args).subspan(i + 1));
    } catch (const std::exception& e) {
        return report_error(ctx, std::string("internal error: ") + e.what());
    }
}

} // namespace instar::cli
