// qemu's reading of command-line image names, for local files only.
#include "cli/image_name.h"

#include "options/option_list.h"
#include "output/qemu_format.h"
#include "plugins/secret_options.h"

#include <instar/plugin.h>

#include <boost/json.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <vector>

namespace instar::cli {
namespace {

// The protocols of qemu's Debian builds other than `file`: refused by name, never opened.
constexpr std::string_view REMOTE_PROTOCOLS[] = {
    "nbd",   "nbd+tcp", "nbd+unix", "http",         "https",        "ftp",          "ftps",  "ssh",
    "iscsi", "iser",    "nfs",      "rbd",          "gluster",      "gluster+tcp",  "gluster+unix",
    "gluster+rdma",     "fat",      "null-co",      "null-aio",     "blkdebug",     "blkverify",
    "host_device",      "host_cdrom", "vvfat",      "nvme",         "quorum",       "throttle",
};

// Options that change nothing instar reads: caching, locking, sharing and read-only flags (instar
// only reads, never locks).
constexpr std::string_view IGNORED_OPTIONS[] = {
    "read-only",          "auto-read-only",     "force-share",         "cache.direct",     "cache.no-flush",
    "discard",            "detect-zeroes",      "node-name",
    "file.locking",       "file.aio",           "file.cache.direct",   "file.cache.no-flush", "file.node-name",
    "file.read-only",     "file.auto-read-only", "file.force-share",   "file.discard",     "file.detect-zeroes",
};

// qemu's strong runtime options instar takes (QEMU_SECRET_OPTIONS: secrets, which info does not
// need). They still make qemu print a json: filename.
// backing.…: secrets for images this many levels down at most (a user's own name, but each level is
// an element of ImageName::backing_strong): the chain itself is bounded far lower (MAX_CHAIN_DEPTH).
constexpr std::size_t MAX_BACKING_SECRET_DEPTH = 64;

// Options qemu's local drivers have that change what is read; instar does not implement them.
constexpr std::string_view UNSUPPORTED_OPTIONS[] = {"offset", "size", "force_size_calc", "backing.",
                                                    "data-file", "snapshot.", "bitmap"};

bool is_remote(std::string_view proto) {
    for (auto p : REMOTE_PROTOCOLS)
        if (p == proto)
            return true;
    return false;
}

Error remote_refused(std::string_view proto) {
    return Error{"protocol '" + std::string(proto) +
                 "' is not supported: instar opens only local image files (no network or device protocols)"};
}

// A plain name or file:NAME -> the local path; other protocols refused.
Expected<std::string> local_path(std::string_view name) {
    const std::string proto = protocol_prefix(name);
    if (proto.empty())
        return std::string(name);
    if (proto == "file") {
        // bdrv_parse_filename_strip_prefix: a name that would look like a protocol again gets "./".
        const std::string_view rest = name.substr(5);
        return (protocol_prefix(rest).empty() ? "" : "./") + std::string(rest);
    }
    if (is_remote(proto))
        return remote_refused(proto);
    return Error{"Unknown protocol '" + proto + "'"};
}

using Flat = std::map<std::string, std::string>;
constexpr std::string_view JSON_NULL = "\x01null"; // `"backing": null` (no string can be this)

// qdict_flatten: nested objects become dotted keys. Scalars keep qemu's string forms.
bool flatten(const boost::json::object& o, const std::string& prefix, Flat& out, std::string& error) {
    for (const auto& kv : o) {
        const std::string key = prefix + std::string(kv.key());
        const auto& v = kv.value();
        if (v.is_object()) {
            if (!flatten(v.get_object(), key + ".", out, error))
                return false;
        } else if (v.is_string()) {
            out[key] = std::string(v.get_string());
        } else if (v.is_bool()) {
            out[key] = v.get_bool() ? "on" : "off";
        } else if (v.is_int64() || v.is_uint64() || v.is_double()) {
            out[key] = boost::json::serialize(v);
        } else if (v.is_null() && key == "backing") {
            out[key] = std::string(JSON_NULL);
        } else {
            error = "Invalid parameter type for '" + key + "'";
            return false;
        }
    }
    return true;
}

// The flattened option tree -> the file to open, as bdrv_open reads driver/file/filename.
Expected<ImageName> interpret(Flat opts, const std::string& given, bool backing_secrets, const HeaderDrivers& headers) {
    ImageName out;
    out.given = given;
    out.from_options = true;
    std::optional<std::string> driver;
    if (auto it = opts.find("driver"); it != opts.end()) {
        driver = it->second;
        opts.erase(it);
    }
    if (auto it = opts.find("file"); it != opts.end())
        return Error{"Cannot find device='" + it->second + "' nor node-name='" + it->second + "'"};
    std::optional<std::string> filename;
    std::string protocol = "file";
    if (driver && *driver == "file") {
        // The protocol node itself as the image: instar always puts a format on top.
        return Error{"driver 'file' without a format driver is not supported by instar: name the format "
                     "(driver=raw, file.driver=file) instead"};
    }
    if (driver && is_remote(*driver))
        return remote_refused(*driver);
    if (auto it = opts.find("file.driver"); it != opts.end()) {
        protocol = it->second;
        opts.erase(it);
    }
    if (protocol != "file")
        return is_remote(protocol) ? remote_refused(protocol) : Error{"Unknown protocol '" + protocol + "'"};
    if (auto it = opts.find("file.filename"); it != opts.end()) {
        filename = it->second;
        opts.erase(it);
    }
    if (auto it = opts.find("filename"); it != opts.end()) {
        if (filename)
            return Error{"Cannot specify both 'filename' and 'file.filename'"};
        auto path = local_path(it->second);
        if (!path)
            return Error{path.error()};
        filename = *path;
        opts.erase(it);
    }
    if (!filename) {
        if (!driver)
            return Error{"Must specify either driver or file"};
        return Error{"A block device must be specified for \"file\""};
    }
    for (auto ignored : IGNORED_OPTIONS)
        opts.erase(std::string(ignored));
    // A detached header (luks from qemu 9.0) in a file of its own (header.filename, a file node).
    // Without it (a driver that takes none, an older profile, or a command that does not open it)
    // the key is left over, and qemu names header.filename in its refusal whatever else the node
    // has, for any driver (header.driver too is the child's).
    if (driver) {
        const auto file = opts.find("header.filename");
        const auto proto = opts.find("header.driver");
        const std::uint32_t since = file != opts.end() && headers ? headers(*driver) : 0;
        if (since != 0 && (proto == opts.end() || proto->second == "file")) {
            out.header = file->second;
            out.header_since = since;
            opts.erase(file);
            if (proto != opts.end())
                opts.erase(proto);
        } else if (file != opts.end() && opts.begin()->first.rfind("header.", 0) == 0) {
            return Error{"Block format '" + *driver + "' does not support the option 'header.filename'"};
        }
    }
    for (auto secret : QEMU_SECRET_OPTIONS)
        if (auto it = opts.find(std::string(secret)); it != opts.end()) {
            out.strong[std::string(secret)] = it->second;
            opts.erase(it);
        }
    // backing.[backing. ...]SECRET: the backing file's secrets, one level per "backing." prefix.
    for (auto it = opts.begin(); backing_secrets && it != opts.end();) {
        std::string_view key = it->first;
        std::size_t depth = 0;
        for (constexpr std::string_view B = "backing."; key.substr(0, B.size()) == B; key.remove_prefix(B.size()))
            ++depth;
        const bool secret =
            std::find(std::begin(QEMU_SECRET_OPTIONS), std::end(QEMU_SECRET_OPTIONS), key) != std::end(QEMU_SECRET_OPTIONS);
        if (depth == 0 || !secret || depth > MAX_BACKING_SECRET_DEPTH) {
            ++it;
            continue;
        }
        if (out.backing_strong.size() < depth)
            out.backing_strong.resize(depth);
        out.backing_strong[depth - 1][std::string(key)] = it->second;
        it = opts.erase(it);
    }
    if (auto it = opts.find("backing"); it != opts.end() && (it->second == JSON_NULL || it->second.empty())) {
        if (it->second.empty())
            out.warnings.push_back("Use of \"backing\": \"\" is deprecated; use \"backing\": null instead");
        out.no_backing = true;
        opts.erase(it);
    }
    for (const auto& kv : opts)
        for (auto unsupported : UNSUPPORTED_OPTIONS)
            if (kv.first == unsupported || (unsupported.back() == '.' && kv.first.rfind(unsupported, 0) == 0))
                return Error{"option '" + kv.first + "' is not supported by instar (it changes what is read)"};
    if (!opts.empty()) {
        const std::string& key = opts.begin()->first;
        if (key.rfind("file.", 0) == 0)
            return Error{"Block protocol 'file' doesn't support the option '" + key.substr(5) + "'"};
        if (driver)
            return Error{"Block format '" + *driver + "' does not support the option '" + key + "'"};
        out.unsupported_option = key; // qemu names the probed format: the caller reports it
    }
    out.path = *filename;
    out.display = *filename;
    out.format = driver;
    return out;
}

} // namespace

std::string image_display_name(const ImageName& name, const std::string& format,
                               const std::vector<std::pair<std::string, std::string>>& backing) {
    // A node is named by json when it or a node below it has strong options ("backing": null is no
    // reason: info opens without backing files anyway). Level 0 is the image, level d its backing
    // file d levels down (named only as far as `backing` reaches).
    const std::size_t levels = std::min(name.backing_strong.size(), backing.size()) + 1;
    auto strong = [&](std::size_t level) -> const boost::json::object& {
        return level == 0 ? name.strong : name.backing_strong[level - 1];
    };
    std::size_t last = levels; // the deepest level with strong options, + 1
    while (last > 0 && strong(last - 1).empty())
        --last;
    if (last == 0)
        return name.display;
    // bdrv_refresh_filename: driver, the strong options, then the children (file, backing),
    // serialised by qobject_to_json in QDict order.
    std::function<boost::json::object(std::size_t)> node = [&](std::size_t level) {
        boost::json::object o;
        o["driver"] = level == 0 ? format : backing[level - 1].first;
        for (const auto& kv : strong(level))
            o[kv.key()] = kv.value();
        if (level == 0 && name.header) // a child node of its own, shown beside file
            o["header"] = boost::json::object{{"driver", "file"}, {"filename", *name.header}};
        boost::json::object file;
        file["driver"] = "file";
        file["filename"] = level == 0 ? name.path : backing[level - 1].second;
        o["file"] = std::move(file);
        if (level + 1 < last)
            o["backing"] = node(level + 1);
        return o;
    };
    const boost::json::object o = node(0);
    std::string out = "json:";
    std::function<void(const boost::json::value&)> emit = [&](const boost::json::value& v) {
        if (!v.is_object()) {
            out += boost::json::serialize(v);
            return;
        }
        out += '{';
        bool first = true;
        for (const auto& kv : v.get_object()) {
            out += first ? "" : ", ";
            first = false;
            out += boost::json::serialize(boost::json::value(kv.key())) + ": ";
            emit(kv.value());
        }
        out += '}';
    };
    emit(qdict_order(o));
    return out;
}

std::string unsupported_option_error(const ImageName& name, const std::optional<std::string>& format) {
    return "Could not open '" + name.given + "': " +
           (format ? "Block format '" + *format + "' does not" : std::string("The image's format does not")) +
           " support the option '" + name.unsupported_option.value_or("") + "'";
}

std::string quote_given(const ImageName& name, const std::string& message) {
    const std::string quoted = "Could not open '" + name.path + "'";
    if (name.given == name.path || message.rfind(quoted, 0) != 0)
        return message;
    return "Could not open '" + name.given + "'" + message.substr(quoted.size());
}

HeaderDrivers header_drivers(const PluginRegistry& plugins) {
    return [&plugins](std::string_view driver) -> std::uint32_t {
        const LoadedPlugin* p = plugins.find(driver);
        return p && driver == (*p)->name ? (*p)->detached_header_since : 0;
    };
}

void header_in_profile(ImageName& name, std::uint32_t profile_version) {
    if (!name.header || profile_version >= name.header_since)
        return;
    name.header.reset();
    name.unsupported_option = "header.filename";
}

std::string protocol_prefix(std::string_view name) {
    const auto stop = name.find_first_of(":/");
    if (stop == std::string_view::npos || name[stop] != ':')
        return {};
    return std::string(name.substr(0, stop));
}

Expected<ImageName> parse_image_name(std::string_view name, bool allow_json, bool backing_secrets,
                                     const HeaderDrivers& headers) {
    if (allow_json && name.rfind("json:", 0) == 0) {
        boost::system::error_code ec;
        const boost::json::value v = boost::json::parse(name.substr(5), ec);
        if (ec) {
            const bool eoi = ec == boost::json::error::incomplete;
            return Error{std::string("Could not parse the JSON options: JSON parse error") +
                         (eoi ? ", premature EOI" : "")};
        }
        if (!v.is_object())
            return Error{"Invalid JSON object given"};
        Flat flat;
        std::string error;
        if (!flatten(v.get_object(), "", flat, error))
            return Error{error};
        return interpret(std::move(flat), std::string(name), backing_secrets, headers);
    }
    auto path = local_path(name);
    if (!path)
        return Error{path.error()};
    ImageName out;
    out.path = *path;
    out.display = *path;
    out.given = std::string(name);
    return out;
}

Expected<ImageName> parse_image_opts(std::string_view text, bool backing_secrets, const HeaderDrivers& headers) {
    // QemuOpts: key=value pairs separated by ','; ",," is a literal comma; a first element without
    // '=' is the implied key (`file` for block devices); a later one is a flag, KEY=on (noKEY: KEY=off),
    // with qemu's deprecation warning.
    Flat flat;
    std::string key, value;
    bool in_value = false;
    bool first = true;
    std::vector<std::string> warnings;
    auto finish = [&]() {
        if (!in_value) {
            if (first) {
                flat["file"] = key;
            } else if (!key.empty()) {
                auto flag = short_form_flag(key);
                if (flag.warning)
                    warnings.push_back(*flag.warning);
                flat[flag.item.key] = flag.item.value;
            }
        } else {
            flat[key] = value;
        }
        key.clear();
        value.clear();
        in_value = false;
        first = false;
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == ',') {
            if (i + 1 < text.size() && text[i + 1] == ',') {
                (in_value ? value : key) += ',';
                ++i;
                continue;
            }
            finish();
            continue;
        }
        if (c == '=' && !in_value) {
            in_value = true;
            continue;
        }
        (in_value ? value : key) += c;
    }
    if (!text.empty())
        finish();
    auto out = interpret(std::move(flat), std::string(text), backing_secrets, headers);
    if (out)
        out->warnings.insert(out->warnings.begin(), warnings.begin(), warnings.end());
    return out;
}

} // namespace instar::cli
