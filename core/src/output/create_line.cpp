// The "Formatting" line, qemu_opts_print's rules.
#include "output/create_line.h"

#include "options/size.h"

#include <algorithm>
#include <vector>

namespace instar {

std::string normalised_value(const OptionDesc& desc, const std::string& value, std::uint32_t profile_version) {
    switch (desc.type) {
    case OptionType::Size: {
        const SizeParse p = parse_qemu_size(value, profile_version);
        return p.status == ParseStatus::Ok ? std::to_string(p.value) : value;
    }
    case OptionType::Number: {
        const auto n = parse_qemu_number(value);
        return n ? std::to_string(*n) : value;
    }
    case OptionType::Bool:
        return value == "on" || value == "yes" || value == "true" || value == "y" ? "on" : "off";
    case OptionType::String:
        return value;
    }
    return value;
}

std::string formatting_line(std::string_view filename, std::string_view format,
                            std::span<const OptionDesc> format_options, std::span<const OptionDesc> protocol_options,
                            const OptionSet& set, std::uint32_t profile_version) {
    std::string line = "Formatting '" + std::string(filename) + "', fmt=" + std::string(format) + " ";
    std::vector<std::string_view> seen;
    const char* sep = "";
    for (auto table : {format_options, protocol_options}) {
        for (const OptionDesc& d : table) {
            if (!option_in_profile(d, profile_version) || std::find(seen.begin(), seen.end(), d.key) != seen.end())
                continue;
            seen.emplace_back(d.key);
            std::string value;
            if (const std::string* v = set.find(d.key))
                value = d.type == OptionType::Size || d.type == OptionType::Number
                            ? normalised_value(d, *v, profile_version)
                            : *v;
            else if (d.default_value)
                value = d.default_value;
            else
                continue;
            line += sep + std::string(d.key) + "=" + value;
            sep = " ";
        }
    }
    return line;
}

} // namespace instar
