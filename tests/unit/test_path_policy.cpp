// The path policy against the attacks in the security design: host files, escapes, protocol and
// json: names, device nodes, FIFOs, symlinks out of the tree.
#include "chain/path_policy.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace instar;

namespace {

struct Tree {
    fs::path root;
    Tree() {
        char tmpl[] = "/tmp/instar-policy-XXXXXX";
        root = ::mkdtemp(tmpl);
        fs::create_directories(root / "img" / "sub");
        fs::create_directories(root / "other");
        for (const char* f : {"img/top.q", "img/base.q", "img/sub/deep.q", "other/secret"})
            std::ofstream(root / f) << "data";
    }
    ~Tree() { fs::remove_all(root); }
    std::string top() const { return (root / "img" / "top.q").string(); }
};

std::string refuse(const Tree& t, const std::string& name, const PathPolicy* custom = nullptr) {
    auto policy = default_policy(t.top(), {});
    REQUIRE(policy);
    auto f = open_referenced(custom ? *custom : *policy, t.top(), "backing file", name);
    if (f) {
        close_file(*f);
        return "";
    }
    return f.error();
}

} // namespace

TEST_CASE("names inside the image's directory tree are allowed") {
    Tree t;
    CHECK(refuse(t, "base.q") == "");
    CHECK(refuse(t, "sub/deep.q") == "");
    CHECK(refuse(t, (t.root / "img" / "base.q").string()) == "");
    auto policy = default_policy(t.top(), {});
    auto f = open_referenced(*policy, t.top(), "backing file", "sub/../base.q");
    REQUIRE(f);
    CHECK(f->display == (t.root / "img" / "sub/../base.q").string());
    CHECK(f->size == 4);
    close_file(*f);
}

TEST_CASE("host files and escapes are refused with image, field, path and reason") {
    Tree t;
    const std::string shadow = refuse(t, "/etc/shadow");
    CHECK(shadow == t.top() + ": backing file '/etc/shadow' refused: outside the allowed directories (" +
                        (t.root / "img").string() + "; --allow-path DIR adds one)");
    CHECK(refuse(t, "../other/secret").find("outside the allowed directories") != std::string::npos);
    CHECK(refuse(t, "/dev/zero").find("outside") != std::string::npos);
}

TEST_CASE("protocol and json: names are never followed") {
    Tree t;
    CHECK(refuse(t, "json:{\"driver\":\"file\",\"filename\":\"/etc/shadow\"}").find("json: pseudo-protocol") !=
          std::string::npos);
    CHECK(refuse(t, "nbd:localhost:10809").find("protocol names (nbd:)") != std::string::npos);
    CHECK(refuse(t, "http://example.com/x").find("protocol names (http:)") != std::string::npos);
    CHECK(refuse(t, "").find("empty name") != std::string::npos);
    CHECK(refuse(t, std::string("base.q\0x", 8)).find("NUL") != std::string::npos);
}

TEST_CASE("a file: backing name is its path from the working directory, through the policy") {
    Tree t;
    auto policy = default_policy(t.top(), {});
    REQUIRE(policy);
    const fs::path before = fs::current_path();
    fs::current_path(t.root / "img" / "sub");
    // From the working directory, not the image's: "file:deep.q" is img/sub/deep.q here.
    auto f = open_referenced(*policy, t.top(), "backing file", "file:deep.q");
    CHECK(f);
    if (f) {
        CHECK(f->display == "deep.q");
        CHECK(f->reference == "file:deep.q");
        close_file(*f);
    }
    CHECK(refuse(t, "file:base.q").find("No such file or directory") != std::string::npos);
    CHECK(refuse(t, "file:../base.q") == "");
    // The rest is a plain path: the policy still decides, and a second protocol is a file's name.
    CHECK(refuse(t, "file:/etc/passwd").find("outside the allowed directories") != std::string::npos);
    CHECK(refuse(t, "file:nbd:x").find("No such file or directory") != std::string::npos);
    CHECK(refuse(t, "file:").find("empty name") != std::string::npos);
    // Only backing names: qemu opens a data file name as a file name, joins an extent's to its
    // descriptor's directory.
    for (const char* field : {"data file", "extent file"}) {
        auto g = open_referenced(*policy, t.top(), field, "file:deep.q", true);
        CHECK_FALSE(g);
        if (!g)
            CHECK(g.error().find("protocol names (file:)") != std::string::npos);
    }
    fs::current_path(before);
}

TEST_CASE("full backing file names as qemu prints them") {
    CHECK(has_protocol("file:x"));
    CHECK(has_protocol("nbd:host:1"));
    CHECK_FALSE(has_protocol("dir/a:b"));
    CHECK_FALSE(has_protocol("plain.qcow2"));
    CHECK(full_backing_filename("/d/top.qcow2", "base.qcow2") == "/d/base.qcow2");
    CHECK(full_backing_filename("/d/top.qcow2", "/abs/base.qcow2") == "/abs/base.qcow2");
    CHECK(full_backing_filename("/d/top.qcow2", "file:base.qcow2") == "file:base.qcow2");
    CHECK(full_backing_filename("top.qcow2", "base.qcow2") == "base.qcow2");
}

TEST_CASE("symlinks pointing out of the tree are refused") {
    Tree t;
    fs::create_symlink(t.root / "other" / "secret", t.root / "img" / "link.q");
    CHECK(refuse(t, "link.q").find("outside") != std::string::npos);
    fs::create_directory_symlink(t.root / "other", t.root / "img" / "dirlink");
    CHECK(refuse(t, "dirlink/secret").find("outside") != std::string::npos);
}

TEST_CASE("non-regular files are refused, and a FIFO does not hang") {
    Tree t;
    REQUIRE(::mkfifo((t.root / "img" / "fifo").c_str(), 0600) == 0);
    CHECK(refuse(t, "fifo").find("not a regular file") != std::string::npos);
    fs::create_directory(t.root / "img" / "adir");
    CHECK(refuse(t, "adir").find("not a regular file") != std::string::npos);
    CHECK(refuse(t, "missing.q").find("No such file or directory") != std::string::npos);
}

TEST_CASE("--allow-path adds a root; a bad one is an error") {
    Tree t;
    auto policy = default_policy(t.top(), {(t.root / "other").string()});
    REQUIRE(policy);
    auto f = open_referenced(*policy, t.top(), "backing file", "../other/secret");
    REQUIRE(f);
    close_file(*f);
    CHECK_FALSE(default_policy(t.top(), {(t.root / "nope").string()}));
}

TEST_CASE("combine_path is qemu's path_combine") {
    CHECK(combine_path("ov.q", "base.q") == "base.q");
    CHECK(combine_path("dir/ov.q", "base.q") == "dir/base.q");
    CHECK(combine_path("/a/b/ov.q", "../base.q") == "/a/b/../base.q");
    CHECK(combine_path("dir/ov.q", "/abs/base.q") == "/abs/base.q");
}

TEST_CASE("user-named files: qemu's message") {
    auto f = open_user_file("/nonexistent/x.q");
    REQUIRE_FALSE(f);
    CHECK(f.error() == "Could not open '/nonexistent/x.q': Could not open '/nonexistent/x.q': No such file or directory");
}
