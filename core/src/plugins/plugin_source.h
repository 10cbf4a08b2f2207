// Where discovery's plugins come from (plugins/discovery.h computes the list): a directory of
// plugins, or a build tree's plugins/ whose subdirectories each hold one. A source may have an
// index (plugins/plugin_index.h).
#pragma once

#include "plugins/discovery.h"

#include <filesystem>
#include <vector>

namespace instar {

struct PluginSource {
    std::filesystem::path root;
    bool tree = false; // the plugins are in root's subdirectories (a build tree)
};

// The sources in search order: the installed plugin directory (or, from the build tree, that
// tree's plugins/), then each INSTAR_PLUGIN_PATH entry.
std::vector<PluginSource> plugin_sources(const DiscoveryInputs& in);

// The directories a source's plugins are in: root, or root's subdirectories sorted by name.
std::vector<std::filesystem::path> source_dirs(const PluginSource& source);

} // namespace instar
