// --object secret (secrets.h).
#include "cli/secrets.h"

#include "options/option_list.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace instar::cli {
namespace {

// qemu's id_wellformed: a letter, then letters, digits, '-', '.', '_'.
bool id_wellformed(const std::string& id) {
    if (id.empty() || !std::isalpha(static_cast<unsigned char>(id[0])))
        return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
            return false;
    return true;
}

// RFC 4648 base64 as glib's g_base64_decode reads it: characters outside the alphabet are skipped,
// '=' ends the data.
std::string base64_decode(std::string_view in) {
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else if (c == '=') break;
        else continue;
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    return out;
}

} // namespace

Expected<bool> SecretStore::add_object(std::string_view objdef) {
    auto items = split_option_list(objdef);
    // qemu's object_parse: the first item without '=' is the type (split_option_list makes it "on").
    std::optional<std::string> type;
    std::optional<std::string> id, data, file, format, keyid, iv;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& [key, value] = items[i];
        if (i == 0 && value == "on" && objdef.substr(0, key.size()) == key &&
            (objdef.size() == key.size() || objdef[key.size()] == ',')) {
            type = key;
            continue;
        }
        if (key == "qom-type") type = value;
        else if (key == "id") id = value;
        else if (key == "data") data = value;
        else if (key == "file") file = value;
        else if (key == "format") format = value;
        else if (key == "keyid") keyid = value;
        else if (key == "iv") iv = value;
        else if (type && *type == "secret")
            return Error{"Parameter '" + key + "' is unexpected"};
    }
    if (!type)
        return Error{"Parameter 'qom-type' is missing"};
    if (*type != "secret")
        return Error{"Parameter 'qom-type' does not accept value '" + *type + "'"};
    if (!id)
        return Error{"Parameter 'id' is missing"};
    if (!id_wellformed(*id))
        return Error{"Parameter 'id' expects an identifier\n"
                     "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."};
    if (format && *format != "raw" && *format != "base64")
        return Error{"Parameter 'format' does not accept value '" + *format + "'"};
    if (secrets_.count(*id) || std::find(other_ids_.begin(), other_ids_.end(), *id) != other_ids_.end())
        return Error{"attempt to add duplicate property '" + *id + "' to object (type 'container')"};
    std::string bytes;
    if (file) {
        if (data)
            return Error{"'file' and 'data' are mutually exclusive"};
        std::ifstream in(*file, std::ios::binary);
        if (!in) {
            const int e = errno;
            return Error{"Unable to read " + *file + ": Failed to open file \xe2\x80\x9c" + *file +
                         "\xe2\x80\x9d: " + std::strerror(e)};
        }
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } else if (data) {
        bytes = *data;
    } else {
        return Error{"Either 'file' or 'data' must be provided"};
    }
    if (keyid) {
        if (!secrets_.count(*keyid))
            return Error{"No secret with id '" + *keyid + "'"};
        return Error{"secrets encrypted with keyid= are not supported by instar yet"};
    }
    if (format && *format == "base64")
        bytes = base64_decode(bytes);
    secrets_.emplace(*id, std::move(bytes));
    return true;
}

Expected<std::string> SecretStore::lookup(const std::string& id) const {
    auto it = secrets_.find(id);
    if (it == secrets_.end())
        return Error{"No secret with id '" + id + "'"};
    return it->second;
}

Expected<SecretStore> parse_objects(const std::vector<std::string>& objdefs) {
    SecretStore store;
    for (const auto& o : objdefs)
        if (auto ok = store.add_object(o); !ok)
            return Error{ok.error()};
    return store;
}

Expected<std::optional<std::string>> secret_for(const SecretStore& store, const std::optional<std::string>& id) {
    if (!id)
        return std::optional<std::string>{};
    auto bytes = store.lookup(*id);
    if (!bytes)
        return Error{bytes.error()};
    return std::optional<std::string>(std::move(*bytes));
}

} // namespace instar::cli
