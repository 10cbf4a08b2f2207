// Temporary files beside their targets, renamed into place on commit, removed otherwise.
#include "ops/atomic_output.h"

#include "ops/file_limit.h"

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

// Up to this many files are flushed one by one; beyond it one syncfs is far faster (each
// fdatasync waits for its own journal commit: 32768 vmdk extents took minutes).
constexpr std::size_t SYNC_EACH_MAX = 16;

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
    const std::string pattern = temp; // a failed mkostemp may leave its letters in the name
    int fd = ::mkostemp(temp.data(), O_CLOEXEC);
    if (fd < 0 && errno == EMFILE) { // a vmdk's many extents: all stay open until commit()
        std::size_t limit = 0;
        if (!raise_open_file_limit(&limit))
            return Error{"Could not create '" + final_path + "': the image needs more files open at once than the " +
                         "open-file limit allows (" + std::to_string(limit) + "; raise it with ulimit -Hn)"};
        temp = pattern;
        fd = ::mkostemp(temp.data(), O_CLOEXEC);
    }
    if (fd < 0)
        return Error{"Could not create '" + final_path + "': " + std::strerror(errno)};
    files_.push_back({final_path, temp, fd});
    if (::fchmod(fd, creation_mode()) != 0)
        return Error{"Could not create '" + final_path + "': " + std::strerror(errno)};
    return fd;
}

Expected<int> AtomicFiles::open_image() { return create(image_); }

std::optional<vmm::Device> AtomicFiles::add(const std::string& name, std::string& error) {
    // qemu's path_combine: the image's own directory prefix, none when the image has none.
    const auto slash = image_.rfind('/');
    const std::string path = (slash == std::string::npos ? "" : image_.substr(0, slash + 1)) + name;
    if (name == base_name(image_) || names_.count(name) != 0) {
        error = "Could not create '" + path + "': the image already has a file of that name";
        return std::nullopt;
    }
    auto fd = create(path);
    if (!fd) {
        error = fd.error();
        return std::nullopt;
    }
    names_.insert(name);
    return vmm::output_device(*fd);
}

Expected<bool> AtomicFiles::commit() {
    if (files_.size() > SYNC_EACH_MAX && !files_.empty()) {
        if (::syncfs(files_.front().fd) != 0) // all files share the image's directory, so its file system
            return Error{"Could not write '" + image_ + "': " + std::strerror(errno)};
    } else {
        for (const File& f : files_)
            if (::fdatasync(f.fd) != 0)
                return Error{"Could not write '" + f.final_path + "': " + std::strerror(errno)};
    }
    // What has been renamed so far, so that a failure part-way (a full disk, EXDEV, an entry that
    // cannot be replaced) puts every earlier file back instead of leaving half a set in place.
    struct Renamed {
        const File* file;
        std::string backup; // a second link to the file it replaced ("" when it replaced none)
    };
    std::vector<Renamed> renamed;
    auto roll_back = [&renamed] {
        for (auto r = renamed.rbegin(); r != renamed.rend(); ++r) {
            if (!r->backup.empty())
                ::rename(r->backup.c_str(), r->file->final_path.c_str()); // the old file, atomically
            else
                ::rename(r->file->final_path.c_str(), r->file->temp_path.c_str()); // removed with the rest
        }
    };
    for (std::size_t k = 1; k <= files_.size(); ++k) {
        const File& f = files_[k % files_.size()]; // added files 1..n-1, then the image (0)
        std::string backup;
        struct stat st{};
        if (::lstat(f.final_path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
            backup = f.temp_path + ".old"; // the temporary's name is unique in the directory
            if (::link(f.final_path.c_str(), backup.c_str()) != 0)
                backup.clear(); // no hard links here: a failure later cannot restore this file
        }
        if (::rename(f.temp_path.c_str(), f.final_path.c_str()) != 0) {
            const int err = errno;
            if (!backup.empty())
                ::unlink(backup.c_str());
            roll_back();
            return Error{"Could not create '" + f.final_path + "': " + std::strerror(err)};
        }
        renamed.push_back({&f, std::move(backup)});
    }
    for (const Renamed& r : renamed)
        if (!r.backup.empty())
            ::unlink(r.backup.c_str());
    committed_ = true;
    return true;
}

} // namespace instar
