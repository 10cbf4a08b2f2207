// Index text: a header line, the directory's modification time, then per plugin its path relative
// to the directory and the length of its manifest text, followed by that text.
//   instar-plugin-index 1
//   dir MTIME_SEC MTIME_NSEC
//   plugin qcow2/libinstar-qcow2.so 187
//   instar-plugin-manifest 1        (187 bytes of manifest text, plugins/manifest.cpp)
//   ...
#include "plugins/plugin_index.h"

#include <sys/stat.h>

#include <charconv>
#include <sstream>

namespace fs = std::filesystem;

namespace instar {
namespace {

constexpr const char* HEADER = "instar-plugin-index 1";
// An index holds one manifest per plugin (a few hundred bytes each; 13 in-tree plugins): 1 MiB is
// far above any real one and stops a garbage file from being slurped.
constexpr std::size_t MAX_INDEX_BYTES = 1 << 20;

fs::path index_path(const PluginSource& s) { return s.root.string() + INDEX_SUFFIX; }

bool dir_mtime(const fs::path& dir, std::int64_t& sec, std::int64_t& nsec) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return false;
    sec = st.st_mtim.tv_sec;
    nsec = st.st_mtim.tv_nsec;
    return true;
}

template <typename T>
bool number(std::string_view s, T& out) {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

// The next line of `rest` (without its newline), or nullopt when none ends in a newline.
std::optional<std::string_view> next_line(std::string_view& rest) {
    const auto nl = rest.find('\n');
    if (nl == std::string_view::npos)
        return std::nullopt;
    const auto line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    return line;
}

// Only a plugin inside the directory: a relative path without "..", "." or empty components.
bool inside(std::string_view rel) {
    if (rel.empty() || rel.front() == '/')
        return false;
    for (const auto& part : fs::path(rel))
        if (part == ".." || part == "." || part.empty())
            return false;
    return true;
}

} // namespace

std::string index_text(const PluginSource& source, const std::vector<std::pair<fs::path, std::string>>& manifests) {
    std::int64_t sec = 0, nsec = 0;
    if (!dir_mtime(source.root, sec, nsec))
        return {};
    std::ostringstream o;
    o << HEADER << '\n' << "dir " << sec << ' ' << nsec << '\n';
    for (const auto& [file, text] : manifests) {
        const fs::path rel = file.lexically_relative(source.root);
        if (!inside(rel.string()) || rel.string().find_first_of(" \n") != std::string::npos)
            return {}; // a name the index cannot hold: no index, discovery scans
        o << "plugin " << rel.string() << ' ' << text.size() << '\n' << text;
    }
    return o.str();
}

std::optional<std::vector<IndexedPlugin>> read_plugin_index(const PluginSource& source) {
    const auto text = read_small_file(index_path(source), MAX_INDEX_BYTES);
    if (!text)
        return std::nullopt;
    std::string_view rest = *text;
    if (next_line(rest) != std::string_view(HEADER))
        return std::nullopt;
    const auto dir = next_line(rest);
    std::int64_t sec = 0, nsec = 0, actual_sec = 0, actual_nsec = 0;
    if (!dir || !dir->starts_with("dir "))
        return std::nullopt;
    const auto times = dir->substr(4);
    const auto space = times.find(' ');
    if (space == std::string_view::npos || !number(times.substr(0, space), sec) ||
        !number(times.substr(space + 1), nsec))
        return std::nullopt;
    if (!dir_mtime(source.root, actual_sec, actual_nsec) || sec != actual_sec || nsec != actual_nsec)
        return std::nullopt; // a plugin was added, removed or renamed since
    std::vector<IndexedPlugin> plugins;
    while (!rest.empty()) {
        const auto line = next_line(rest);
        if (!line || !line->starts_with("plugin "))
            return std::nullopt;
        const auto fields = line->substr(7);
        const auto sp = fields.rfind(' ');
        std::size_t len = 0;
        if (sp == std::string_view::npos || !number(fields.substr(sp + 1), len) || len > rest.size() ||
            !inside(fields.substr(0, sp)))
            return std::nullopt;
        IndexedPlugin p;
        p.file = source.root / fs::path(fields.substr(0, sp));
        if (len > 0) {
            p.manifest = parse_manifest(rest.substr(0, len), p.file);
            if (!p.manifest)
                return std::nullopt; // unparsable, or that plugin changed since: scan
        }
        rest.remove_prefix(len);
        plugins.push_back(std::move(p));
    }
    return plugins;
}

} // namespace instar
