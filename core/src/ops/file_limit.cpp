// Raising the soft open-file limit when an image is made of more files than it allows.
#include "ops/file_limit.h"

#include <dirent.h>
#include <sys/resource.h>

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

} // namespace

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
