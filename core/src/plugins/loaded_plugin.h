// A plugin instar has loaded: its descriptor, kept valid by holding the library it lives in.
#pragma once

#include "instar/plugin.h"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace instar {

struct LoadedPlugin {
    // Aliasing shared_ptr: owns the boost::dll::shared_library, points at the descriptor inside it.
    // The library stays mapped for as long as any copy of this pointer lives.
    std::shared_ptr<const FormatDescriptor> descriptor;
    std::filesystem::path file;

    const FormatDescriptor& operator*() const { return *descriptor; }
    const FormatDescriptor* operator->() const { return descriptor.get(); }
    bool answers_to(std::string_view name) const;
    // Path of the guest half (beside the .so), or empty when the plugin has none.
    std::filesystem::path guest_module_path() const;
};

} // namespace instar
