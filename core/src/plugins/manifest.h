// A plugin's manifest: what discovery needs to know about a plugin without loading it (its names,
// probe priority and probe rules), cached in `<plugin>.so.manifest` beside it at build/install time
// (instar-plugin-manifest). Loading a plugin (dlopen, relocation, constructors) costs ~0.15 ms; a
// command needs one or two of them, so the registry loads only those (docs/architecture.md,
// "Start-up"). A manifest is only a cache: it counts only while the plugin file has the size and
// modification time it records; otherwise the plugin is loaded as if there were none.
#pragma once

#include "instar/plugin.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace instar {

inline constexpr const char* MANIFEST_SUFFIX = ".manifest";

struct PluginManifest {
    std::string name;
    std::vector<std::string> aliases;
    std::uint32_t probe_priority = 0;
    std::vector<ProbeRule> rules; // point into the storage below (the manifest is never copied)

    PluginManifest() = default;
    PluginManifest(const PluginManifest&) = delete;
    PluginManifest& operator=(const PluginManifest&) = delete;

    bool answers_to(std::string_view n) const;

    // Storage for `rules`: the matches of each rule and the bytes of each match.
    std::vector<std::vector<ProbeMatch>> match_storage;
    std::vector<std::vector<unsigned char>> byte_storage;
};

// The manifest text for a loaded, checked descriptor whose file is `so` (its size and modification
// time are recorded). Empty when `so` cannot be stat'ed.
std::string manifest_text(const FormatDescriptor& d, const std::filesystem::path& so);

// The manifest beside `so`, when there is one, it parses within the descriptor_check bounds and it
// still describes `so` (same size and modification time); nullptr otherwise.
std::shared_ptr<const PluginManifest> read_manifest(const std::filesystem::path& so);

} // namespace instar
