// `map` as an operation: open the image and its backing chain (through the path policy), write the
// plan, run one sandbox in which the formats' readers walk the disk as qemu-img map's
// get_block_status does, and check the runs it sends back (untrusted) before naming their files.
#pragma once

#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstring>
#include <instar/guest_abi.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct MapSpec {
    std::string filename;
    std::optional<std::string> format; // -f
    std::uint64_t start = 0;           // --start-offset
    std::optional<std::uint64_t> max_length;
    bool unsafe_quirks = false;
    std::vector<std::string> allow_paths;
    bool no_backing = false; // "backing": null: the image alone, its unallocated ranges read as zeros
    std::optional<std::string> secret; // the top image's (--object secret), never printed
    std::optional<std::string> header; // luks's header= (InfoOptions::header)
};

// One run as qemu's MapEntry holds it.
struct MapEntry {
    std::uint64_t start = 0;
    std::uint64_t length = 0;
    std::uint64_t depth = 0;
    bool present = false, zero = false, data = false, compressed = false;
    bool has_offset = false;
    std::uint64_t offset = 0;
    std::int32_t file = -1; // index into MapResult::files: the file the data lies in (with an offset)
};

struct MapResult {
    std::vector<MapEntry> entries; // merged where the guest could tell; the printer merges again
    std::vector<std::string> files; // names as qemu prints them; equal names have one index
    std::uint64_t start = 0;       // --start-offset (qemu's first curr.start)
    // A failure while walking, after `entries`: qemu's "Could not read file metadata: ..." text.
    std::optional<std::string> walk_error;
    std::optional<std::string> walk_notice; // a line qemu's driver prints first (no "prog: " prefix)
};

// Receives the runs in disk order, a bounded slice at a time (1024 runs), with the file names.
using MapChunkSink = std::function<void(const std::vector<MapEntry>& entries, const std::vector<std::string>& files)>;

// Errors (opening) are qemu-img's messages without the "prog: " prefix. With a sink, the runs go
// there as they come (a map too large for one sandbox's records takes several runs); without one
// they are collected in MapResult::entries.
Expected<MapResult> map_image(const MapSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                              std::uint32_t qemu_version, const MapChunkSink& sink = {});

// qemu opens an encrypted image's key together with the image in every command but info (which
// opens it without I/O): `link` (encrypted: its node says so) is opened in a sandbox with `secret`,
// by map's operation over an empty range, so the format unlocks its key as it does for reading.
// The error is qemu's "Could not open 'NAME': Parameter 'key-secret' is required for cipher" (no
// secret) or "...: Invalid password, cannot unlock any keyslot" (the format's words). One mechanism
// for the commands that otherwise need no key (check, snapshot, bitmap, resize, amend, measure).
Expected<bool> unlock_image(const ChainLink& link, const std::optional<std::string>& secret,
                            vmm::SandboxConfig sandbox, std::uint32_t qemu_version);


// qemu's open unlocks every encrypted image of a chain, top first, before the command checks
// anything else: the first key error of links [0, levels) (no secret, a wrong one; each link's
// `secret`) in qemu's frame, from link `first` (check unlocked the top already). One sandbox run per
// encrypted image (commit, check).
Expected<bool> unlock_chain(const OpenedChain& chain, std::size_t levels, const std::string& top,
                            const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version, std::size_t first = 0);


// Sets the `secret` of each encrypted backing image of `chain` (links 1..) from `secret_of` (empty:
// none named). A lookup that fails (no secret with that id) is reported as qemu's open reports it:
// after the key errors of the links above it (unlock_chain from `first`), in the frame of its level.
Expected<bool> assign_backing_secrets(OpenedChain& chain, const BackingSecretFn& secret_of, const std::string& top,
                                      const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version,
                                      std::size_t first = 0);

// qemu unlocks each encrypted image's key as it opens it, before it opens the image below. When
// open_chain failed below the top (`failure`), the images it did open (the links with a plugin)
// are unlocked first, the top with `top_secret` and the rest with `secret_of`'s, and their key
// error is the one reported; else `failure` is.
Error unlock_above_failure(OpenedChain& chain, Error failure, const std::optional<std::string>& top_secret,
                           const BackingSecretFn& secret_of, const std::string& top,
                           const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version);

// The checked runs of one sandbox run's INSTAR_REC_MAP payloads, read where they lie: a big map's
// records are MiBs, and a copy of them costs a page fault per 4 KiB.
struct MapRecords {
    const std::vector<std::vector<std::uint8_t>>* payloads = nullptr;
    std::size_t count = 0;
    std::uint64_t end = 0; // where the last run ends (the walk's start when there are none)

    template <class F> void for_each(F&& f) const {
        for (const auto& p : *payloads)
            for (std::size_t i = 0; i < p.size() / sizeof(instar_map_entry); ++i) {
                instar_map_entry e{};
                std::memcpy(&e, p.data() + i * sizeof e, sizeof e);
                f(e);
            }
    }
};

// Checks the guest's INSTAR_REC_MAP payloads (untrusted): every entry inside [start, end), in order
// and contiguous from `start`, flags known, depth inside the chain, files inside each layer's
// files (file_counts[depth] other files besides the image). The payloads must outlive the result.
Expected<MapRecords> decode_map_records(const std::vector<std::vector<std::uint8_t>>& payloads, std::uint64_t start,
                                        std::uint64_t end, const std::vector<std::uint32_t>& file_counts);

// qemu-img's output for `result` (img_map's loop with dump_map_entry and entry_mergeable): stdout
// text, and an error (without prefix) when qemu would stop with one ("File contains external,
// encrypted or compressed clusters." in human output, or the walk's error).
struct MapOutput {
    std::string out;
    std::optional<std::string> notice; // printed to stderr as it is, before the error
    std::optional<std::string> error;
};
MapOutput render_map(const MapResult& result, bool json, std::uint32_t qemu_version);

// render_map in pieces, for runs that arrive chunk by chunk: text goes to `out` as it is decided.
class MapPrinter {
public:
    MapPrinter(bool json, std::uint32_t qemu_version, std::uint64_t start);
    // The runs of one chunk; false once qemu would have stopped (error()).
    bool add(const std::vector<MapEntry>& entries, const std::vector<std::string>& files, std::string& out);
    // The end: the last run unless the walk failed (result's walk_error/notice), "]" for JSON.
    void finish(const MapResult& result, std::string& out);
    const std::optional<std::string>& error() const { return error_; }
    const std::optional<std::string>& notice() const { return notice_; }

private:
    void begin(std::string& out);
    bool json_;
    bool compressed_field_;
    bool begun_ = false;
    MapEntry curr_;
    std::optional<std::string> error_;
    std::optional<std::string> notice_;
    std::vector<std::string> files_; // the names the last chunk came with
};

} // namespace instar
