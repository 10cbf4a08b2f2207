// The path policy: which files named *inside* an image (backing files, data files, vmdk extents) the
// host may open. Names from images are untrusted: json:/protocol names, device nodes, anything
// outside the allowed directories, loops and over-deep chains are refused with a message naming the
// image, the field, the path and the reason.
#pragma once

#include "util/expected.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace instar {

// Longest backing chain followed. Real chains (snapshot tools, CI layers) stay well under a dozen;
// a deep chain costs one VM boot per link, so an unbounded one is a cheap denial of service.
inline constexpr std::uint32_t MAX_CHAIN_DEPTH = 64;

struct PathPolicy {
    // Canonical directories whose trees may be opened. Default: the top image's directory.
    std::vector<std::filesystem::path> allowed_roots;
};

// A file the policy allowed, opened read-only (regular files only).
struct OpenedFile {
    int fd = -1;
    std::filesystem::path path;    // canonical path of what was opened
    std::string display;           // the path as qemu would print it (relative names joined, not canonical)
    std::string reference;         // a referenced file: the name as the referring image wrote it
    std::uint64_t size = 0;
    std::uint64_t allocated = 0;   // st_blocks * 512
    std::uint64_t device = 0, inode = 0;
};

// The policy for a top image: its own directory plus `extra_roots` (--allow-path).
Expected<PathPolicy> default_policy(const std::filesystem::path& top_image,
                                    const std::vector<std::string>& extra_roots);

// qemu's rule for where a relative name points: the referring image's directory joined with the
// name (path_combine), or the name itself when absolute.
std::string combine_path(std::string_view referring_image, std::string_view name);

// qemu's path_has_protocol: a ':' before any '/' ("file:x", "nbd:...", "json:{...}").
bool has_protocol(std::string_view name);

// qemu's bdrv_get_full_backing_filename_from_filename (what info prints as the actual path): a name
// with a protocol or an absolute one as it is, else combine_path.
std::string full_backing_filename(std::string_view referring_image, std::string_view name);

// The one protocol a backing file name may carry: "file:REST" names the file REST, taken literally
// (no protocol or json: of its own) and, relative, from the working directory: qemu keeps a backing
// name with a protocol as it is and its file driver strips the prefix. qemu opens a qcow2 data file
// name as a file name ("Could not open 'file:data.raw'") and joins a vmdk extent name to the
// descriptor's directory, so for those "file:" is no protocol (and the policy refuses such names).
inline constexpr std::string_view FILE_PROTOCOL = "file:";

// The name checks of open_referenced without opening anything: returns the path the name points
// to (combine_path), or the refusal. For callers that must tell "refused" from "missing".
// `from_cwd`: a relative name is taken from the working directory instead of the image's (qemu
// opens a qcow2 external data file that way: bdrv_open_child, no path_combine). A backing file
// name "file:REST" is REST from the working directory (FILE_PROTOCOL); other protocol and json:
// names are refused.
Expected<std::string> check_referenced(const PathPolicy& policy, const std::string& image, std::string_view field,
                                       const std::string& name, bool from_cwd = false);

// Checks `name` (field `field`, e.g. "backing file") found in `image`, then opens it.
Expected<OpenedFile> open_referenced(const PathPolicy& policy, const std::string& image, std::string_view field,
                                     const std::string& name, bool from_cwd = false);

// Opens a file the user named on the command line (no policy, but regular files only), with
// qemu-img's "Could not open" messages.
Expected<OpenedFile> open_user_file(const std::string& name);

void close_file(OpenedFile& f);

// `f`, opened through the policy, opened again read-write (convert -n's target files, commit's
// base files): the very file, through /proc/self/fd, so no name is looked up again. The new fd,
// or "Could not open 'DISPLAY': why".
Expected<int> reopen_writable(const OpenedFile& f);

} // namespace instar
