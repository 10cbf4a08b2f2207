// qemu-style JSON pretty printer over Boost.JSON values.
#include "output/json_pretty.h"

#include <boost/json.hpp>

#include <cstdio>

namespace instar {
namespace {

void indent(std::string& out, int level) { out.append(static_cast<std::size_t>(level) * 4, ' '); }

void append_u(std::string& out, unsigned cp) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04X", cp);
    out += buf;
}

// Decodes one UTF-8 sequence at s[i]; returns the code point (0xFFFD when invalid) and advances i.
unsigned decode_utf8(std::string_view s, std::size_t& i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xe ? 3 : (b0 >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + static_cast<std::size_t>(len) > s.size()) {
        ++i;
        return 0xfffd;
    }
    unsigned cp = len == 1 ? b0 : b0 & (0x7f >> len);
    for (int k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
        if ((b & 0xc0) != 0x80) {
            ++i;
            return 0xfffd;
        }
        cp = (cp << 6) | (b & 0x3f);
    }
    static constexpr unsigned MIN_FOR_LEN[] = {0, 0, 0x80, 0x800, 0x10000};
    i += static_cast<std::size_t>(len);
    if (cp < MIN_FOR_LEN[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0xfffd;
    return cp;
}

void write(std::string& out, const boost::json::value& v, int level) {
    switch (v.kind()) {
    case boost::json::kind::object: {
        out += '{';
        bool first = true;
        for (const auto& kv : v.get_object()) {
            out += first ? "\n" : ",\n";
            first = false;
            indent(out, level + 1);
            out += qemu_json_quote(kv.key());
            out += ": ";
            write(out, kv.value(), level + 1);
        }
        out += '\n';
        indent(out, level);
        out += '}';
        break;
    }
    case boost::json::kind::array: {
        out += '[';
        bool first = true;
        for (const auto& e : v.get_array()) {
            out += first ? "\n" : ",\n";
            first = false;
            indent(out, level + 1);
            write(out, e, level + 1);
        }
        out += '\n';
        indent(out, level);
        out += ']';
        break;
    }
    case boost::json::kind::string:
        out += qemu_json_quote(v.get_string());
        break;
    default:
        out += boost::json::serialize(v);
    }
}

} // namespace

std::string qemu_json_quote(std::string_view s) {
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size();) {
        const unsigned cp = decode_utf8(s, i);
        switch (cp) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (cp >= 0x20 && cp <= 0x7e) {
                out += static_cast<char>(cp);
            } else if (cp > 0xffff) {
                append_u(out, 0xd800 + ((cp - 0x10000) >> 10));
                append_u(out, 0xdc00 + ((cp - 0x10000) & 0x3ff));
            } else {
                append_u(out, cp);
            }
        }
    }
    return out + "\"";
}

std::string qemu_json_pretty(const boost::json::value& v) {
    std::string out;
    write(out, v, 0);
    return out;
}

} // namespace instar
