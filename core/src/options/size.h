// qemu's number syntaxes for sizes (qemu_strtosz) and plain numbers (qemu_strtou64), per profile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace instar {

enum class ParseStatus { Ok, Invalid, OutOfRange };

struct SizeParse {
    ParseStatus status = ParseStatus::Invalid;
    std::uint64_t value = 0;
    // qemu 7.2 accepts a multiplier on hex numbers ("0x10k") with this warning; 8.0+ rejects it.
    std::optional<std::string> warning;
};

// `-o key=SIZE` syntax: [ws][+]digits[.digits][suffix] or [ws][+]0xHEX[suffix (7.2 only)], suffix one
// of bBkKmMgGtTpPeE (powers of 1024), nothing after it. A fraction needs a multiplier suffix.
SizeParse parse_qemu_size(std::string_view text, std::uint32_t profile_version);

// `-o key=NUM` syntax: strtoull with base 0 (0x hex, leading-0 octal), the whole string consumed.
std::optional<std::uint64_t> parse_qemu_number(std::string_view text);

} // namespace instar
