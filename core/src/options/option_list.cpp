// qemu-img's `-o` list syntax and per-type value checks.
#include "options/option_list.h"

#include "options/size.h"

#include <algorithm>

namespace instar {
namespace {

constexpr const char* SIZE_HELP_TAIL =
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
    "and exabytes, respectively.";

bool is_help_name(std::string_view name) { return name == "help" || name == "?"; }

std::string join_keys(std::span<const OptionDesc> a, std::span<const OptionDesc> b, std::uint32_t v) {
    std::vector<std::string> keys;
    for (auto t : {a, b})
        for (const auto& d : t)
            if (option_listed(d, v) && std::find(keys.begin(), keys.end(), d.key) == keys.end())
                keys.emplace_back(d.key);
    std::sort(keys.begin(), keys.end());
    std::string out;
    for (const auto& k : keys)
        out += (out.empty() ? "" : ", ") + k;
    return out;
}

std::optional<Error> check_value(const OptionDesc& d, const std::string& value, std::uint32_t profile,
                                 std::vector<std::string>* warnings) {
    const std::string key = d.key;
    switch (d.type) {
    case OptionType::String:
        return std::nullopt;
    case OptionType::Bool:
        if (value == "on" || value == "off" || value == "yes" || value == "no" || value == "true" ||
            value == "false" || value == "y" || value == "n")
            return std::nullopt;
        return Error{"Parameter '" + key + "' expects 'on' or 'off' (got '" + value + "')"};
    case OptionType::Number:
        if (parse_qemu_number(value))
            return std::nullopt;
        return Error{"Parameter '" + key + "' expects a number (got '" + value + "')"};
    case OptionType::Size: {
        const SizeParse p = parse_qemu_size(value, profile);
        if (p.status == ParseStatus::Ok) {
            if (p.warning && warnings)
                warnings->push_back(*p.warning);
            return std::nullopt;
        }
        if (p.status == ParseStatus::OutOfRange)
            return Error{"Value '" + value + "' is out of range for parameter '" + key + "'"};
        return Error{"Parameter '" + key + "' expects a non-negative number below 2^64 (got '" + value +
                     "')\n" + SIZE_HELP_TAIL};
    }
    }
    return std::nullopt;
}

// An ignored option set to its "disabled" value (0, off) asks for nothing instar leaves undone:
// qemu documents extent_size_hint=0 as "don't set a hint", so that warns no more than nocow=off.
bool asks_for_nothing(const OptionDesc& d, const std::string& value, std::uint32_t profile) {
    switch (d.type) {
    case OptionType::Bool:
        return value == "off" || value == "no" || value == "false" || value == "n";
    case OptionType::Number:
        return parse_qemu_number(value) == std::optional<std::uint64_t>{0};
    case OptionType::Size: {
        const SizeParse p = parse_qemu_size(value, profile);
        return p.status == ParseStatus::Ok && p.value == 0;
    }
    case OptionType::String:
        return false;
    }
    return false;
}

} // namespace

std::optional<Error> accumulate_option_list(std::string& accumulated, std::string_view arg) {
    std::size_t trailing = 0;
    while (trailing < arg.size() && arg[arg.size() - 1 - trailing] == ',')
        ++trailing;
    if (arg.empty() || arg.front() == ',' || trailing % 2 != 0)
        return Error{"Invalid option list: " + std::string(arg)};
    if (!accumulated.empty())
        accumulated += ',';
    accumulated += arg;
    return std::nullopt;
}

ShortFormFlag short_form_flag(std::string_view written) {
    ShortFormFlag f;
    const bool no = written.rfind("no", 0) == 0;
    f.item.key = std::string(no ? written.substr(2) : written);
    f.item.value = no ? "off" : "on";
    if (no || !is_help_name(f.item.key))
        f.warning = "short-form boolean option '" + std::string(written) + "' deprecated\nPlease use " + f.item.key +
                    "=" + f.item.value + " instead";
    return f;
}

std::vector<OptionItem> split_option_list(std::string_view list) {
    std::vector<OptionItem> items;
    std::size_t p = 0;
    while (p < list.size()) {
        const std::size_t stop = list.find_first_of("=,", p);
        const std::size_t name_end = stop == std::string_view::npos ? list.size() : stop;
        OptionItem item;
        item.key = std::string(list.substr(p, name_end - p));
        p = name_end;
        if (p < list.size() && list[p] == '=') {
            ++p; // the value runs to the next single ',', with ",," standing for ','
            while (p < list.size()) {
                if (list[p] == ',') {
                    if (p + 1 < list.size() && list[p + 1] == ',') {
                        item.value += ',';
                        p += 2;
                        continue;
                    }
                    break;
                }
                item.value += list[p++];
            }
        } else {
            item = short_form_flag(item.key).item;
            item.flag = true;
        }
        if (p < list.size() && list[p] == ',')
            ++p;
        items.push_back(std::move(item));
    }
    return items;
}

bool has_help_option(std::string_view list) {
    for (const auto& item : split_option_list(list))
        if (item.value == "on" && is_help_name(item.key))
            return true;
    return false;
}

bool option_in_profile(const OptionDesc& d, std::uint32_t v) {
    return (d.min_qemu == 0 || v >= d.min_qemu) && (d.max_qemu == 0 || v <= d.max_qemu);
}

bool option_listed(const OptionDesc& d, std::uint32_t v) {
    return option_in_profile(d, v) && d.policy != OptionPolicy::Extension;
}

const std::string* OptionSet::find(std::string_view key) const {
    for (auto it = items.rbegin(); it != items.rend(); ++it)
        if (it->key == key)
            return &it->value;
    return nullptr;
}

const OptionDesc* find_option(std::span<const OptionDesc> table, std::string_view key,
                              std::uint32_t profile_version) {
    for (const auto& d : table)
        if (key == d.key && option_in_profile(d, profile_version))
            return &d;
    return nullptr;
}

Expected<OptionSet> apply_option_table(const std::vector<OptionItem>& items,
                                       std::span<const OptionDesc> table,
                                       std::span<const OptionDesc> extra,
                                       std::uint32_t profile_version,
                                       std::vector<std::string>* warnings) {
    OptionSet set;
    for (const auto& item : items) {
        const OptionDesc* d = find_option(table, item.key, profile_version);
        if (!d)
            d = find_option(extra, item.key, profile_version);
        if (!d)
            return Error{"Invalid parameter '" + item.key + "'\nAccepted parameters: " +
                         join_keys(table, extra, profile_version)};
        if (auto err = check_value(*d, item.value, profile_version, warnings))
            return *err;
        if (d->policy == OptionPolicy::Rejected)
            return Error{"Parameter '" + item.key + "' is not supported by instar: " +
                         (d->reason ? d->reason : "no reason given")};
        if (d->policy == OptionPolicy::Ignored && warnings && !asks_for_nothing(*d, item.value, profile_version))
            warnings->push_back("Parameter '" + item.key + "' is accepted but ignored: " +
                                (d->reason ? d->reason : "no reason given"));
        auto same = std::find_if(set.items.begin(), set.items.end(),
                                 [&](const OptionItem& s) { return s.key == item.key; });
        if (same != set.items.end())
            same->value = item.value;
        else
            set.items.push_back(item);
    }
    return set;
}

std::optional<Error> check_choice(const OptionDesc& desc, std::string_view value) {
    if (!desc.choices)
        return std::nullopt;
    for (const char* const* c = desc.choices; *c; ++c)
        if (value == *c)
            return std::nullopt;
    return Error{"Parameter '" + std::string(desc.key) + "' does not accept value '" + std::string(value) + "'"};
}

} // namespace instar
