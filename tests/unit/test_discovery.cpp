// Plugin discovery: search order, the build-tree rule, env path, and each kind of broken plugin.
#include "plugins/discovery.h"
#include "plugins/manifest.h"
#include "plugins/plugin_index.h"
#include "plugins/registry.h"

#include <instar/plugin.h>

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
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
    CHECK(w.lines[0] == "skipping plugin " + abi.string() + ": built for plugin ABI 999, this instar speaks plugin ABI " +
                              std::to_string(INSTAR_PLUGIN_ABI_VERSION));
    CHECK(w.lines[1] == "skipping plugin " + nofactory.string() + ": no instar_format_plugin_v7 factory");
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

namespace {

// Whether this process has `file` mapped (i.e. the plugin was dlopen'ed).
bool mapped(const fs::path& file) {
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);)
        if (line.find(file.string()) != std::string::npos)
            return true;
    return false;
}

void write_manifest_for(const fs::path& so) {
    PluginRegistry reg;
    Collected w;
    REQUIRE(reg.load(so, w.sink()));
    const std::string text = manifest_text(*reg.plugins()[0], so);
    REQUIRE_FALSE(text.empty());
    std::ofstream(so.string() + MANIFEST_SUFFIX) << text;
}

} // namespace

TEST_CASE("manifest: a plugin with a current manifest is loaded only when a command needs it") {
    TempDir d;
    const auto good = d.add(TEST_PLUGIN_GOOD, "good.so");
    const auto last = d.add(TEST_PLUGIN_GOOD_LAST, "last.so");
    write_manifest_for(good);
    write_manifest_for(last);
    REQUIRE_FALSE(mapped(good)); // write_manifest_for's registry is gone, and with it the library
    Collected w;
    auto reg = PluginRegistry::discover({"/usr/bin/instar", d.path, "/nonexistent-build", ""}, w.sink());
    CHECK(w.lines.empty());
    REQUIRE(reg.entries().size() == 2);
    CHECK(reg.entries()[0].name() == "testfmt"); // probe order from the manifests' priorities
    CHECK(reg.entries()[1].name() == "aaalast");
    CHECK(reg.entries()[0].answers_to("tf"));
    CHECK_FALSE(mapped(good));
    CHECK_FALSE(mapped(last));
    // The manifest's probe rules are the descriptor's.
    PluginRegistry eager;
    REQUIRE(eager.load(good, w.sink()));
    const auto rules = reg.entries()[0].probe_rules();
    REQUIRE(rules.size() == eager.plugins()[0]->probe_rule_count);
    REQUIRE(rules.size() == 2);
    CHECK(rules[1].matches[1].compare == ProbeMatch::AtLeast); // "atleast" read back from the manifest
    CHECK(rules[0].flags == 0);
    CHECK(rules[1].flags == PROBE_RULE_EXTENSION); // "rule extension" read back
    for (std::size_t r = 0; r < rules.size(); ++r) {
        const ProbeRule& want = eager.plugins()[0]->probe_rules[r];
        CHECK(rules[r].flags == want.flags);
        REQUIRE(rules[r].match_count == want.match_count);
        for (std::uint32_t m = 0; m < want.match_count; ++m) {
            CHECK(rules[r].matches[m].anchor == want.matches[m].anchor);
            CHECK(rules[r].matches[m].offset == want.matches[m].offset);
            CHECK(rules[r].matches[m].compare == want.matches[m].compare);
            REQUIRE(rules[r].matches[m].length == want.matches[m].length);
            CHECK(std::memcmp(rules[r].matches[m].bytes, want.matches[m].bytes, want.matches[m].length) == 0);
        }
    }
    eager = PluginRegistry();
    CHECK_FALSE(mapped(good));
    const LoadedPlugin* p = reg.find("tf");
    REQUIRE(p != nullptr);
    CHECK(std::string((*p)->name) == "testfmt");
    CHECK(mapped(good));
    CHECK_FALSE(mapped(last));
    CHECK(reg.find("nope") == nullptr);
    REQUIRE(reg.plugins().size() == 2); // `instar formats`: everything
    CHECK(mapped(last));
    CHECK(w.lines.empty());
}

TEST_CASE("manifest: a stale, garbled or forged manifest never hides a plugin or its warning") {
    TempDir d;
    const auto good = d.add(TEST_PLUGIN_GOOD, "a-good.so");
    const auto last = d.add(TEST_PLUGIN_GOOD_LAST, "b-last.so");
    const auto abi = d.add(TEST_PLUGIN_WRONG_ABI, "c-abi.so");
    write_manifest_for(good);
    write_manifest_for(last);
    // Stale: the plugin changed after its manifest was written.
    fs::last_write_time(good, fs::last_write_time(good) + std::chrono::seconds(5));
    // Garbled: cut off mid-line.
    {
        std::ifstream in(last.string() + MANIFEST_SUFFIX);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(last.string() + MANIFEST_SUFFIX) << text.substr(0, text.size() - 3);
    }
    // Forged: a broken plugin with a manifest copied from a good one (its identity fixed up).
    {
        std::ifstream in(good.string() + MANIFEST_SUFFIX);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        struct stat st {};
        REQUIRE(::stat(abi.c_str(), &st) == 0);
        const auto file_line = text.find("file ");
        const auto end = text.find('\n', file_line);
        text.replace(file_line, end - file_line,
                     "file " + std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + " " +
                         std::to_string(st.st_mtim.tv_nsec));
        const auto name = text.find("name testfmt");
        text.replace(name, 12, "name forged");
        for (std::size_t a; (a = text.find("alias ")) != std::string::npos;)
            text.erase(a, text.find('\n', a) + 1 - a);
        std::ofstream(abi.string() + MANIFEST_SUFFIX) << text;
    }
    Collected w;
    auto reg = PluginRegistry::discover({"/usr/bin/instar", d.path, "/nonexistent-build", ""}, w.sink());
    CHECK(mapped(good)); // stale: loaded at discovery
    CHECK(mapped(last)); // garbled: loaded at discovery
    CHECK(w.lines.empty()); // the forged one is not loaded yet...
    CHECK(reg.find("forged") == nullptr); // ...and says why when a command needs it
    REQUIRE(w.lines.size() == 1);
    CHECK(w.lines[0] == "skipping plugin " + abi.string() + ": built for plugin ABI 999, this instar speaks plugin ABI " +
                              std::to_string(INSTAR_PLUGIN_ABI_VERSION));
    REQUIRE(reg.plugins().size() == 2);
    CHECK(w.lines.size() == 1); // warned once
}

TEST_CASE("manifest: a name taken by an earlier plugin is refused at discovery, as without one") {
    TempDir d;
    const auto first = d.add(TEST_PLUGIN_GOOD, "a.so");
    const auto second = d.add(TEST_PLUGIN_GOOD, "b.so");
    write_manifest_for(first);
    write_manifest_for(second);
    Collected w;
    auto reg = PluginRegistry::discover({"/usr/bin/instar", d.path, "/nonexistent-build", ""}, w.sink());
    REQUIRE(w.lines.size() == 1);
    CHECK(w.lines[0] == "skipping plugin " + second.string() + ": format 'testfmt' is already provided by " +
                            first.string());
    CHECK(reg.entries().size() == 1);
}

namespace {

std::string manifest_of(const fs::path& so) {
    PluginRegistry reg;
    Collected w;
    if (!reg.load(so, w.sink()))
        return {};
    return manifest_text(*reg.plugins()[0], so);
}

// Writes the index of `source` for the plugins a scan would find, as instar-plugin-manifest does.
void write_index_for(const PluginSource& source) {
    std::vector<std::pair<fs::path, std::string>> manifests;
    for (const auto& dir : source_dirs(source))
        for (const auto& so : plugin_files_in(dir))
            manifests.emplace_back(so, manifest_of(so));
    const std::string text = index_text(source, manifests);
    REQUIRE_FALSE(text.empty());
    std::ofstream(source.root.string() + INDEX_SUFFIX) << text;
}

std::string slurp(const fs::path& f) {
    std::ifstream in(f);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("index: one file stands for the directory's listing and manifests") {
    TempDir d;
    const fs::path dir = d.path / "plugins";
    fs::create_directory(dir);
    const auto good = dir / "a-good.so";
    const auto last = dir / "b-last.so";
    const auto abi = dir / "c-abi.so";
    fs::copy_file(TEST_PLUGIN_GOOD, good);
    fs::copy_file(TEST_PLUGIN_GOOD_LAST, last);
    fs::copy_file(TEST_PLUGIN_WRONG_ABI, abi);
    write_index_for({dir, false}); // no per-plugin manifests: what discovery knows comes from the index
    const auto indexed = read_plugin_index({dir, false});
    REQUIRE(indexed.has_value());
    REQUIRE(indexed->size() == 3);
    CHECK((*indexed)[0].file == good);
    CHECK((*indexed)[0].manifest != nullptr);
    CHECK((*indexed)[2].manifest == nullptr); // could not be loaded: loaded (and warned about) at discovery
    Collected w;
    auto reg = PluginRegistry::discover({"/usr/bin/instar", dir, "/nonexistent-build", ""}, w.sink());
    REQUIRE(w.lines.size() == 1);
    CHECK(w.lines[0] == "skipping plugin " + abi.string() + ": built for plugin ABI 999, this instar speaks plugin ABI " +
                              std::to_string(INSTAR_PLUGIN_ABI_VERSION));
    REQUIRE(reg.entries().size() == 2);
    CHECK(reg.entries()[0].name() == "testfmt");
    CHECK(reg.entries()[1].name() == "aaalast");
    CHECK_FALSE(mapped(good));
    CHECK_FALSE(mapped(last));
    REQUIRE(reg.find("tf") != nullptr);
    CHECK(mapped(good));
}

TEST_CASE("index: a plugin added, or one changed since, makes discovery scan") {
    TempDir d;
    const fs::path dir = d.path / "plugins";
    fs::create_directory(dir);
    const auto good = dir / "a-good.so";
    fs::copy_file(TEST_PLUGIN_GOOD, good);
    write_index_for({dir, false});
    REQUIRE(read_plugin_index({dir, false}).has_value());
    SUBCASE("added") {
        // The directory's modification time changes (set explicitly: a fast file system may not tick).
        fs::copy_file(TEST_PLUGIN_GOOD_LAST, dir / "b-last.so");
        fs::last_write_time(dir, fs::last_write_time(dir) + std::chrono::seconds(5));
        CHECK_FALSE(read_plugin_index({dir, false}).has_value());
        Collected w;
        auto reg = PluginRegistry::discover({"/usr/bin/instar", dir, "/nonexistent-build", ""}, w.sink());
        CHECK(reg.entries().size() == 2);
    }
    SUBCASE("changed") {
        fs::last_write_time(good, fs::last_write_time(good) + std::chrono::seconds(5));
        CHECK_FALSE(read_plugin_index({dir, false}).has_value());
    }
    SUBCASE("garbled") {
        const std::string text = slurp(dir.string() + INDEX_SUFFIX);
        std::ofstream(dir.string() + INDEX_SUFFIX) << text.substr(0, text.size() - 3);
        CHECK_FALSE(read_plugin_index({dir, false}).has_value());
    }
    SUBCASE("a path outside the directory") {
        std::string text = slurp(dir.string() + INDEX_SUFFIX);
        const auto at = text.find("plugin a-good.so");
        REQUIRE(at != std::string::npos);
        text.replace(at, 16, "plugin ../plugins/a-good.so");
        std::ofstream(dir.string() + INDEX_SUFFIX) << text;
        CHECK_FALSE(read_plugin_index({dir, false}).has_value());
    }
}

TEST_CASE("index: a build tree's plugins/ subdirectories in one index") {
    TempDir build;
    const fs::path root = build.path / "plugins";
    fs::create_directories(root / "raw");
    fs::create_directories(root / "qcow2");
    fs::copy_file(TEST_PLUGIN_GOOD_LAST, root / "raw" / "last.so");
    fs::copy_file(TEST_PLUGIN_GOOD, root / "qcow2" / "good.so");
    write_index_for({root, true});
    const auto indexed = read_plugin_index({root, true});
    REQUIRE(indexed.has_value());
    REQUIRE(indexed->size() == 2);
    CHECK((*indexed)[0].file == root / "qcow2" / "good.so");
    CHECK((*indexed)[1].file == root / "raw" / "last.so");
    Collected w;
    auto reg = PluginRegistry::discover({build.path / "tools" / "instar" / "instar", "/nonexistent", build.path, ""},
                                        w.sink());
    CHECK(w.lines.empty());
    REQUIRE(reg.entries().size() == 2);
    CHECK_FALSE(mapped(root / "qcow2" / "good.so"));
}

TEST_CASE("a missing in-tree plugin is named by its distribution package") {
    CHECK(instar::missing_plugin_hint("vmdk") ==
          " (its plugin is not installed: install the package instar-plugin-vmdk)");
    CHECK(instar::missing_plugin_hint("vpc") == " (its plugin is not installed: install the package instar-plugin-vhd)");
    // Every plugin meson.build builds in tree has a package; a format no in-tree plugin reads has none.
    CHECK(instar::missing_plugin_hint("qed") == " (its plugin is not installed: install the package instar-plugin-qed)");
    CHECK(instar::missing_plugin_hint("vvfat").empty());
    CHECK(instar::missing_plugin_hint("vhd").empty()); // the plugin's directory, not a format name
    CHECK(instar::missing_plugin_hint("").empty());
}
