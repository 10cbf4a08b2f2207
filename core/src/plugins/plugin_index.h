// A plugin index: every plugin's manifest (plugins/manifest.h) of one plugin source in one file, so
// that discovery reads one file instead of listing the source's directories and reading a manifest
// per plugin (a build tree has 13 plugin directories: ~140 of a qcow2 `info`'s ~480 system calls,
// docs/architecture.md "Start-up", round 7). The index of directory D is the file `D.index` beside
// it (outside D, so writing it does not change D). Written at build time (the build tree's
// plugins/) and at install time (the installed plugin directory) by instar-plugin-manifest; any
// plugin directory can have one. Like a manifest it is only a cache: it counts while D has the
// modification time it records (no plugin added, removed or renamed in D) and each plugin the size
// and modification time its manifest records; otherwise discovery scans D as before.
#pragma once

#include "plugins/plugin_source.h"
#include "plugins/manifest_io.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace instar {

inline constexpr const char* INDEX_SUFFIX = ".index";

struct IndexedPlugin {
    std::filesystem::path file;
    // nullptr: the plugin could not be loaded when the index was written; discovery loads it (and
    // warns) as it does a plugin without a manifest.
    std::shared_ptr<const PluginManifest> manifest;
};

// The index text for `source`, given each plugin's file and manifest text (empty for a plugin that
// could not be loaded). Empty when the source's directory cannot be stat'ed.
std::string index_text(const PluginSource& source,
                       const std::vector<std::pair<std::filesystem::path, std::string>>& manifests);

// The plugins of `source` by its index, in the index's order (that of a scan); nullopt when there is
// no index, it does not parse, or it no longer describes the source.
std::optional<std::vector<IndexedPlugin>> read_plugin_index(const PluginSource& source);

} // namespace instar
