// The set of loaded format plugins, in probe order (by priority, then name: raw, the catch-all, last).
#pragma once

#include "plugins/discovery.h"
#include "plugins/loaded_plugin.h"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace instar {

class PluginRegistry {
public:
    using WarningSink = std::function<void(const std::string&)>;

    // Loads every plugin in the search path; each file that cannot be used is reported to `warn`
    // (one line: file and reason) and skipped.
    static PluginRegistry discover(const DiscoveryInputs& in, const WarningSink& warn);

    // Loads one file; returns false (after warning) when it is not a usable plugin.
    bool load(const std::filesystem::path& file, const WarningSink& warn);

    const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
    const LoadedPlugin* find(std::string_view name_or_alias) const;

private:
    std::vector<LoadedPlugin> plugins_;
};

} // namespace instar
