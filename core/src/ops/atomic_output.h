// Atomic creation of an image's files: each is written under a temporary name in its final
// directory and renamed into place only when the whole operation succeeded. Until commit(), the
// destructor removes every temporary, so a failed or interrupted operation leaves the target paths
// exactly as they were.
#pragma once

#include "util/expected.h"
#include "vmm/sandbox.h"

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

    // Flushes every file and renames them into place (added files first, the image last, so a
    // reader never sees an image whose extents are missing). When a rename fails, the files already
    // renamed are put back (a file they replaced is restored from a hard link made just before), so
    // the target paths are as they were.
    Expected<bool> commit();

    const std::string& image_path() const { return image_; }
    int image_fd() const { return files_.empty() ? -1 : files_.front().fd; }
    std::size_t file_count() const { return files_.size(); }

private:
    struct File {
        std::string final_path;
        std::string temp_path;
        int fd = -1;
    };
    Expected<int> create(const std::string& final_path);

    std::string image_;
    std::string dir_; // the image's directory ("." when it has none)
    std::vector<File> files_;
    std::unordered_set<std::string> names_; // added files' names: a vmdk may add 32768 of them
    bool committed_ = false;
};

} // namespace instar
