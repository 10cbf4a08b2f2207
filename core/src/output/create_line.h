// qemu-img create's "Formatting 'FILE', fmt=FMT key=value ..." line.
#pragma once

#include "options/option_list.h"

#include "instar/plugin.h"

#include <span>
#include <string>
#include <string_view>

namespace instar {

// qemu_opts_print over the format's options then the file protocol's new ones, in QemuOptsList
// order: a key the user set prints its value (sizes and numbers as decimal bytes, anything else as
// written); an unset key prints its def_value_str when it has one. `set` holds the user's values,
// including size and the backing file settings, as qemu-img stores them before printing.
std::string formatting_line(std::string_view filename, std::string_view format,
                            std::span<const OptionDesc> format_options, std::span<const OptionDesc> protocol_options,
                            const OptionSet& set, std::uint32_t profile_version);

// The value qemu passes to the driver: sizes and numbers in decimal, booleans "on"/"off", strings as
// written (the form CreateOption documents).
std::string normalised_value(const OptionDesc& desc, const std::string& value, std::uint32_t profile_version);

} // namespace instar
