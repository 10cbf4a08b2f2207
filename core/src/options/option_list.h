// `-o KEY=VAL,...` option lists, parsed the way qemu-img parses them and checked against a plugin's
// option table (the same table `-o help` prints).
#pragma once

#include "util/expected.h"

#include "instar/plugin.h"

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace instar {

struct OptionItem {
    std::string key;
    std::string value;
    bool flag = false; // written without '=' (split_option_list): "key" or "nokey"
};

// Appends one `-o` argument to the accumulated list (qemu joins repeated -o with ','; later keys win).
// Errors: empty list, leading ',', or an odd run of trailing commas ("Invalid option list: ARG").
std::optional<Error> accumulate_option_list(std::string& accumulated, std::string_view arg);

// A flag written without '=' (qemu's get_opt_name_value): "key" is key=on, "nokey" key=off; `warning`
// is what qemu_opts_parse_noisily prints for it (no warning for "help" and "?").
struct ShortFormFlag {
    OptionItem item;
    std::optional<std::string> warning; // "short-form boolean option 'X' deprecated\nPlease use K=V instead"
};
ShortFormFlag short_form_flag(std::string_view written);

// Splits "k=v,k2=v2" into items, in order. ",," in a value is a literal comma; a bare "key" means
// key=on and "nokey" means key=off, as in qemu.
std::vector<OptionItem> split_option_list(std::string_view list);

// True when the list asks for help: a bare "help" or "?".
bool has_help_option(std::string_view list);

// The validated result: every key known, every value of the right type; duplicates resolved
// last-wins, first-seen order kept.
struct OptionSet {
    std::vector<OptionItem> items;
    const std::string* find(std::string_view key) const;
};

// Checks items against the table, in order, stopping at the first problem; messages are qemu's
// (without the "prog: file: " prefix). `extra` (may be empty) is a second table searched after the
// first, e.g. the file protocol's options.
Expected<OptionSet> apply_option_table(const std::vector<OptionItem>& items,
                                       std::span<const OptionDesc> table,
                                       std::span<const OptionDesc> extra,
                                       std::uint32_t profile_version,
                                       std::vector<std::string>* warnings = nullptr);

// The option exists in this qemu-img profile (min_qemu/max_qemu, 0 meaning unbounded).
bool option_in_profile(const OptionDesc& d, std::uint32_t profile_version);

// The option is in this profile and qemu-img's texts name it (`-o help`, "Accepted parameters"):
// every key but instar's extensions (OptionPolicy::Extension).
bool option_listed(const OptionDesc& d, std::uint32_t profile_version);

// The key is in the table and in this profile.
const OptionDesc* find_option(std::span<const OptionDesc> table, std::string_view key,
                              std::uint32_t profile_version);

// For String options with a choices list: "Parameter 'KEY' does not accept value 'VAL'".
std::optional<Error> check_choice(const OptionDesc& desc, std::string_view value);

} // namespace instar
