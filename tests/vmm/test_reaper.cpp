// release_in_background (vmm/reaper.h): the releaser closes the descriptors it is given after this
// process has closed its copies (so the last close, the expensive one, is the releaser's), and its
// copies of every other descriptor at once (a pipe on stdout ends with this process, not later).
#include "vmm/reaper.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "vmm_test_support.h"

using instar::vmm::MAX_BACKGROUND_RELEASES;
using instar::vmm::release_in_background;

namespace {

// True when the pipe's read end reaches end of file (every write end closed) within `ms`.
bool reaches_eof(int read_fd, int ms) {
    pollfd p{read_fd, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return false;
    char c;
    return ::read(read_fd, &c, 1) == 0;
}

struct Pipe {
    int fds[2] = {-1, -1};
    Pipe() { REQUIRE(::pipe2(fds, O_CLOEXEC) == 0); }
    ~Pipe() {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
};

} // namespace

TEST_SUITE("reaper") {

TEST_CASE("the released descriptors are closed here and last closed by the releaser; other copies go at once") {
    for (int round = 0; round < 6; ++round) { // more rounds than live releasers: finished ones are reaped
        Pipe released, kept;
        // Held open here a moment: the releaser's copy of it must already be gone when this one closes.
        std::array<int, 1> fds{released.fds[1]};
        REQUIRE(release_in_background(fds));
        errno = 0;
        CHECK(::fcntl(released.fds[1], F_GETFD) == -1); // closed in this process
        CHECK(errno == EBADF);
        released.fds[1] = -1;
        CHECK(reaches_eof(released.fds[0], 5000)); // and then in the releaser
        ::close(kept.fds[1]);
        kept.fds[1] = -1;
        CHECK(reaches_eof(kept.fds[0], 5000)); // the releaser held no copy of it past its start
        ::usleep(20000); // let it exit, so the next round's call can reap it
    }
}

TEST_CASE("refused, leaving the descriptors open: none, too many, repeated, negative") {
    CHECK_FALSE(release_in_background({}));
    Pipe p;
    std::array<int, 2> twice{p.fds[1], p.fds[1]};
    CHECK_FALSE(release_in_background(twice));
    std::array<int, 1> negative{-1};
    CHECK_FALSE(release_in_background(negative));
    std::array<int, MAX_BACKGROUND_RELEASES + 1> many{};
    many.fill(p.fds[1]);
    CHECK_FALSE(release_in_background(many));
    CHECK(::fcntl(p.fds[1], F_GETFD) != -1); // still open here
}

} // TEST_SUITE
