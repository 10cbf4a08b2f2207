// qemu's size and number parsers, reproduced from observed qemu-img 7.2 and 10.0 behaviour.
#include "options/size.h"

#include "instar/plugin.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>

namespace instar {
namespace {

int suffix_shift(char c) {
    switch (std::toupper(static_cast<unsigned char>(c))) {
    case 'B': return 0;
    case 'K': return 10;
    case 'M': return 20;
    case 'G': return 30;
    case 'T': return 40;
    case 'P': return 50;
    case 'E': return 60;
    default: return -1;
    }
}

bool is_hex_digit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

} // namespace

SizeParse parse_qemu_size(std::string_view text, std::uint32_t profile_version) {
    const bool v8 = profile_version >= qemu_version(8, 0);
    SizeParse out;
    std::size_t i = 0;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
        ++i;
    if (i < text.size() && text[i] == '-') {
        // 8.0+ reports a negative size as out of range; 7.2 as a syntax error.
        out.status = v8 ? ParseStatus::OutOfRange : ParseStatus::Invalid;
        return out;
    }
    if (i < text.size() && text[i] == '+')
        ++i;

    const bool hex = i + 1 < text.size() && text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X');
    unsigned __int128 integral = 0;
    bool any_digit = false;
    bool overflow = false;
    if (hex) {
        i += 2;
        for (; i < text.size() && is_hex_digit(text[i]); ++i) {
            any_digit = true;
            const int d = std::isdigit(static_cast<unsigned char>(text[i]))
                ? text[i] - '0'
                : std::tolower(static_cast<unsigned char>(text[i])) - 'a' + 10;
            integral = integral * 16 + static_cast<unsigned>(d);
            overflow |= integral > std::numeric_limits<std::uint64_t>::max();
        }
    } else {
        for (; i < text.size() && is_digit(text[i]); ++i) {
            any_digit = true;
            integral = integral * 10 + static_cast<unsigned>(text[i] - '0');
            overflow |= integral > std::numeric_limits<std::uint64_t>::max();
        }
    }

    // Fraction: decimal only; 7.2 wants a digit before the dot (".5k" is 8.0+ only).
    double fraction = 0;
    bool has_fraction = false;
    if (!hex && i < text.size() && text[i] == '.' && (any_digit || v8)) {
        std::size_t j = i + 1;
        double scale = 0.1;
        bool frac_digit = false;
        for (; j < text.size() && is_digit(text[j]); ++j) {
            fraction += (text[j] - '0') * scale;
            scale /= 10;
            frac_digit = true;
        }
        if (frac_digit || any_digit) {
            has_fraction = fraction != 0;
            any_digit = any_digit || frac_digit;
            i = j;
        }
    }
    if (!any_digit)
        return out;

    int shift = 0;
    bool suffixed = false;
    if (i < text.size() && suffix_shift(text[i]) >= 0) {
        shift = suffix_shift(text[i]);
        suffixed = true;
        ++i;
    }
    if (i != text.size())
        return out;
    if (has_fraction && shift == 0)
        return out; // a fraction of a byte is meaningless
    if (hex && suffixed && shift > 0) {
        if (v8)
            return out;
        out.warning = "Using a multiplier suffix on hex numbers is deprecated: " + std::string(text);
    }
    if (overflow) {
        out.status = ParseStatus::OutOfRange;
        return out;
    }
    const unsigned __int128 whole = integral << shift;
    const auto frac_bytes = static_cast<unsigned __int128>(fraction * static_cast<double>(std::uint64_t{1} << shift));
    const unsigned __int128 total = whole + frac_bytes;
    if ((shift > 0 && integral > (std::numeric_limits<std::uint64_t>::max() >> shift)) ||
        total > std::numeric_limits<std::uint64_t>::max()) {
        out.status = ParseStatus::OutOfRange;
        return out;
    }
    out.status = ParseStatus::Ok;
    out.value = static_cast<std::uint64_t>(total);
    return out;
}

std::optional<std::uint64_t> parse_qemu_number(std::string_view text) {
    const std::string s(text); // strtoull needs a terminator
    if (s.empty())
        return std::nullopt;
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 0);
    if (end == s.c_str() || *end != '\0' || errno != 0)
        return std::nullopt;
    return static_cast<std::uint64_t>(v);
}

} // namespace instar
