// Plugin loading through Boost.DLL: ABI check, factory call, descriptor validation, ordering.
#include "plugins/registry.h"

#include "instar_config.h"

#include "plugins/descriptor_check.h"
#include "plugins/plugin_index.h"

#include <boost/dll/shared_library.hpp> // on std::filesystem (BOOST_DLL_USE_STD_FS, core/meson.build)

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

// Whether a name or alias of `b` is already taken by `a`.
bool same_name(const PluginEntry& a, std::string_view b_name, const std::vector<std::string>& b_aliases) {
    if (a.answers_to(b_name))
        return true;
    for (const auto& x : b_aliases)
        if (a.answers_to(x))
            return true;
    return false;
}

std::vector<std::string> aliases_of(const FormatDescriptor& d) {
    std::vector<std::string> v;
    if (d.aliases)
        for (const char* const* x = d.aliases; *x; ++x)
            v.emplace_back(*x);
    return v;
}

} // namespace

std::string_view PluginEntry::name() const { return loaded_ ? std::string_view((*loaded_)->name) : manifest_->name; }

std::uint32_t PluginEntry::probe_priority() const {
    return loaded_ ? (*loaded_)->probe_priority : manifest_->probe_priority;
}

bool PluginEntry::answers_to(std::string_view n) const {
    return loaded_ ? loaded_->answers_to(n) : manifest_->answers_to(n);
}

std::span<const ProbeRule> PluginEntry::probe_rules() const {
    if (loaded_)
        return {(*loaded_)->probe_rules, (*loaded_)->probe_rule_count};
    return manifest_->rules;
}

bool PluginRegistry::add(PluginEntry entry, const WarningSink& warn) {
    const std::string name(entry.name());
    const auto aliases = entry.loaded_ ? aliases_of(**entry.loaded_) : entry.manifest_->aliases;
    for (const auto& e : entries_) {
        if (same_name(e, name, aliases)) {
            warn("skipping plugin " + entry.file_.string() + ": format '" + name + "' is already provided by " +
                 e.file_.string());
            return false;
        }
    }
    auto pos = std::upper_bound(entries_.begin(), entries_.end(), entry, [](const PluginEntry& a, const PluginEntry& b) {
        if (a.probe_priority() != b.probe_priority())
            return a.probe_priority() < b.probe_priority();
        return a.name() < b.name();
    });
    entries_.insert(pos, std::move(entry));
    all_loaded_ = false;
    return true;
}

bool PluginRegistry::load(const fs::path& file, const WarningSink& warn) {
    warn_ = warn;
    std::string reason;
    auto d = open_plugin(file, reason);
    if (!d) {
        warn("skipping plugin " + file.string() + ": " + reason);
        return false;
    }
    PluginEntry e;
    e.file_ = file;
    e.loaded_ = std::make_shared<LoadedPlugin>(LoadedPlugin{std::move(d), file});
    return add(std::move(e), warn);
}

PluginRegistry PluginRegistry::discover(const DiscoveryInputs& in, const WarningSink& warn) {
    PluginRegistry reg;
    reg.warn_ = warn;
    const auto take = [&](const fs::path& file, std::shared_ptr<const PluginManifest> m) {
        if (!m) {
            reg.load(file, warn);
            return;
        }
        PluginEntry e;
        e.file_ = file;
        e.manifest_ = std::move(m);
        reg.add(std::move(e), warn);
    };
    for (const auto& source : plugin_sources(in)) {
        if (auto indexed = read_plugin_index(source)) { // one file read instead of a scan
            for (auto& p : *indexed)
                take(p.file, std::move(p.manifest));
            continue;
        }
        for (const auto& dir : source_dirs(source))
            for (const auto& file : plugin_files_in(dir))
                take(file, read_manifest(file));
    }
    return reg;
}

const LoadedPlugin* PluginRegistry::get(const PluginEntry& entry) const {
    if (entry.loaded_ || entry.failed_)
        return entry.loaded_.get();
    auto& e = const_cast<PluginEntry&>(entry); // entries_ is mutable: loading fills its cache
    std::string reason;
    auto d = open_plugin(e.file_, reason);
    if (d && (std::string_view(d->name) != e.manifest_->name || aliases_of(*d) != e.manifest_->aliases ||
              d->probe_priority != e.manifest_->probe_priority))
        reason = "its manifest does not match it (rebuild or reinstall it)";
    if (!d || !reason.empty()) {
        if (warn_)
            warn_("skipping plugin " + e.file_.string() + ": " + reason);
        e.failed_ = true;
        return nullptr;
    }
    e.loaded_ = std::make_shared<LoadedPlugin>(LoadedPlugin{std::move(d), e.file_});
    return e.loaded_.get();
}

const std::vector<LoadedPlugin>& PluginRegistry::plugins() const {
    if (!all_loaded_) {
        all_.clear();
        for (const auto& e : entries_)
            if (const LoadedPlugin* p = get(e))
                all_.push_back(*p);
        all_loaded_ = true;
    }
    return all_;
}

const LoadedPlugin* PluginRegistry::find(std::string_view name) const {
    if (all_loaded_) { // the same pointers plugins() hands out
        for (const auto& p : all_)
            if (p.answers_to(name))
                return &p;
        return nullptr;
    }
    for (const auto& e : entries_)
        if (!e.failed_ && e.answers_to(name))
            return get(e);
    return nullptr;
}

std::string missing_plugin_hint(std::string_view format) {
    // The in-tree plugins' directories (meson.build's in_tree_plugins), each packaged as
    // instar-plugin-<directory>. A plugin's directory is its format's name, but for the VHD plugin,
    // whose format qemu calls vpc.
    if (format == "vhd") // a directory name, not a format: qemu knows no format 'vhd'
        return {};
    const std::string_view package = format == "vpc" ? std::string_view("vhd") : format;
    std::string_view list = INSTAR_IN_TREE_PLUGINS;
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        if (list.substr(0, comma) == package && !package.empty())
            return " (its plugin is not installed: install the package instar-plugin-" + std::string(package) + ")";
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
    return {};
}

} // namespace instar
