// Where plugins are looked for, in order: the installed plugin directory (or, when instar runs from
// its build tree, that tree's plugins/ directories instead), then each INSTAR_PLUGIN_PATH entry.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace instar {

struct DiscoveryInputs {
    std::filesystem::path executable;        // /proc/self/exe, resolved
    std::filesystem::path installed_dir;     // <prefix>/<libdir>/instar/plugins
    std::filesystem::path build_root;        // the Meson build root instar was built in
    std::string env_path;                    // INSTAR_PLUGIN_PATH (colon-separated), may be empty
};

std::vector<std::filesystem::path> plugin_search_dirs(const DiscoveryInputs& in);

// The plugin candidates of one directory: regular files (or links to them) named *.so, sorted by
// name so the load order never depends on readdir order. A missing directory yields nothing.
std::vector<std::filesystem::path> plugin_files_in(const std::filesystem::path& dir);

// The inputs for this process: its own executable, the configured directories, the environment.
DiscoveryInputs discovery_inputs_from_environment();

} // namespace instar
