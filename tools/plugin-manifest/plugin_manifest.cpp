// instar-plugin-manifest: writes the manifest that lets instar load a plugin only when a command needs
// it (core/src/plugins/manifest.h).
//   instar-plugin-manifest PLUGIN.so OUTPUT   the build step, one plugin
//   instar-plugin-manifest --dir DIR          the install step: every *.so in DIR, the manifest beside
//                                             it (a relative DIR is taken under
//                                             $MESON_INSTALL_DESTDIR_PREFIX when that is set)
// A plugin that cannot be loaded gets an empty manifest, which instar ignores: it then loads the
// plugin at discovery and prints its usual warning.
#include "plugins/discovery.h"
#include "plugins/manifest.h"
#include "plugins/registry.h"

#include <cstdlib>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

namespace {

bool write_manifest(const fs::path& so, const fs::path& out) {
    instar::PluginRegistry reg;
    std::string text;
    if (reg.load(so, [](const std::string& w) { std::cerr << "instar-plugin-manifest: warning: " << w << '\n'; }))
        text = instar::manifest_text(*reg.plugins().front(), so);
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

} // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "--dir") {
        fs::path dir = argv[2];
        if (const char* prefix = std::getenv("MESON_INSTALL_DESTDIR_PREFIX"); prefix && dir.is_relative())
            dir = fs::path(prefix) / dir;
        bool ok = true;
        for (const auto& so : instar::plugin_files_in(dir))
            ok &= write_manifest(so, so.string() + instar::MANIFEST_SUFFIX);
        return ok ? 0 : 1;
    }
    if (argc == 3)
        return write_manifest(argv[1], argv[2]) ? 0 : 1;
    std::cerr << "usage: instar-plugin-manifest PLUGIN.so OUTPUT | --dir DIR\n";
    return 2;
}
