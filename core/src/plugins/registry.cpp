// Plugin loading through Boost.DLL: ABI check, factory call, descriptor validation, ordering.
#include "plugins/registry.h"

#include "plugins/descriptor_check.h"

#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <array>
#include <fstream>

namespace fs = std::filesystem;

namespace instar {
namespace {

bool looks_like_elf(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::array<char, 4> magic{};
    return in.read(magic.data(), magic.size()) && magic == std::array<char, 4>{0x7f, 'E', 'L', 'F'};
}

// Everything that can go wrong is returned as a reason; the descriptor comes back only when usable.
std::shared_ptr<const FormatDescriptor> open_plugin(const fs::path& file, std::string& reason) {
    if (!looks_like_elf(file)) {
        reason = "not an ELF shared object";
        return nullptr;
    }
    auto lib = std::make_shared<boost::dll::shared_library>();
    boost::dll::fs::error_code ec;
    lib->load(file.string(), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
        reason = "cannot be loaded: " + ec.message();
        return nullptr;
    }
    if (!lib->has(INSTAR_PLUGIN_ABI_SYMBOL)) {
        reason = "no " INSTAR_PLUGIN_ABI_SYMBOL " symbol (not an instar plugin)";
        return nullptr;
    }
    const std::uint32_t abi = lib->get_alias<PluginAbiVersionFn>(INSTAR_PLUGIN_ABI_SYMBOL)();
    if (abi != INSTAR_PLUGIN_ABI_VERSION) {
        reason = "built for plugin ABI " + std::to_string(abi) + ", this instar speaks plugin ABI " +
                 std::to_string(INSTAR_PLUGIN_ABI_VERSION);
        return nullptr;
    }
    if (!lib->has(INSTAR_PLUGIN_FACTORY_SYMBOL)) {
        reason = "no " INSTAR_PLUGIN_FACTORY_SYMBOL " factory";
        return nullptr;
    }
    const FormatDescriptor* d = nullptr;
    try {
        d = lib->get_alias<FormatPluginFactoryFn>(INSTAR_PLUGIN_FACTORY_SYMBOL)();
    } catch (const std::exception& e) {
        reason = std::string("factory threw: ") + e.what();
        return nullptr;
    } catch (...) {
        reason = "factory threw a non-standard exception";
        return nullptr;
    }
    if (auto bad = check_descriptor(d)) {
        reason = *bad;
        return nullptr;
    }
    // SAFETY: d points into the library's static data; the aliasing pointer keeps `lib` (and with it
    // the mapping) alive for as long as any copy of the descriptor pointer exists.
    return std::shared_ptr<const FormatDescriptor>(lib, d);
}

bool same_name(const LoadedPlugin& a, const FormatDescriptor& b) {
    if (a.answers_to(b.name))
        return true;
    if (b.aliases)
        for (const char* const* x = b.aliases; *x; ++x)
            if (a.answers_to(*x))
                return true;
    return false;
}

} // namespace

bool PluginRegistry::load(const fs::path& file, const WarningSink& warn) {
    std::string reason;
    auto d = open_plugin(file, reason);
    if (!d) {
        warn("skipping plugin " + file.string() + ": " + reason);
        return false;
    }
    for (const auto& p : plugins_) {
        if (same_name(p, *d)) {
            warn("skipping plugin " + file.string() + ": format '" + d->name + "' is already provided by " +
                 p.file.string());
            return false;
        }
    }
    LoadedPlugin lp{std::move(d), file};
    auto pos = std::upper_bound(plugins_.begin(), plugins_.end(), lp, [](const LoadedPlugin& a, const LoadedPlugin& b) {
        if (a->probe_priority != b->probe_priority)
            return a->probe_priority < b->probe_priority;
        return std::string_view(a->name) < std::string_view(b->name);
    });
    plugins_.insert(pos, std::move(lp));
    return true;
}

PluginRegistry PluginRegistry::discover(const DiscoveryInputs& in, const WarningSink& warn) {
    PluginRegistry reg;
    for (const auto& dir : plugin_search_dirs(in))
        for (const auto& file : plugin_files_in(dir))
            reg.load(file, warn);
    return reg;
}

const LoadedPlugin* PluginRegistry::find(std::string_view name) const {
    for (const auto& p : plugins_)
        if (p.answers_to(name))
            return &p;
    return nullptr;
}

} // namespace instar
