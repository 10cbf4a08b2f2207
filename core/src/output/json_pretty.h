// JSON text exactly as qemu-img prints it: 4-space indentation, a newline before every closing
// bracket (so an empty list is "[\n<indent>]"), keys in insertion order, qemu's string escaping.
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace instar {

std::string qemu_json_pretty(const boost::json::value& v);

// A JSON string literal with qemu's escaping (printable ASCII literal, \uXXXX for the rest,
// U+FFFD for invalid UTF-8).
std::string qemu_json_quote(std::string_view s);

} // namespace instar
