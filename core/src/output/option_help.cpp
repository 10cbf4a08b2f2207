// Rendering of option tables in qemu_opts_print_help's layout (sorted, "  key=<type>" padded to 24).
#include "output/option_help.h"

#include "options/option_list.h"

#include <algorithm>
#include <string>
#include <vector>

namespace instar {
namespace {

constexpr const char* NOT_SET_HINT = "instar does not set filesystem-specific attributes on images it creates";

// file-posix's create options, in its QemuOptsList order; none has a def_value_str qemu prints.
const OptionDesc FILE_OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"nocow", OptionType::Bool, nullptr, "Turn off copy-on-write (valid only on btrfs)", OptionPolicy::Ignored,
     NOT_SET_HINT, nullptr, 0, 0},
    {"preallocation", OptionType::String, nullptr, "Preallocation mode (allowed values: off, falloc, full)",
     OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"extent_size_hint", OptionType::Size, nullptr, "Extent size hint for the image file, 0 to disable",
     OptionPolicy::Ignored, NOT_SET_HINT, nullptr, 0, 0},
};

// qemu_opts_print_help pads "  key=<type>" to this many columns before " - help".
constexpr std::size_t HELP_COLUMN = 24;

} // namespace

std::span<const OptionDesc> file_protocol_options() { return FILE_OPTIONS; }

std::string_view option_type_name(OptionType t) {
    switch (t) {
    case OptionType::String: return "str";
    case OptionType::Size: return "size";
    case OptionType::Number: return "num";
    case OptionType::Bool: return "bool (on/off)";
    }
    return "str";
}

std::string option_help_line(const OptionDesc& d) {
    std::string line = "  " + std::string(d.key) + "=<" + std::string(option_type_name(d.type)) + ">";
    if (line.size() < HELP_COLUMN)
        line.append(HELP_COLUMN - line.size(), ' ');
    return line + " - " + d.help;
}

void print_option_help(std::ostream& out, std::string_view format, std::span<const OptionDesc> format_options,
                       bool with_filename, std::uint32_t profile_version) {
    // Format options first, then protocol options whose names are new (qemu_opts_append), sorted.
    std::vector<const OptionDesc*> all;
    auto add = [&](std::span<const OptionDesc> table) {
        for (const auto& d : table)
            if (option_listed(d, profile_version) &&
                std::none_of(all.begin(), all.end(), [&](const OptionDesc* x) { return std::string_view(x->key) == d.key; }))
                all.push_back(&d);
    };
    add(format_options);
    if (with_filename)
        add(file_protocol_options());
    std::sort(all.begin(), all.end(),
              [](const OptionDesc* a, const OptionDesc* b) { return std::string_view(a->key) < b->key; });

    if (with_filename)
        out << "Supported options:\n";
    else
        out << "Supported " << format << " options:\n";
    for (const OptionDesc* d : all)
        out << option_help_line(*d) << '\n';
    if (!with_filename)
        out << "\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n";
}

} // namespace instar
