// Plugin discovery: search order, the build-tree rule, env path, and each kind of broken plugin.
#include "plugins/discovery.h"
#include "plugins/registry.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;
using namespace instar;

namespace {

// A scratch directory removed at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/instar-discovery-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
    fs::path add(const char* source, const std::string& name) const {
        fs::copy_file(source, path / name);
        return path / name;
    }
};

struct Collected {
    std::vector<std::string> lines;
    PluginRegistry::WarningSink sink() {
        return [this](const std::string& w) { lines.push_back(w); };
    }
};

} // namespace

TEST_CASE("search dirs: installed dir, then INSTAR_PLUGIN_PATH entries in order") {
    DiscoveryInputs in{"/usr/bin/instar", "/usr/lib/instar/plugins", "/home/dev/instar/build", "/a::/b:"};
    const auto dirs = plugin_search_dirs(in);
    REQUIRE(dirs.size() == 3);
    CHECK(dirs[0] == "/usr/lib/instar/plugins");
    CHECK(dirs[1] == "/a");
    CHECK(dirs[2] == "/b");
}

TEST_CASE("search dirs: from the build tree, its plugins/* replace the installed dir") {
    TempDir build;
    fs::create_directories(build.path / "plugins" / "raw");
    fs::create_directories(build.path / "plugins" / "qcow2");
    DiscoveryInputs in{build.path / "tools" / "instar" / "instar", "/usr/lib/instar/plugins", build.path, "/x"};
    const auto dirs = plugin_search_dirs(in);
    REQUIRE(dirs.size() == 3);
    CHECK(dirs[0] == build.path / "plugins" / "qcow2");
    CHECK(dirs[1] == build.path / "plugins" / "raw");
    CHECK(dirs[2] == "/x");
    // A binary merely next to the build tree is not inside it.
    in.executable = build.path.string() + "-other/instar";
    CHECK(plugin_search_dirs(in)[0] == "/usr/lib/instar/plugins");
}

TEST_CASE("plugin files: *.so regular files, sorted; missing dir is empty") {
    TempDir d;
    for (const char* n : {"b.so", "a.so", "c.gmod", "notes.txt"})
        std::ofstream(d.path / n) << "x";
    fs::create_directory(d.path / "dir.so");
    const auto files = plugin_files_in(d.path);
    REQUIRE(files.size() == 2);
    CHECK(files[0].filename() == "a.so");
    CHECK(files[1].filename() == "b.so");
    CHECK(plugin_files_in(d.path / "missing").empty());
}

TEST_CASE("a good plugin loads and answers to its name and alias") {
    Collected w;
    PluginRegistry reg;
    CHECK(reg.load(TEST_PLUGIN_GOOD, w.sink()));
    CHECK(w.lines.empty());
    REQUIRE(reg.plugins().size() == 1);
    CHECK(reg.find("testfmt") == &reg.plugins()[0]);
    CHECK(reg.find("tf") == &reg.plugins()[0]);
    CHECK(reg.find("nope") == nullptr);
    CHECK(std::string(reg.plugins()[0]->version) == "9.9.9");
}

TEST_CASE("the descriptor outlives the registry: it holds the library") {
    std::shared_ptr<const FormatDescriptor> kept;
    {
        PluginRegistry reg;
        Collected w;
        REQUIRE(reg.load(TEST_PLUGIN_GOOD, w.sink()));
        kept = reg.plugins()[0].descriptor;
    }
    CHECK(std::string(kept->name) == "testfmt");
    CHECK(std::string(kept->options[0].help) == "Virtual disk size");
}

TEST_CASE("probe order: priority, then name; catch-all last") {
    TempDir d;
    d.add(TEST_PLUGIN_GOOD_LAST, "1-last.so"); // "aaalast", catch-all priority
    d.add(TEST_PLUGIN_GOOD, "2-good.so");      // "testfmt", normal priority
    Collected w;
    auto reg = PluginRegistry::discover({"/usr/bin/instar", d.path, "/nonexistent-build", ""}, w.sink());
    CHECK(w.lines.empty());
    REQUIRE(reg.plugins().size() == 2);
    CHECK(std::string(reg.plugins()[0]->name) == "testfmt");
    CHECK(std::string(reg.plugins()[1]->name) == "aaalast");
}

TEST_CASE("each broken plugin is skipped with one warning naming file and reason") {
    TempDir d;
    d.add(TEST_PLUGIN_GOOD, "a-good.so");
    const auto abi = d.add(TEST_PLUGIN_WRONG_ABI, "b-abi.so");
    const auto nofactory = d.add(TEST_PLUGIN_NO_FACTORY, "c-nofactory.so");
    const auto throws = d.add(TEST_PLUGIN_THROWS, "d-throws.so");
    const auto bad = d.add(TEST_PLUGIN_BAD_DESCRIPTOR, "e-bad.so");
    const auto dup = d.add(TEST_PLUGIN_DUP_ALIAS, "f-dup.so");
    std::ofstream(d.path / "g-text.so") << "this is not a shared object\n";
    std::ofstream(d.path / "h-empty.so");
    Collected w;
    auto reg = PluginRegistry::discover({"/usr/bin/instar", d.path, "/nonexistent-build", ""}, w.sink());
    REQUIRE(reg.plugins().size() == 1);
    CHECK(std::string(reg.plugins()[0]->name) == "testfmt");
    REQUIRE(w.lines.size() == 7);
    CHECK(w.lines[0] == "skipping plugin " + abi.string() + ": built for plugin ABI 999, this instar speaks plugin ABI 1");
    CHECK(w.lines[1] == "skipping plugin " + nofactory.string() + ": no instar_format_plugin_v1 factory");
    CHECK(w.lines[2] == "skipping plugin " + throws.string() + ": factory threw: deliberate failure");
    CHECK(w.lines[3] == "skipping plugin " + bad.string() + ": format name missing or not [a-z0-9_-]{1,32}");
    CHECK(w.lines[4] == "skipping plugin " + dup.string() + ": format 'other' is already provided by " +
                            (d.path / "a-good.so").string());
    CHECK(w.lines[5] == "skipping plugin " + (d.path / "g-text.so").string() + ": not an ELF shared object");
    CHECK(w.lines[6] == "skipping plugin " + (d.path / "h-empty.so").string() + ": not an ELF shared object");
}

TEST_CASE("an ELF that is not an instar plugin") {
    PluginRegistry reg;
    Collected w;
    CHECK_FALSE(reg.load("/lib/x86_64-linux-gnu/libz.so.1", w.sink()));
    REQUIRE(w.lines.size() == 1);
    CHECK(w.lines[0] == "skipping plugin /lib/x86_64-linux-gnu/libz.so.1: no instar_plugin_abi_version symbol (not an instar plugin)");
}
