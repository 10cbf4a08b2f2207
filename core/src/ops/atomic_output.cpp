// Unnamed (O_TMPFILE) or named temporary files beside their targets, put in place on commit,
// removed otherwise.
#include "ops/atomic_output.h"

#include "ops/file_limit.h"
#include "ops/signal_cleanup.h"
#include "vmm/reaper.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace instar {
namespace {

// A name for a temporary that collides with an existing file is drawn again, this many times.
constexpr int MAX_NAME_ATTEMPTS = 100;

// Symbolic links followed to find where a target really goes: Linux's own limit for one path
// lookup (MAXSYMLINKS), past which open(2) fails with ELOOP as qemu's would.
constexpr int MAX_SYMLINK_HOPS = 40;

// Up to this many files are flushed one by one; beyond it one syncfs is far faster (each
// fdatasync waits for its own journal commit: 32768 vmdk extents took minutes).
constexpr std::size_t SYNC_EACH_MAX = 16;

// Files stay open until commit(); past this many, the soft open-file limit (often 1024) is raised to
// the hard one before the next file is made (a vmdk at 64 TiB has 32768 extents).
constexpr std::size_t OPEN_FILES_BEFORE_RAISE = 512;

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

// The directory a path's file is made in: "." when it has none.
std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

std::string dir_prefix(const std::string& dir) { return dir == "/" ? "/" : dir + "/"; }

std::string could_not_create(const std::string& path, int err) {
    return "Could not create '" + path + "': " + std::strerror(err);
}

// The path a new file named `path` must take so that, as with qemu's open(O_CREAT) of the name, a
// symbolic link there is written through: the final link of the chain resolved (relative targets
// against the link's directory), the directories left for the kernel. A dangling link gives the
// path it points to (qemu creates that file); errno's ELOOP when the chain does not end.
Expected<std::string> follow_links(const std::string& path) {
    std::string p = path;
    for (int hop = 0; hop <= MAX_SYMLINK_HOPS; ++hop) {
        struct stat st{};
        if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode))
            return p; // no such file (created here) or not a link: the file itself
        std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 255) + 1, '\0');
        const ssize_t n = ::readlink(p.c_str(), target.data(), target.size());
        if (n <= 0 || static_cast<std::size_t>(n) >= target.size())
            return Error{could_not_create(path, n < 0 ? errno : n == 0 ? ENOENT : ENAMETOOLONG)};
        target.resize(static_cast<std::size_t>(n));
        const auto slash = p.rfind('/');
        p = target.front() == '/' || slash == std::string::npos ? target : p.substr(0, slash + 1) + target;
    }
    return Error{could_not_create(path, ELOOP)};
}

// INSTAR_NO_TMPFILE=1 (a test hook, docs/create.md) makes every file a named temporary, as on a
// file system without O_TMPFILE.
bool unnamed_files_allowed() {
    const char* no = std::getenv("INSTAR_NO_TMPFILE");
    return no == nullptr || *no == '\0' || std::strcmp(no, "0") == 0;
}

struct ProcFdPath {
    char text[32];
};
ProcFdPath proc_fd_path(int fd) {
    ProcFdPath p{};
    std::snprintf(p.text, sizeof p.text, "/proc/self/fd/%d", fd);
    return p;
}

// linkat through /proc/self/fd (the way that needs no CAP_DAC_READ_SEARCH) works only where /proc
// is mounted and shows this process: check before any data goes into a file that could not be named.
bool linkable_through_proc(int fd) {
    struct stat by_fd{}, by_path{};
    return ::fstat(fd, &by_fd) == 0 && ::stat(proc_fd_path(fd).text, &by_path) == 0 &&
           by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

// `.NAME.instar-` plus six random characters, in the target's directory: same file system (rename
// is atomic) and hidden from globs.
std::string random_temp_name(const std::string& dir_prefix, const std::string& final_path) {
    static constexpr char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[6] = {};
    if (::getrandom(r, sizeof r, 0) != static_cast<ssize_t>(sizeof r))
        for (auto& c : r) // no entropy: still unique enough with the retries on EEXIST
            c = static_cast<unsigned char>(std::rand());
    std::string name = dir_prefix + "." + base_name(final_path) + ".instar-";
    for (const unsigned char c : r)
        name += ALPHABET[c % (sizeof ALPHABET - 1)];
    return name;
}

} // namespace

AtomicFiles::AtomicFiles(std::string image) : image_(std::move(image)) {}

AtomicFiles::~AtomicFiles() {
    for (File& f : files_) {
        if (f.fd >= 0)
            ::close(f.fd); // an unnamed file not linked yet goes with its last descriptor
        if (!committed_ && f.temp_path)
            ::unlink(f.temp_path.get());
        signal_cleanup::unregister(f.signal_slot);
    }
}

std::optional<int> AtomicFiles::create_unnamed(const std::string& dir) {
    if (!unnamed_files_allowed())
        return std::nullopt;
    signal_cleanup::Section section; // the handler's state set up before the first file exists
    const int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0666); // the umask applies
    if (fd < 0)
        return std::nullopt; // EOPNOTSUPP, EISDIR (no O_TMPFILE here); real errors come again below
    if (!linkable_through_proc(fd)) {
        ::close(fd);
        return std::nullopt;
    }
    return fd;
}

Expected<int> AtomicFiles::create_named(const std::string& name, const std::string& final_path,
                                        const std::string& dir) {
    const std::string templ = dir_prefix(dir) + "." + base_name(final_path) + ".instar-XXXXXX";
    auto temp = std::make_unique<char[]>(templ.size() + 1);
    std::memcpy(temp.get(), templ.c_str(), templ.size() + 1);
    files_.reserve(files_.size() + 1);
    // Created and registered with no signal cleanup in between: never a file the handler misses.
    signal_cleanup::Section section;
    const int fd = ::mkostemp(temp.get(), O_CLOEXEC);
    if (fd < 0)
        return Error{could_not_create(name, errno)};
    const int slot = signal_cleanup::register_path(temp.get());
    files_.push_back({name, final_path, dir, std::move(temp), fd, slot});
    if (slot < 0)
        return Error{"Could not create '" + name + "': too many temporary files at once (at most " +
                     std::to_string(signal_cleanup::MAX_TEMP_PATHS) + ")"};
    if (::fchmod(fd, creation_mode()) != 0)
        return Error{could_not_create(name, errno)};
    return fd;
}

Expected<int> AtomicFiles::create(const std::string& name) {
    auto final_path = follow_links(name);
    if (!final_path)
        return Error{final_path.error()};
    const std::string dir = dir_of(*final_path);
    if (const auto fd = create_unnamed(dir)) {
        files_.push_back({name, *final_path, dir, nullptr, *fd, -1});
        return *fd;
    }
    return create_named(name, *final_path, dir);
}

Expected<int> AtomicFiles::open_image() { return create(image_); }

std::optional<vmm::Device> AtomicFiles::add(const std::string& name, std::string& error) {
    // qemu's path_combine: the image's own directory prefix, none when the image has none (so
    // messages name "x-f001.vmdk", not "./x-f001.vmdk").
    const auto slash = image_.rfind('/');
    const std::string path = (slash == std::string::npos ? "" : image_.substr(0, slash + 1)) + name;
    if (name == base_name(image_) || names_.count(name) != 0) {
        error = "Could not create '" + path + "': the image already has a file of that name";
        return std::nullopt;
    }
    if (files_.size() == OPEN_FILES_BEFORE_RAISE) {
        std::size_t limit = 0;
        raise_open_file_limit(&limit); // a failure shows as EMFILE below, with the limit named
    }
    auto fd = create(path);
    if (!fd) {
        std::size_t limit = 0;
        if (errno == EMFILE && !raise_open_file_limit(&limit))
            error = "Could not create '" + path + "': the image needs more files open at once than the open-file "
                    "limit allows (" + std::to_string(limit) + "; raise it with ulimit -Hn)";
        else
            error = fd.error();
        return std::nullopt;
    }
    names_.insert(name);
    vmm::Device dev = vmm::output_device(*fd);
    dev.early_writeback = durable_; // commit() flushes it
    if (direct_) {
        if (auto ok = make_direct(*fd, path); !ok) {
            error = ok.error();
            return std::nullopt;
        }
        dev.direct = true;
    }
    return dev;
}

Expected<bool> AtomicFiles::make_direct(int fd, const std::string& path) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_DIRECT) != 0)
        return Error{"Could not open '" + path + "': Could not open '" + path + "': " + std::strerror(errno)};
    return true;
}

Expected<int> AtomicFiles::add_path(const std::string& path) {
    // open("") fails with ENOENT; caught here, before anything is written, rather than at commit.
    if (path.empty())
        return Error{could_not_create(path, ENOENT)};
    struct stat st{}, image_st{};
    if (::stat(path.c_str(), &st) == 0) {
        // qemu's file protocol refuses to grow a device, and opens the image's own file twice.
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
            return Error{"Could not resize image: Cannot grow device files"};
        if (!S_ISREG(st.st_mode))
            return Error{could_not_create(path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL)};
        if (::stat(image_.c_str(), &image_st) == 0 && st.st_dev == image_st.st_dev && st.st_ino == image_st.st_ino)
            return Error{"Could not create '" + path + "': it is the image itself"};
    }
    bool taken = path == image_;
    for (const File& f : files_)
        taken |= f.name == path;
    if (taken)
        return Error{"Could not create '" + path + "': the image already has a file of that name"};
    external_ = true;
    return create(path);
}

// An unnamed file gets its name: linked straight to a target that does not exist; over one that
// does, linked to a fresh temporary name and renamed over it (linkat never replaces). A kill -9
// between that link and the rename leaves the temporary name behind (docs/create.md).
// Links the unnamed file `f` under a fresh temporary name beside its final path: 0 with the name in
// *temp, else the errno (EEXIST when every name tried was taken).
int AtomicFiles::link_temp_name(const File& f, std::string* temp) {
    const auto proc = proc_fd_path(f.fd);
    for (int attempt = 0; attempt < MAX_NAME_ATTEMPTS; ++attempt) {
        std::string name = random_temp_name(dir_prefix(f.dir), f.final_path);
        if (::linkat(AT_FDCWD, proc.text, AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
            *temp = std::move(name);
            return 0;
        }
        if (errno != EEXIST)
            return errno;
    }
    return EEXIST;
}

Expected<bool> AtomicFiles::link_unnamed(const File& f) {
    const auto proc = proc_fd_path(f.fd);
    if (::linkat(AT_FDCWD, proc.text, AT_FDCWD, f.final_path.c_str(), AT_SYMLINK_FOLLOW) == 0)
        return true;
    if (errno != EEXIST)
        return Error{could_not_create(f.name, errno)};
    std::string temp;
    if (const int err = link_temp_name(f, &temp); err != 0)
        return Error{could_not_create(f.name, err)};
    if (::rename(temp.c_str(), f.final_path.c_str()) != 0) {
        const int err = errno;
        ::unlink(temp.c_str());
        return Error{could_not_create(f.name, err)};
    }
    return true;
}

// RENAME_EXCHANGE (where the file system has it): `from` and `to` swap atomically, leaving the old
// file at `from` for the caller to unlink, or to swap back. Unlike rename() over an existing file,
// this does not make ext4 allocate and start writing the new file at once (its auto_da_alloc
// heuristic for replace-via-rename), and so the next replace does not have to free those blocks
// again: overwriting a 512 MiB raw target back to back cost 0.28 s more than qemu-img's O_TRUNC
// (0.47 s against 0.19 s), and costs the same with the swap (docs/convert.md, "Figures"). false:
// not swapped (no such file, or no RENAME_EXCHANGE there: the caller renames as before).
bool exchange(const char* from, const char* to) {
    return ::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE) == 0;
}

// Swaps `f` in for the existing file at its final path (exchange()); true with the old file left at
// *old_name. An unnamed file gets a temporary name first (removed again when the swap fails).
bool AtomicFiles::swap_in(const File& f, std::string* old_name) {
    if (f.temp_path) {
        if (!exchange(f.temp_path.get(), f.final_path.c_str()))
            return false;
        *old_name = f.temp_path.get();
        return true;
    }
    std::string temp;
    if (link_temp_name(f, &temp) != 0)
        return false;
    if (!exchange(temp.c_str(), f.final_path.c_str())) {
        ::unlink(temp.c_str());
        return false;
    }
    *old_name = std::move(temp);
    return true;
}

// Puts one file at its final path.
Expected<bool> AtomicFiles::place(File& f) {
    if (!f.temp_path)
        return link_unnamed(f);
    if (::rename(f.temp_path.get(), f.final_path.c_str()) != 0)
        return Error{could_not_create(f.name, errno)};
    signal_cleanup::unregister(f.signal_slot); // its temporary name is gone
    f.signal_slot = -1;
    return true;
}

Expected<bool> AtomicFiles::commit() {
    if (!durable_) {
        // cache=unsafe: no flush (the link below is still the only way the files get their names).
    } else if (files_.size() > SYNC_EACH_MAX) {
        if (::syncfs(files_.front().fd) != 0) // the image's directory: one file system
            return Error{"Could not write '" + image_ + "': " + std::strerror(errno)};
        for (const File& f : files_) // a file elsewhere (add_path) may be on another
            if (external_ && f.dir != files_.front().dir && ::fdatasync(f.fd) != 0)
                return Error{"Could not write '" + f.name + "': " + std::strerror(errno)};
    } else {
        for (const File& f : files_)
            if (::fdatasync(f.fd) != 0)
                return Error{"Could not write '" + f.name + "': " + std::strerror(errno)};
    }
    // A signal from here on waits until every file is in place: never half a multi-file image.
    signal_cleanup::Section section;
    // What is in place so far, so that a failure part-way (a full disk, EXDEV, an entry that cannot
    // be replaced) puts every earlier file back instead of leaving half a set: a file that replaced
    // another is swapped back, or undone from a hard link to the old one made just before; a new one
    // is unlinked.
    struct Placed {
        const File* file;
        std::string backup; // "" when it replaced nothing (or no hard link could be made)
        bool swapped = false; // backup is the temporary's name, holding the old file (exchange())
    };
    std::vector<Placed> placed;
    auto roll_back = [&placed] {
        for (auto p = placed.rbegin(); p != placed.rend(); ++p) {
            if (p->swapped) { // swap back: the new file returns to the temporary's name, then goes
                // (if the swap back fails, the old file stays under that name: never removed)
                if (exchange(p->backup.c_str(), p->file->final_path.c_str()))
                    ::unlink(p->backup.c_str());
            } else if (!p->backup.empty())
                ::rename(p->backup.c_str(), p->file->final_path.c_str()); // the old file, atomically
            else
                ::unlink(p->file->final_path.c_str());
        }
    };
    for (std::size_t k = 1; k <= files_.size(); ++k) {
        File& f = files_[k % files_.size()]; // added files 1..n-1, then the image (0)
        std::string backup;
        struct stat st{};
        const bool exists = ::lstat(f.final_path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
        // The new file swaps with the one it replaces, which is then the backup under the new one's
        // temporary name (a named temporary keeps its signal slot until that name is gone).
        if (std::string old; exists && swap_in(f, &old)) {
            placed.push_back({&f, std::move(old), true});
            continue;
        }
        if (exists) {
            for (int attempt = 0; attempt < MAX_NAME_ATTEMPTS && backup.empty(); ++attempt) {
                std::string name = random_temp_name(dir_prefix(f.dir), f.final_path) + ".old";
                if (::link(f.final_path.c_str(), name.c_str()) == 0)
                    backup = std::move(name);
                else if (errno != EEXIST)
                    break; // no hard links here: a later failure cannot restore this file
            }
        }
        if (auto done = place(f); !done) {
            if (!backup.empty())
                ::unlink(backup.c_str());
            roll_back();
            return done;
        }
        placed.push_back({&f, std::move(backup), false});
    }
    // The replaced files go. Their names are removed here; their blocks are freed by the last close
    // of a descriptor held across the unlink, which a releaser process does after this one has
    // moved on (0.1 s for a 512 MiB file on ext4: a third of a 1 GiB convert, and qemu-img pays
    // it truncating the old target first). Where that cannot be, the unlink frees them here.
    std::vector<int> held;
    held.reserve(placed.size());
    for (const Placed& p : placed) {
        if (p.backup.empty())
            continue;
        const int fd = held.size() < vmm::MAX_BACKGROUND_RELEASES
                           ? ::open(p.backup.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
        ::unlink(p.backup.c_str());
        if (fd >= 0)
            held.push_back(fd);
        if (p.swapped) { // the temporary's name is gone too
            File& f = const_cast<File&>(*p.file);
            signal_cleanup::unregister(f.signal_slot);
            f.signal_slot = -1;
            f.temp_path.reset();
        }
    }
    if (!held.empty() && !vmm::release_in_background(held))
        for (const int fd : held)
            ::close(fd);
    committed_ = true;
    return true;
}

} // namespace instar
