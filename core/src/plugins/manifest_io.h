// Reading manifest text (plugins/manifest.h) from wherever it is stored: its own file beside the
// plugin, or a plugin index (plugins/plugin_index.h).
#pragma once

#include "plugins/manifest.h"

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace instar {

// Far above any real manifest (a few hundred bytes); stops a garbage file from being slurped.
inline constexpr std::size_t MAX_MANIFEST_BYTES = 64 * 1024;

// The manifest in `text` for the plugin file `so`, under read_manifest's rules (it parses within
// the descriptor_check bounds and still describes `so`); nullptr otherwise.
std::shared_ptr<const PluginManifest> parse_manifest(std::string_view text, const std::filesystem::path& so);

// A whole file of at most `limit` bytes in one buffer; nullopt when it cannot be opened, is empty
// or is larger.
std::optional<std::string> read_small_file(const std::filesystem::path& file, std::size_t limit);

} // namespace instar
