// Name matching and guest-module lookup for loaded plugins.
#include "plugins/loaded_plugin.h"

namespace instar {

bool LoadedPlugin::answers_to(std::string_view name) const {
    if (name == descriptor->name)
        return true;
    if (descriptor->aliases)
        for (const char* const* a = descriptor->aliases; *a; ++a)
            if (name == *a)
                return true;
    return false;
}

std::filesystem::path LoadedPlugin::guest_module_path() const {
    if (!descriptor->guest_module)
        return {};
    return file.parent_path() / descriptor->guest_module;
}

} // namespace instar
