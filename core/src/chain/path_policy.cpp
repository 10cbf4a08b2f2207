// Path policy checks and the opening of files named by images or by the user.
#include "chain/path_policy.h"

#include "util/path_within.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace instar {
namespace {

// qemu treats "proto:rest" as a protocol when everything before the first ':' is [A-Za-z0-9.+-]
// and there is no '/' before it; "json:" is qemu's pseudo-protocol for inline option trees.
bool looks_like_protocol(std::string_view name) {
    const auto colon = name.find(':');
    if (colon == std::string_view::npos || colon == 0)
        return false;
    for (char c : name.substr(0, colon))
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '+' || c == '-'))
            return false;
    return true;
}

Expected<OpenedFile> open_regular(const std::string& path, std::string& why) {
    // O_NONBLOCK: opening a FIFO must not hang us; it is refused right after by the S_ISREG check.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        why = std::strerror(errno);
        return Error{why};
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        why = "not a regular file";
        return Error{why};
    }
    OpenedFile f;
    f.fd = fd;
    f.size = static_cast<std::uint64_t>(st.st_size);
    f.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
    f.device = st.st_dev;
    f.inode = st.st_ino;
    std::error_code ec;
    f.path = fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    return f;
}

} // namespace

Expected<PathPolicy> default_policy(const fs::path& top_image, const std::vector<std::string>& extra_roots) {
    PathPolicy p;
    std::error_code ec;
    fs::path dir = fs::weakly_canonical(fs::absolute(top_image, ec), ec).parent_path();
    p.allowed_roots.push_back(dir);
    for (const auto& r : extra_roots) {
        fs::path c = fs::canonical(r, ec);
        if (ec || !fs::is_directory(c))
            return Error{"--allow-path '" + r + "': not an existing directory"};
        p.allowed_roots.push_back(c);
    }
    return p;
}

std::string combine_path(std::string_view referring_image, std::string_view name) {
    if (!name.empty() && name.front() == '/')
        return std::string(name);
    const auto slash = referring_image.rfind('/');
    if (slash == std::string_view::npos)
        return std::string(name);
    return std::string(referring_image.substr(0, slash + 1)) + std::string(name);
}

bool has_protocol(std::string_view name) {
    const auto stop = name.find_first_of(":/");
    return stop != std::string_view::npos && name[stop] == ':';
}

std::string full_backing_filename(std::string_view referring_image, std::string_view name) {
    if (has_protocol(name))
        return std::string(name);
    return combine_path(referring_image, name);
}

namespace {

std::string roots_text(const PathPolicy& policy) {
    std::string roots;
    for (const auto& r : policy.allowed_roots)
        roots += (roots.empty() ? "" : ", ") + r.string();
    return roots;
}

bool inside_roots(const PathPolicy& policy, const fs::path& p) {
    for (const auto& root : policy.allowed_roots)
        if (path_is_within(p, root))
            return true;
    return false;
}

Error refusal(const std::string& image, std::string_view field, const std::string& name, const std::string& why) {
    return Error{image + ": " + std::string(field) + " '" + name + "' refused: " + why};
}

} // namespace

Expected<std::string> check_referenced(const PathPolicy& policy, const std::string& image, std::string_view field,
                                       const std::string& name, bool from_cwd) {
    auto refuse = [&](const std::string& why) { return refusal(image, field, name, why); };
    if (name.empty())
        return refuse("empty name");
    if (name.find('\0') != std::string::npos)
        return refuse("the name contains a NUL byte");
    std::string_view path = name;
    if (field == "backing file" && path.starts_with(FILE_PROTOCOL)) {
        path.remove_prefix(FILE_PROTOCOL.size());
        from_cwd = true;
        if (path.empty())
            return refuse("empty name");
    } else if (name.rfind("json:", 0) == 0) {
        return refuse("json: pseudo-protocol names are never followed");
    } else if (looks_like_protocol(name)) {
        return refuse("protocol names (" + name.substr(0, name.find(':') + 1) + ") are never followed");
    }
    const std::string display = from_cwd ? std::string(path) : combine_path(image, path);
    std::error_code ec;
    const fs::path target = fs::weakly_canonical(fs::absolute(display, ec), ec);
    if (!inside_roots(policy, target))
        return refuse("outside the allowed directories (" + roots_text(policy) + "; --allow-path DIR adds one)");
    return display;
}

Expected<OpenedFile> open_referenced(const PathPolicy& policy, const std::string& image, std::string_view field,
                                     const std::string& name, bool from_cwd) {
    auto display = check_referenced(policy, image, field, name, from_cwd);
    if (!display)
        return Error{display.error()};
    std::string why;
    auto f = open_regular(*display, why);
    if (!f)
        return refusal(image, field, name, why);
    // The name was checked before open; check what was actually opened too (a symlink swapped in
    // between, or a link inside the tree pointing out of it).
    if (!inside_roots(policy, f->path)) {
        close_file(*f);
        return refusal(image, field, name, "it resolves outside the allowed directories (" + roots_text(policy) + ")");
    }
    f->display = *display;
    f->reference = std::string(name);
    return f;
}

Expected<OpenedFile> open_user_file(const std::string& name) {
    std::string why;
    auto f = open_regular(name, why);
    if (!f)
        return Error{"Could not open '" + name + "': Could not open '" + name + "': " + why};
    f->display = name;
    return f;
}

Expected<int> reopen_writable(const OpenedFile& f) {
    const std::string self = "/proc/self/fd/" + std::to_string(f.fd);
    const int fd = ::open(self.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return Error{"Could not open '" + f.display + "': " + std::strerror(errno)};
    return fd;
}

void close_file(OpenedFile& f) {
    if (f.fd >= 0)
        ::close(f.fd);
    f.fd = -1;
}

} // namespace instar
