// The subcommand table: one entry per qemu-img subcommand, each implemented in its own cmd_*.cpp.
#pragma once

#include "cli/common.h"

#include <span>
#include <string>
#include <string_view>

namespace instar::cli {

using CommandFn = int (*)(Context&, std::span<const std::string> args);

struct Command {
    std::string_view name;
    CommandFn run;             // nullptr: a qemu-img subcommand instar does not implement yet
    std::string_view summary;  // one line for --help (qemu-img's wording)
};

std::span<const Command> commands();
const Command* find_command(std::string_view name);

int cmd_bitmap(Context& ctx, std::span<const std::string> args);
int cmd_amend(Context& ctx, std::span<const std::string> args);
int cmd_check(Context& ctx, std::span<const std::string> args);
int cmd_commit(Context& ctx, std::span<const std::string> args);
int cmd_compare(Context& ctx, std::span<const std::string> args);
int cmd_convert(Context& ctx, std::span<const std::string> args);
int cmd_create(Context& ctx, std::span<const std::string> args);
int cmd_dd(Context& ctx, std::span<const std::string> args);
int cmd_formats(Context& ctx, std::span<const std::string> args);
int cmd_info(Context& ctx, std::span<const std::string> args);
int cmd_map(Context& ctx, std::span<const std::string> args);
int cmd_measure(Context& ctx, std::span<const std::string> args);
int cmd_snapshot(Context& ctx, std::span<const std::string> args);
int cmd_rebase(Context& ctx, std::span<const std::string> args);
int cmd_resize(Context& ctx, std::span<const std::string> args);

} // namespace instar::cli
