// Temporary files beside their targets, renamed into place on commit, removed otherwise.
#include "ops/atomic_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace instar {
namespace {

// The permissions qemu-img gives a new file: 0644 under the usual umask.
mode_t creation_mode() {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    return 0666 & ~mask;
}

std::string base_name(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

AtomicFiles::AtomicFiles(std::string image) : image_(std::move(image)) {
    const auto slash = image_.rfind('/');
    dir_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : image_.substr(0, slash));
}

AtomicFiles::~AtomicFiles() {
    for (File& f : files_) {
        if (f.fd >= 0)
            ::close(f.fd);
        if (!committed_)
            ::unlink(f.temp_path.c_str());
    }
}

Expected<int> AtomicFiles::create(const std::string& final_path) {
    // A dot-name in the same directory: same filesystem (rename is atomic) and hidden from globs.
    std::string temp = (dir_ == "/" ? "/" : dir_ + "/") + "." + base_name(final_path) + ".instar-XXXXXX";
    const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
    if (fd < 0)
        return Error{"Could not create '" + final_path + "': " + std::strerror(errno)};
    files_.push_back({final_path, temp, fd});
    if (::fchmod(fd, creation_mode()) != 0)
        return Error{"Could not create '" + final_path + "': " + std::strerror(errno)};
    return fd;
}

Expected<int> AtomicFiles::open_image() { return create(image_); }

std::optional<vmm::Device> AtomicFiles::add(const std::string& name, std::string& error) {
    const std::string path = (dir_ == "/" ? "/" : dir_ + "/") + name;
    for (const File& f : files_)
        if (base_name(f.final_path) == name) {
            error = "Could not create '" + path + "': the image already has a file of that name";
            return std::nullopt;
        }
    auto fd = create(path);
    if (!fd) {
        error = fd.error();
        return std::nullopt;
    }
    return vmm::output_device(*fd);
}

Expected<bool> AtomicFiles::commit() {
    for (const File& f : files_)
        if (::fdatasync(f.fd) != 0)
            return Error{"Could not write '" + f.final_path + "': " + std::strerror(errno)};
    for (std::size_t k = 1; k <= files_.size(); ++k) {
        const File& f = files_[k % files_.size()]; // added files 1..n-1, then the image (0)
        if (::rename(f.temp_path.c_str(), f.final_path.c_str()) != 0)
            return Error{"Could not create '" + f.final_path + "': " + std::strerror(errno)};
    }
    committed_ = true;
    return true;
}

} // namespace instar
