// Plugin search path computation and directory scanning.
#include "plugins/plugin_source.h"

#include "instar_config.h"
#include "util/path_within.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>

namespace fs = std::filesystem;

namespace instar {
std::vector<PluginSource> plugin_sources(const DiscoveryInputs& in) {
    std::vector<PluginSource> sources;
    std::error_code ec;
    const fs::path build_plugins = in.build_root / "plugins";
    if (path_is_within(in.executable, in.build_root) && fs::is_directory(build_plugins, ec))
        // Running from the build tree: use the plugins built beside us, not an older installed set.
        sources.push_back({build_plugins, true});
    else
        sources.push_back({in.installed_dir, false});
    std::string_view rest = in.env_path;
    while (!rest.empty()) {
        const auto colon = rest.find(':');
        const auto part = rest.substr(0, colon);
        if (!part.empty())
            sources.push_back({fs::path(std::string(part)), false});
        if (colon == std::string_view::npos)
            break;
        rest.remove_prefix(colon + 1);
    }
    return sources;
}

std::vector<fs::path> source_dirs(const PluginSource& source) {
    if (!source.tree)
        return {source.root};
    std::vector<fs::path> sub;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(source.root, ec))
        if (e.is_directory(ec))
            sub.push_back(e.path());
    std::sort(sub.begin(), sub.end());
    return sub;
}

std::vector<fs::path> plugin_search_dirs(const DiscoveryInputs& in) {
    std::vector<fs::path> dirs;
    for (const auto& s : plugin_sources(in)) {
        const auto d = source_dirs(s);
        dirs.insert(dirs.end(), d.begin(), d.end());
    }
    return dirs;
}

std::vector<fs::path> plugin_files_in(const fs::path& dir) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".so" && e.is_regular_file(ec))
            files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

DiscoveryInputs discovery_inputs_from_environment() {
    DiscoveryInputs in;
    std::error_code ec;
    // The kernel's link is already the resolved absolute path: one readlink instead of canonical()'s
    // one per path component (start-up cost, docs/architecture.md "Start-up").
    in.executable = fs::read_symlink("/proc/self/exe", ec);
    if (ec || !in.executable.is_absolute())
        in.executable = fs::canonical("/proc/self/exe", ec);
    in.installed_dir = INSTAR_PLUGIN_DIR;
    in.build_root = fs::weakly_canonical(INSTAR_BUILD_ROOT, ec);
    if (const char* env = std::getenv("INSTAR_PLUGIN_PATH"))
        in.env_path = env;
    return in;
}

} // namespace instar
