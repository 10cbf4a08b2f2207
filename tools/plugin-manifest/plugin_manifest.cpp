// instar-plugin-manifest: writes the manifests that let instar load a plugin only when a command
// needs it (core/src/plugins/manifest.h) and the index that saves it listing plugin directories
// (core/src/plugins/plugin_index.h).
//   instar-plugin-manifest PLUGIN.so OUTPUT   the build step, one plugin's manifest
//   instar-plugin-manifest --tree ROOT OUTPUT the build step, the index of a build tree's plugins/
//                                             (OUTPUT must be ROOT.index)
//   instar-plugin-manifest --dir DIR          the install step: every *.so in DIR, the manifest beside
//                                             it, then DIR.index (a relative DIR is taken under
//                                             $MESON_INSTALL_DESTDIR_PREFIX when that is set)
//   instar-plugin-manifest --index DIR        a package manager's trigger: DIR.index only (the
//                                             manifests beside the plugins belong to their packages)
// A plugin that cannot be loaded gets an empty manifest, which instar ignores: it then loads the
// plugin at discovery and prints its usual warning.
#include "plugins/discovery.h"
#include "plugins/manifest.h"
#include "plugins/plugin_index.h"
#include "plugins/registry.h"

#include <cstdlib>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

namespace {

std::string manifest_for(const fs::path& so) {
    instar::PluginRegistry reg;
    if (reg.load(so, [](const std::string& w) { std::cerr << "instar-plugin-manifest: warning: " << w << '\n'; }))
        return instar::manifest_text(*reg.plugins().front(), so);
    return {};
}

// Each plugin file in `dir` (a scan's order) with its manifest text, made now.
std::vector<std::pair<fs::path, std::string>> manifests_in(const fs::path& dir) {
    std::vector<std::pair<fs::path, std::string>> manifests;
    for (const auto& so : instar::plugin_files_in(dir))
        manifests.emplace_back(so, manifest_for(so));
    return manifests;
}

// Written beside, then renamed over: a reader sees the old file or the new one.
bool write_file(const fs::path& out, const std::string& text) {
    const fs::path tmp = out.string() + ".tmp";
    {
        std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
        o << text;
        if (!o.flush()) {
            std::cerr << "instar-plugin-manifest: cannot write " << tmp << '\n';
            return false;
        }
    }
    std::error_code ec;
    fs::rename(tmp, out, ec);
    if (ec) {
        std::cerr << "instar-plugin-manifest: cannot write " << out << ": " << ec.message() << '\n';
        return false;
    }
    return true;
}

// The index of `source`, from each plugin's manifest text (made now, or the one just written).
bool write_index(const instar::PluginSource& source, const fs::path& out,
                 const std::vector<std::pair<fs::path, std::string>>& manifests) {
    const std::string text = instar::index_text(source, manifests);
    if (text.empty()) {
        std::cerr << "instar-plugin-manifest: cannot index " << source.root << '\n';
        return false;
    }
    return write_file(out, text);
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "--dir") {
        fs::path dir = argv[2];
        if (const char* prefix = std::getenv("MESON_INSTALL_DESTDIR_PREFIX"); prefix && dir.is_relative())
            dir = fs::path(prefix) / dir;
        bool ok = true;
        const auto manifests = manifests_in(dir);
        for (const auto& [so, text] : manifests)
            ok &= write_file(so.string() + instar::MANIFEST_SUFFIX, text);
        const instar::PluginSource source{dir, false};
        return ok && write_index(source, dir.string() + instar::INDEX_SUFFIX, manifests) ? 0 : 1;
    }
    if (argc == 3 && std::string(argv[1]) == "--index") {
        const instar::PluginSource source{argv[2], false};
        return write_index(source, source.root.string() + instar::INDEX_SUFFIX, manifests_in(source.root)) ? 0 : 1;
    }
    if (argc == 4 && std::string(argv[1]) == "--tree") {
        const instar::PluginSource source{argv[2], true};
        std::vector<std::pair<fs::path, std::string>> manifests;
        for (const auto& dir : instar::source_dirs(source))
            for (const auto& so : instar::plugin_files_in(dir))
                manifests.emplace_back(so, manifest_for(so));
        return write_index(source, argv[3], manifests) ? 0 : 1;
    }
    if (argc == 3)
        return write_file(argv[2], manifest_for(argv[1])) ? 0 : 1;
    std::cerr << "usage: instar-plugin-manifest PLUGIN.so OUTPUT | --tree ROOT OUTPUT | --dir DIR | --index DIR\n";
    return 2;
}
