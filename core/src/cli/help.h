// --help and --version texts.
#pragma once

#include "cli/common.h"

namespace instar::cli {

void print_version(Context& ctx);
void print_global_help(Context& ctx);

// `instar CMD --help`: qemu-img 10.0 prints the command's own help; 7.2 prints the global help.
void print_command_help(Context& ctx, std::string_view usage_and_options);

} // namespace instar::cli
