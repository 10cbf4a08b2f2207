// Plugin search path computation and directory scanning.
#include "plugins/discovery.h"

#include "instar_config.h"
#include "util/path_within.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>

namespace fs = std::filesystem;

namespace instar {
namespace {

} // namespace

std::vector<fs::path> plugin_search_dirs(const DiscoveryInputs& in) {
    std::vector<fs::path> dirs;
    std::error_code ec;
    const fs::path build_plugins = in.build_root / "plugins";
    if (path_is_within(in.executable, in.build_root) && fs::is_directory(build_plugins, ec)) {
        // Running from the build tree: use the plugins built beside us, not an older installed set.
        std::vector<fs::path> sub;
        for (const auto& e : fs::directory_iterator(build_plugins, ec))
            if (e.is_directory(ec))
                sub.push_back(e.path());
        std::sort(sub.begin(), sub.end());
        dirs.insert(dirs.end(), sub.begin(), sub.end());
    } else {
        dirs.push_back(in.installed_dir);
    }
    std::string_view rest = in.env_path;
    while (!rest.empty()) {
        const auto colon = rest.find(':');
        const auto part = rest.substr(0, colon);
        if (!part.empty())
            dirs.emplace_back(std::string(part));
        if (colon == std::string_view::npos)
            break;
        rest.remove_prefix(colon + 1);
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
