// `-o help`: a format's (and, with a target file, the file protocol's) option table, printed exactly
// as qemu-img's print_block_option_help prints it.
#pragma once

#include "instar/plugin.h"

#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

namespace instar {

// The file protocol's create options (qemu's "file" driver): merged in when a filename is given.
std::span<const OptionDesc> file_protocol_options();

// `type_name` as qemu prints it: str, size, num, bool (on/off).
std::string_view option_type_name(OptionType t);

// One option as qemu_opts_print_help lists it: "  key=<type>" padded, " - help" (no newline).
std::string option_help_line(const OptionDesc& d);

void print_option_help(std::ostream& out, std::string_view format, std::span<const OptionDesc> format_options,
                       bool with_filename, std::uint32_t profile_version);

} // namespace instar
