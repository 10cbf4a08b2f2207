// Atomic creation of an image's files: each is written as an unnamed file (O_TMPFILE) in its final
// directory and linked into place only when the whole operation succeeded; where the file system has
// no O_TMPFILE, under a temporary name (`.NAME.instar-XXXXXX`) renamed into place. Until commit(),
// the destructor removes every temporary, and so does SIGINT, SIGTERM or SIGHUP
// (ops/signal_cleanup.h), so a failed or interrupted operation leaves the target paths exactly as
// they were; after a kill -9 an unnamed file vanishes with the process, a named one stays.
// A path that is a symbolic link is written through, as qemu's open(O_CREAT) does: the file the link
// (or chain of links, dangling or not) points to is made atomically and the link stays.
#pragma once

#include "util/expected.h"
#include "vmm/sandbox.h"

#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace instar {

class AtomicFiles final : public vmm::OutputFiles {
public:
    // `image` is the path the user named; further files are created in its directory.
    explicit AtomicFiles(std::string image);
    ~AtomicFiles() override;
    AtomicFiles(const AtomicFiles&) = delete;
    AtomicFiles& operator=(const AtomicFiles&) = delete;

    // Creates the image's temporary file; qemu's "Could not create 'FILE': REASON" on failure.
    Expected<int> open_image();
    // vmm::OutputFiles: a further file `name` beside the image (e.g. a vmdk extent).
    std::optional<vmm::Device> add(const std::string& name, std::string& error) override;
    // A further file at `path` as the user named it (any directory, e.g. a qcow2 external data
    // file), placed with the others on commit. qemu's "Could not create 'PATH': REASON" on failure;
    // a path that is the image itself or an existing non-regular file is refused.
    Expected<int> add_path(const std::string& path);

    // Flushes every file and puts them in place (added files first, the image last, so a reader
    // never sees an image whose extents are missing); signals wait until all are in place. When one
    // cannot be placed, those already placed are put back (a file they replaced is restored from a
    // hard link made just before), so the target paths are as they were.
    Expected<bool> commit();

    // Cache modes (convert's -t): without `durable` commit() links the files into place without
    // flushing them first (qemu's cache=unsafe never flushes); with `direct` every file is switched
    // to O_DIRECT as it is made (none/directsync), and its Device says so.
    void set_durable(bool durable) { durable_ = durable; }
    void set_direct(bool direct) { direct_ = direct; }
    // Switches fd to O_DIRECT; qemu's "Could not open 'PATH': Could not open 'PATH': REASON" when the
    // file system refuses it.
    static Expected<bool> make_direct(int fd, const std::string& path);

    const std::string& image_path() const { return image_; }
    int image_fd() const { return files_.empty() ? -1 : files_.front().fd; }
    std::size_t file_count() const { return files_.size(); }

private:
    struct File {
        std::string name;       // the path as given (messages)
        std::string final_path; // where the file goes: `name` with its symbolic links followed
        std::string dir; // the directory it is made in ("." when the path has none)
        // The named temporary (fallback); null for an unnamed O_TMPFILE file. Heap-held so its
        // address, registered with the signal handler, survives the vector's growth.
        std::unique_ptr<char[]> temp_path;
        int fd = -1;
        int signal_slot = -1; // signal_cleanup's registration of temp_path
    };
    Expected<int> create(const std::string& name);
    std::optional<int> create_unnamed(const std::string& dir);
    Expected<int> create_named(const std::string& name, const std::string& final_path, const std::string& dir);
    Expected<bool> place(File& f);
    Expected<bool> link_unnamed(const File& f);
    bool swap_in(const File& f, std::string* old_name);
    static int link_temp_name(const File& f, std::string* temp);

    std::string image_;
    bool external_ = false; // a file outside the image's directory (add_path): maybe another file system
    std::vector<File> files_;
    std::unordered_set<std::string> names_; // added files' names, to refuse a duplicate in O(1)
    bool committed_ = false;
    bool durable_ = true;
    bool direct_ = false;
};

} // namespace instar
