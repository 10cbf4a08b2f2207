// Raising the soft open-file limit when an image is made of more files than it allows.
#include "ops/file_limit.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/resource.h>

#include <cstdlib>
#include <string>

namespace instar {
namespace {

// Descriptors beyond the image's files: the sandbox (KVM, vCPU, VM memory, the watchdog), the
// standard streams, plugin libraries and a backing chain. Generous: slots are cheap.
constexpr std::size_t SPARE_FILES = 256;

std::size_t open_now() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d) != nullptr)
            ++n;
        ::closedir(d);
    }
    return n;
}

// The highest descriptor open now (-1: none, or /proc is not there).
long highest_open() {
    long high = -1;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        const int own = ::dirfd(d);
        while (const dirent* e = ::readdir(d)) {
            char* end = nullptr;
            const long fd = std::strtol(e->d_name, &end, 10);
            if (end != e->d_name && *end == 0 && fd != own && fd > high)
                high = fd;
        }
        ::closedir(d);
    }
    return high;
}

std::string too_many(std::size_t count, std::size_t limit) {
    return "the image needs " + std::to_string(count) + " files open at once, more than the open-file limit allows (" +
           std::to_string(limit) + "; raise it with ulimit -Hn)";
}

} // namespace

std::size_t fd_block_count(std::size_t first, std::size_t count) {
    std::size_t n = 0;
    for (std::size_t at = first, end = first + count; at < end; ++n) {
        std::size_t size = 1;
        while (at % (size * 2) == 0 && at + size * 2 <= end)
            size *= 2;
        at += size;
    }
    return n;
}

Expected<FdBlock> FdBlock::reserve(std::size_t count) {
    FdBlock b;
    const long high = highest_open();
    const std::size_t lowest = static_cast<std::size_t>(high + 1);
    struct rlimit lim{};
    const bool known = ::getrlimit(RLIMIT_NOFILE, &lim) == 0;
    // Descriptors above the block: the sandbox's (KVM, vCPU, watchdog) and added output files,
    // which the sandbox places above every device (vcpu_thread.h, BrokeredOutputs).
    const std::size_t hard = !known || lim.rlim_max == RLIM_INFINITY ? std::size_t{1} << 30
                                                                    : static_cast<std::size_t>(lim.rlim_max);
    // Candidate bases: the lowest free number rounded up to each power of two. The fewest blocks
    // wins (a count of 15360 from a multiple of 1024 is 4), then the lowest base.
    std::size_t best = 0, best_blocks = 0;
    for (std::size_t align = 1; align <= (std::size_t{1} << 20); align *= 2) {
        const std::size_t base = (lowest + align - 1) / align * align;
        if (base + count + SPARE_FILES > hard)
            break;
        const std::size_t blocks = fd_block_count(base, count);
        if (best_blocks == 0 || blocks < best_blocks) {
            best = base;
            best_blocks = blocks;
        }
    }
    if (best_blocks == 0 && count > 0)
        return Error{too_many(count, hard)};
    b.base_ = b.next_ = static_cast<int>(best);
    const std::size_t need = best + count + SPARE_FILES;
    if (known && lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need) {
        lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? need : lim.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &lim) != 0)
            return Error{too_many(count, static_cast<std::size_t>(lim.rlim_cur))};
    }
    return b;
}

int FdBlock::place(int fd) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, next_);
    if (moved < 0)
        return fd;
    ::close(fd);
    next_ = moved + 1;
    return moved;
}

Expected<bool> reserve_open_files(std::size_t more) {
    struct rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return true; // unknown: let open() report what happens
    const std::size_t need = open_now() + more + SPARE_FILES;
    if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= need)
        return true;
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need)
        return Error{"the image needs " + std::to_string(more) + " files open at once, more than the open-file limit allows (" +
                     std::to_string(lim.rlim_max) + "; raise it with ulimit -Hn)"};
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? need : lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0)
        return Error{"the image needs " + std::to_string(more) + " files open at once, more than the open-file limit allows (" +
                     std::to_string(lim.rlim_cur) + ")"};
    return true;
}

bool raise_open_file_limit(std::size_t* limit) {
    struct rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return false;
    *limit = static_cast<std::size_t>(lim.rlim_cur);
    if (lim.rlim_cur == lim.rlim_max)
        return false;
    lim.rlim_cur = lim.rlim_max;
    return ::setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

} // namespace instar
