// `info` as an operation: pick candidate formats, have the guest parse the image (and, for formats
// that name other files, run again with those files attached), walk the backing chain through the
// path policy, and assemble the nodes the renderer prints.
#pragma once

#include "chain/path_policy.h"
#include "info/image_info.h"
#include "output/node_info.h"
#include "plugins/registry.h"
#include "util/expected.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct GuestInfoResult {
    guest::Status status = guest::Status::Ok;
    ImageInfo info;     // valid when status is Ok or NeedFiles
    std::string detail; // the guest's one-line reason when status is an error (untrusted, printable)
};

// Runs the guest half of `candidates` (in probe order; the first whose guest probe matches reports)
// on `image`, with `files` attached after it; with `force`, candidate 0 reports without probing (the
// user named the format). The real runner boots the sandbox; tests may run format code hosted.
// `flags`: INSTAR_INFO_FORCE (the user named the format: no probe) and INSTAR_INFO_NO_KEY (guest_abi.h).
using GuestInfoRunner = std::function<Expected<GuestInfoResult>(const std::vector<const LoadedPlugin*>& candidates,
                                                                std::uint32_t flags, const OpenedFile& image,
                                                                const std::vector<OpenedFile>& files)>;

// What one backing level's options name for its key, and whether --object defined that id: each of
// qemu's secret keys the level gives (QEMU_SECRET_OPTIONS), in that order.
struct BackingKey {
    struct Named {
        std::string id;
        bool defined = false;
    };
    std::vector<std::pair<std::string, Named>> named; // (key, what it names)
    // The one a driver reads: `option`, its plugin's FormatDescriptor::secret_option; nullptr (the
    // format is unknown before a probe, or has no key) reads either, the first one named.
    std::optional<Named> for_option(const char* option) const {
        for (const auto& [key, n] : named)
            if (option == nullptr || key == option)
                return n;
        return std::nullopt;
    }
};

// The secret of the encrypted backing image `depth` levels down, as the user named it under the key
// its driver reads (`secret_option`, its plugin's FormatDescriptor::secret_option; nullptr: either
// of qemu's): backing.[…]encrypt.key-secret / key-secret; nullopt when none was named.
using BackingSecretFn =
    std::function<Expected<std::optional<std::string>>(std::size_t depth, const char* secret_option)>;

struct InfoOptions {
    std::string filename;
    std::optional<std::string> format; // -f
    bool backing_chain = false;
    bool unsafe_quirks = false; // qemu's raw fallback for unrecognised files
    // --ignore-quirks: true file sizes instead of qemu's safe quirks: disk size / actual-size is the
    // files' length (st_size, summed over vmdk extents) rather than their allocated blocks, and the
    // file child's length is not rounded up to whole sectors. Independent of unsafe_quirks.
    bool ignore_quirks = false;
    // --extra-detail: format-specific details qemu-img does not print. Reserved: none of the
    // supported formats has any (VDI's image type, block counts and uuid will use it).
    bool extra_detail = false;
    std::vector<std::string> allow_paths;
    // The top image already opened (e.g. through a path policy); used instead of opening `filename`
    // again, so what is inspected is exactly what was checked.
    const OpenedFile* top = nullptr;
    // The top image is opened for writing (qemu's BDRV_O_RDWR): a format declaring CAP_READ_ONLY is
    // refused with qemu's "Image is read-only" once detected, before its header is read.
    bool read_write = false;
    // luks's header= (qemu 9.0+): a detached LUKS header the user named, opened like the image and
    // attached to the top image's guest runs as its first file (the image is then the payload).
    std::optional<std::string> header;
    // The command opens the top image for I/O (qemu: every command but info, and create's look at
    // a backing file) and the user gave no key-secret for it. Its inspection tells the format
    // (INSTAR_INFO_NO_KEY), so luks refuses as qemu's open does, before it reads the header.
    bool opens_without_key = false;
    // The command opens the chain as one node (qemu's bdrv_open with the backing chain: every
    // command but info): a backing image that fails to open is reported in qemu's frame for the
    // top, "Could not open 'TOP': Could not open backing file: REASON" (once per level), not under
    // its own name.
    bool backing_in_one_node = false;
    // The keys backing.[…]key-secret / encrypt.key-secret name for each level (element d-1 for
    // level d; past the end: none). qemu opens each level of a one-node chain for I/O, so a level
    // naming no key its format reads, or one no --object defined, is inspected without a key too
    // (its LUKS header is not read: qemu looks the key up first).
    std::vector<BackingKey> backing_keys;
};

// qemu opens the top's chain from the top: an error opening the image `depth` levels down is framed
// once per level (bdrv_open_backing_file) under the top's name `top`.
std::string open_frame(const std::string& top, std::size_t depth);

// The nodes to print: one, or the whole chain (top first) with --backing-chain.
Expected<std::vector<NodeInfo>> collect_info(const InfoOptions& opts, const PluginRegistry& plugins,
                                             const GuestInfoRunner& run_guest);

// One image of a chain opened for reading its data (convert, compare, map): the image, the files
// it is made of (extents or a data file, in reference order) and what info found.
struct ChainLink {
    OpenedFile image;
    std::vector<OpenedFile> files;
    const LoadedPlugin* plugin = nullptr; // the format that reported
    NodeInfo node;                        // format, virtual size, backing name, ...
    std::string name;                     // as qemu names it in messages
    // The image's secret (--object secret named by key-secret / encrypt.key-secret): sent to the
    // guest in a sealed device (ImageTable::attach_secrets), never printed.
    std::optional<std::string> secret;
};
// Owns the files of every link.
struct OpenedChain {
    std::vector<ChainLink> links; // top first
    OpenedChain() = default;
    OpenedChain(const OpenedChain&) = delete;
    OpenedChain& operator=(const OpenedChain&) = delete;
    OpenedChain(OpenedChain&&) = default;
    ~OpenedChain() { close(); }
    // Closes every link's files and forgets the links (the chain can be opened again).
    void close();
};
// Inspects opts.filename as collect_info does and keeps everything open: with opts.backing_chain,
// the whole backing chain (through the path policy, loops and depth refused), else the top only.
// On error the links opened so far stay in `chain` (and are closed with it).
Expected<bool> open_chain(const InfoOptions& opts, const PluginRegistry& plugins, const GuestInfoRunner& run_guest,
                          OpenedChain& chain);

// A second handle on an opened file, owned by the caller like any other OpenedFile.
Expected<OpenedFile> duplicate(const OpenedFile& f);

// The human name of a guest Status for messages.
std::string status_message(guest::Status s);

// The errno text (strerror's) qemu-img prints where the guest's data engines failed a request with
// `status` (a guest::Status; convert_engine.cpp's errno_text): Invalid "Invalid argument", ...,
// anything else "Input/output error".
const char* status_errno_text(std::uint32_t status);

} // namespace instar
