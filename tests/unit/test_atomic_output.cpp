// AtomicFiles' two kinds of temporary (unnamed O_TMPFILE files, and named ones with
// INSTAR_NO_TMPFILE=1) and signal_cleanup: a signal removes the named temporaries and still ends the
// process by that signal; a Section defers it; an ignored signal stays ignored.
#include "ops/atomic_output.h"
#include "ops/signal_cleanup.h"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace instar;

namespace {

std::filesystem::path temp_dir() {
    std::string t = (std::filesystem::temp_directory_path() / "instar-atomic-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    return t;
}

std::vector<std::string> entries(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        names.push_back(e.path().filename().string());
    return names;
}

bool has_temporary(const std::filesystem::path& dir) {
    for (const auto& n : entries(dir))
        if (n.find(".instar-") != std::string::npos)
            return true;
    return false;
}

std::string content(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
}

// Sets or clears the test hook for one scope.
struct NoTmpfile {
    explicit NoTmpfile(bool on) {
        if (on)
            ::setenv("INSTAR_NO_TMPFILE", "1", 1);
        else
            ::unsetenv("INSTAR_NO_TMPFILE");
    }
    ~NoTmpfile() { ::unsetenv("INSTAR_NO_TMPFILE"); }
};

// Runs `body` in a child process and returns its wait status. The child gets back the default
// actions doctest's crash handler replaced (SIGINT, SIGTERM), as a command-line process has them.
template <typename F>
int in_child(F body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // The default actions where the cleanup handler is not on them already: doctest catches
        // SIGINT and SIGTERM, and a runner started under nohup ignores SIGHUP (which the cleanup
        // handler then leaves alone, as it should).
        for (const int s : {SIGINT, SIGTERM})
            ::signal(s, SIG_DFL);
        if (struct sigaction old{}; ::sigaction(SIGHUP, nullptr, &old) == 0 && old.sa_handler == SIG_IGN)
            ::signal(SIGHUP, SIG_DFL);
        body();
        ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return status;
}

} // namespace

TEST_CASE("unnamed files have no name until commit, then the image and extent appear") {
    const NoTmpfile hook(false);
    const auto dir = temp_dir();
    {
        AtomicFiles files((dir / "img.vmdk").string());
        auto fd = files.open_image();
        REQUIRE(fd.ok());
        CHECK(::write(*fd, "desc", 4) == 4);
        std::string error;
        REQUIRE(files.add("img-s001.vmdk", error).has_value());
        CHECK(entries(dir).empty()); // nothing to leave behind, even after kill -9
        REQUIRE(files.commit().ok());
    }
    auto names = entries(dir);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"img-s001.vmdk", "img.vmdk"});
    CHECK(std::filesystem::file_size(dir / "img.vmdk") == 4);
    struct stat st{};
    REQUIRE(::stat((dir / "img.vmdk").c_str(), &st) == 0);
    const mode_t mask = ::umask(0);
    ::umask(mask);
    CHECK((st.st_mode & 0777) == (0666 & ~mask));
    std::filesystem::remove_all(dir);
}

TEST_CASE("add_path: a file in another directory, placed with the image or not at all") {
    for (const bool named : {false, true}) {
        const NoTmpfile hook(named);
        const auto dir = temp_dir();
        std::filesystem::create_directory(dir / "img");
        std::filesystem::create_directory(dir / "data");
        {
            AtomicFiles files((dir / "img" / "x.qcow2").string());
            REQUIRE(files.open_image().ok());
            auto data = files.add_path((dir / "data" / "x.raw").string());
            REQUIRE(data.ok());
            CHECK(::write(*data, "raw", 3) == 3);
            // The image itself, a second time, or a device cannot be a further file.
            CHECK_FALSE(files.add_path((dir / "img" / "x.qcow2").string()).ok());
            CHECK_FALSE(files.add_path((dir / "data" / "x.raw").string()).ok());
            CHECK(files.add_path("/dev/null").error() == "Could not resize image: Cannot grow device files");
            REQUIRE(files.commit().ok());
        }
        CHECK(content(dir / "data" / "x.raw") == "raw");
        CHECK(std::filesystem::exists(dir / "img" / "x.qcow2"));
        CHECK_FALSE(has_temporary(dir / "data"));
        {
            AtomicFiles files((dir / "img" / "y.qcow2").string());
            REQUIRE(files.open_image().ok());
            REQUIRE(files.add_path((dir / "data" / "y.raw").string()).ok());
            // No commit: neither file appears.
        }
        CHECK_FALSE(std::filesystem::exists(dir / "data" / "y.raw"));
        CHECK_FALSE(std::filesystem::exists(dir / "img" / "y.qcow2"));
        CHECK_FALSE(has_temporary(dir / "data"));
        std::filesystem::remove_all(dir);
    }
}

TEST_CASE("an unnamed file replaces an existing target in one step and leaves no name behind") {
    const NoTmpfile hook(false);
    const auto dir = temp_dir();
    std::ofstream(dir / "keep.img") << "old";
    {
        AtomicFiles files((dir / "keep.img").string());
        auto fd = files.open_image();
        REQUIRE(fd.ok());
        CHECK(::write(*fd, "new\n", 4) == 4);
        CHECK(content(dir / "keep.img") == "old");
        REQUIRE(files.commit().ok());
    }
    CHECK(content(dir / "keep.img") == "new");
    CHECK(entries(dir) == std::vector<std::string>{"keep.img"});
    std::filesystem::remove_all(dir);
}

TEST_CASE("replaced files are swapped out; a failure part-way swaps every one of them back") {
    for (const bool named : {false, true}) {
        const NoTmpfile hook(named);
        const auto dir = temp_dir();
        std::filesystem::create_directory(dir / "img");
        std::filesystem::create_directory(dir / "data");
        std::ofstream(dir / "data" / "x.raw") << "old data";
        std::ofstream(dir / "img" / "x.qcow2") << "old image";
        {
            AtomicFiles files((dir / "img" / "x.qcow2").string());
            auto image = files.open_image();
            REQUIRE(image.ok());
            CHECK(::write(*image, "new image\n", 10) == 10);
            auto data = files.add_path((dir / "data" / "x.raw").string());
            REQUIRE(data.ok());
            CHECK(::write(*data, "new data\n", 9) == 9);
            REQUIRE(files.commit().ok());
        }
        CHECK(content(dir / "data" / "x.raw") == "new data");
        CHECK(content(dir / "img" / "x.qcow2") == "new image");
        CHECK(entries(dir / "data") == std::vector<std::string>{"x.raw"});
        CHECK(entries(dir / "img") == std::vector<std::string>{"x.qcow2"});
        {
            AtomicFiles files((dir / "img" / "y.qcow2").string());
            REQUIRE(files.open_image().ok());
            auto data = files.add_path((dir / "data" / "x.raw").string());
            REQUIRE(data.ok());
            CHECK(::write(*data, "newer data\n", 11) == 11);
            // The image cannot be placed (a directory took its name): the data file, placed first,
            // is swapped back.
            std::filesystem::create_directory(dir / "img" / "y.qcow2");
            CHECK_FALSE(files.commit().ok());
        }
        CHECK(content(dir / "data" / "x.raw") == "new data");
        CHECK(entries(dir / "data") == std::vector<std::string>{"x.raw"});
        CHECK_FALSE(has_temporary(dir / "img"));
        std::filesystem::remove_all(dir);
    }
}

TEST_CASE("with INSTAR_NO_TMPFILE=1 the files are named temporaries, removed without commit") {
    const NoTmpfile hook(true);
    const auto dir = temp_dir();
    std::ofstream(dir / "keep.img") << "precious";
    {
        AtomicFiles files((dir / "keep.img").string());
        REQUIRE(files.open_image().ok());
        std::string error;
        REQUIRE(files.add("extra", error).has_value());
        CHECK(entries(dir).size() == 3);
        CHECK(has_temporary(dir));
    }
    CHECK(entries(dir) == std::vector<std::string>{"keep.img"});
    CHECK(content(dir / "keep.img") == "precious");
    std::filesystem::remove_all(dir);
}

TEST_CASE("SIGTERM removes the named temporaries and ends the process by SIGTERM") {
    const NoTmpfile hook(true);
    const auto dir = temp_dir();
    std::ofstream(dir / "keep.img") << "precious";
    const int status = in_child([&] {
        AtomicFiles files((dir / "keep.img").string());
        std::string error;
        if (!files.open_image().ok() || !files.add("keep-s001.img", error) || entries(dir).size() != 3)
            ::_exit(3);
        ::raise(SIGTERM);
        ::_exit(4); // not reached
    });
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGTERM);
    CHECK(entries(dir) == std::vector<std::string>{"keep.img"});
    CHECK(content(dir / "keep.img") == "precious");
    std::filesystem::remove_all(dir);
}

TEST_CASE("a signal during a Section waits for its end") {
    const NoTmpfile hook(true);
    const auto dir = temp_dir();
    const auto marker = dir / "reached";
    const int status = in_child([&] {
        {
            signal_cleanup::Section section;
            ::raise(SIGHUP);
            std::ofstream(marker) << "still running";
        }
        ::_exit(4); // not reached: the Section's end acts on the signal
    });
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGHUP);
    CHECK(std::filesystem::exists(marker));
    std::filesystem::remove_all(dir);
}

TEST_CASE("a signal ignored before the first file stays ignored") {
    const NoTmpfile hook(true);
    const auto dir = temp_dir();
    const int status = in_child([&] {
        ::signal(SIGHUP, SIG_IGN);
        AtomicFiles files((dir / "x.img").string());
        if (!files.open_image().ok())
            ::_exit(3);
        ::raise(SIGHUP);
        if (!files.commit().ok())
            ::_exit(5);
    });
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(entries(dir) == std::vector<std::string>{"x.img"});
    std::filesystem::remove_all(dir);
}

TEST_CASE("the registry takes paths up to its bound and frees slots for reuse") {
    static const char PATH[] = "/nonexistent-instar-dir/.x.instar-AAAAAA";
    std::vector<int> slots;
    {
        signal_cleanup::Section section;
        for (int i = 0; i < 3; ++i)
            slots.push_back(signal_cleanup::register_path(PATH));
    }
    CHECK(slots[0] >= 0);
    CHECK(slots[1] != slots[0]);
    CHECK(slots[2] != slots[1]);
    for (const int s : slots)
        signal_cleanup::unregister(s);
    CHECK(signal_cleanup::MAX_TEMP_PATHS == 2 * (INSTAR_MAX_ADDED_FILES + 1));
}

TEST_CASE("SIGTERM at any moment of a create-and-commit loop leaves no temporary") {
    // Catches the windows between creating, registering, placing and forgetting a file.
    for (const bool named : {false, true}) {
        const NoTmpfile hook(named);
        const auto dir = temp_dir();
        for (int round = 0; round < 25; ++round) {
            // SIGTERM stays blocked until the child has dropped doctest's handler (which would
            // report the signal as a crash of the test case).
            sigset_t term, old;
            sigemptyset(&term);
            sigaddset(&term, SIGTERM);
            ::sigprocmask(SIG_BLOCK, &term, &old);
            const pid_t pid = ::fork();
            if (pid == 0) {
                for (const int s : {SIGINT, SIGTERM})
                    ::signal(s, SIG_DFL);
                ::sigprocmask(SIG_SETMASK, &old, nullptr);
                for (;;) {
                    AtomicFiles files((dir / "x.img").string());
                    std::string error;
                    if (!files.open_image().ok() || !files.add("x-s001.img", error) || !files.commit().ok())
                        ::_exit(3);
                }
            }
            ::sigprocmask(SIG_SETMASK, &old, nullptr);
            REQUIRE(pid >= 0);
            ::usleep(static_cast<useconds_t>(2000 + round * 400));
            ::kill(pid, SIGTERM);
            int status = 0;
            REQUIRE(::waitpid(pid, &status, 0) == pid);
            CHECK(WIFSIGNALED(status));
            CHECK_FALSE(has_temporary(dir));
        }
        std::filesystem::remove_all(dir);
    }
}

TEST_CASE("a symbolic link as the target is written through (qemu's open(O_CREAT)), the link stays") {
    for (const bool named : {false, true}) {
        const NoTmpfile hook(named);
        const auto dir = temp_dir();
        std::filesystem::create_directory(dir / "real");
        { std::ofstream(dir / "real" / "t") << "old\n"; }
        std::filesystem::create_symlink("real/t", dir / "L");   // relative, to an existing file
        std::filesystem::create_symlink("L", dir / "LL");       // a chain
        std::filesystem::create_symlink("real/new", dir / "D"); // dangling: the file is created
        std::filesystem::create_symlink("LOOP2", dir / "LOOP");
        std::filesystem::create_symlink("LOOP", dir / "LOOP2");
        for (const char* name : {"LL", "D"}) {
            AtomicFiles files((dir / name).string());
            auto fd = files.open_image();
            REQUIRE(fd.ok());
            CHECK(::write(*fd, "new\n", 4) == 4);
            REQUIRE(files.commit().ok());
        }
        CHECK(std::filesystem::is_symlink(dir / "L"));
        CHECK(std::filesystem::is_symlink(dir / "LL"));
        CHECK(std::filesystem::is_symlink(dir / "D"));
        CHECK(content(dir / "real" / "t") == "new");
        CHECK(content(dir / "real" / "new") == "new");
        CHECK(!has_temporary(dir));
        CHECK(!has_temporary(dir / "real"));
        AtomicFiles loop((dir / "LOOP").string());
        auto bad = loop.open_image();
        REQUIRE(!bad.ok());
        CHECK(bad.error().find("Too many levels of symbolic links") != std::string::npos);
        std::filesystem::remove_all(dir);
    }
}
