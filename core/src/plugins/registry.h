// The set of format plugins, in probe order (by priority, then name: raw, the catch-all, last).
// Plugins with a current manifest (plugins/manifest.h) are known by it and loaded only when a
// command needs them; plugins without one are loaded at discovery, as are all by plugins().
#pragma once

#include "plugins/discovery.h"
#include "plugins/loaded_plugin.h"
#include "plugins/manifest.h"

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace instar {

// One discovered plugin: its names and probe rules (from its manifest or its loaded descriptor).
class PluginEntry {
public:
    const std::filesystem::path& file() const { return file_; }
    std::string_view name() const;
    std::uint32_t probe_priority() const;
    bool answers_to(std::string_view name) const;
    std::span<const ProbeRule> probe_rules() const;

private:
    friend class PluginRegistry;
    std::filesystem::path file_;
    std::shared_ptr<const PluginManifest> manifest_; // set until loaded when the plugin had one
    std::shared_ptr<LoadedPlugin> loaded_;           // heap: pointers to it stay valid
    bool failed_ = false;                            // loading failed (warned); acts as absent
};

class PluginRegistry {
public:
    using WarningSink = std::function<void(const std::string&)>;

    // Finds every plugin in the search path. Plugins without a current manifest are loaded now; each
    // file that cannot be used is reported to `warn` (one line: file and reason) and skipped. A
    // plugin known by its manifest is reported the same way if loading it fails when it is needed.
    static PluginRegistry discover(const DiscoveryInputs& in, const WarningSink& warn);

    // Loads one file now; returns false (after warning) when it is not a usable plugin.
    bool load(const std::filesystem::path& file, const WarningSink& warn);

    // Every usable plugin, loaded, in probe order (loads those not loaded yet: `instar formats`).
    const std::vector<LoadedPlugin>& plugins() const;
    // The plugin answering to a name or alias, loading only that one; nullptr when none does.
    const LoadedPlugin* find(std::string_view name_or_alias) const;

    // The discovered plugins in probe order, none loaded by this call (host probing reads the rules).
    const std::vector<PluginEntry>& entries() const { return entries_; }
    // The entry's plugin, loaded on first use; nullptr (after a warning) when it cannot be loaded.
    const LoadedPlugin* get(const PluginEntry& entry) const;

private:
    bool add(PluginEntry entry, const WarningSink& warn);

    // Loading on demand changes only the cache of loaded plugins, never which plugins exist, so the
    // accessors stay const. Not thread-safe (the CLI is single-threaded).
    mutable std::vector<PluginEntry> entries_;
    mutable std::vector<LoadedPlugin> all_;
    mutable bool all_loaded_ = false;
    WarningSink warn_;
};

// For a format instar ships in-tree whose plugin is not installed: " (its plugin is not installed:
// install the package instar-plugin-FMT)", naming the distribution package (docs/packaging.md);
// empty for any other name.
std::string missing_plugin_hint(std::string_view format);

} // namespace instar
