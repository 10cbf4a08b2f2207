// One sandbox start instead of two where the image stands alone (docs/architecture.md, "One start
// where the image stands alone"). A command that would run INSTAR_OP_INFO on the image and then start
// the sandbox again for itself lets the guest inspect the image first and go on in the same start
// when it names no other file and is not encrypted: INSTAR_OP_EDIT's INSTAR_EDIT_INFO_FIRST
// (edit_op.h's try_quick_edit) and INSTAR_OP_INFO_FIRST for read-only commands (try_quick_read).
// When the guest did not go on, nothing was written and the command takes its ordinary path, which
// reuses the inspection (PrefetchedInfo) and words every error as before.
#pragma once

#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace instar {

// What a guest that inspected the image but did not go on found: the first inspection the ordinary
// path would run, so it is not run twice.
struct PrefetchedInfo {
    const LoadedPlugin* plugin = nullptr;
    bool force = false;
    GuestInfoResult result;
};

// `runner`, except that its first call, when it asks what `pf` answered (the top image alone, the
// same plugin and force), is answered by `pf`.
GuestInfoRunner with_prefetched(GuestInfoRunner runner, const PrefetchedInfo& pf);
// `runner`, answered first by image `image`'s kept inspection when try_quick_read kept one.
GuestInfoRunner reusing_inspection(const GuestInfoRunner& runner,
                                   const std::vector<std::optional<PrefetchedInfo>>& prefetched, std::size_t image);

// The image a quick attempt inspects: opened as info opens it, its format chosen by the host probe
// (or -f). Closes the file when it goes.
class FirstImage {
public:
    FirstImage() = default;
    FirstImage(const FirstImage&) = delete;
    FirstImage& operator=(const FirstImage&) = delete;
    ~FirstImage();
    OpenedFile file{};
    const LoadedPlugin* plugin = nullptr;
    std::uint32_t module = 0; // try_quick_read: its module's index in the run (a plan's `module`)
    bool open = false;
};

// Opens opts.filename for a quick attempt; false when anything is unusual (no sandbox, the path
// policy, the probe not choosing exactly one format): the caller takes its ordinary path.
bool open_first_image(const InfoOptions& opts, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                      FirstImage& out);

// After the guest inspected the image and did not go on: keeps a successful inspection in
// `prefetched` (if given). (When it went on, ChainFiles::replay opens the chain from the info.)
void keep_inspection(const std::vector<std::uint8_t>& info, guest::Status status, const FirstImage& first,
                     bool force, std::optional<PrefetchedInfo>* prefetched);

// A read-only command in one start (INSTAR_OP_INFO_FIRST): `op` on images that stand alone (image i
// on device i, with its format's module), each at most max_virtual_size bytes.
struct QuickCall {
    std::vector<std::uint8_t> arg;     // the operation's argument
    std::vector<vmm::Device> devices;  // its devices after the images
    vmm::SandboxConfig config;         // the caller's sandbox, to adjust (a budget for max_virtual_size)
    // The run's modules: the images' first; an operation that needs another (convert's target
    // format) appends it. config.outputs, when set, takes the files the operation adds (ADD_FILE).
    std::vector<std::string> modules;
};
struct QuickRead {
    std::vector<InfoOptions> images; // each as the ordinary path opens it (1, or 2 for compare)
    std::uint32_t op = 0;
    std::uint64_t max_virtual_size = 0;
    // The operation may run over backing chains (INSTAR_INFO_FIRST_CHAINS): the host opens each
    // backing file the guest asks for as open_chain would (the path policy, the probe, loops, depth)
    // when its format's module is among the run's. For operations that read the images alone (check).
    bool chains = false;
    // How the host walks image i's chain (the replays of ChainFiles run it): open_chain when empty.
    // info --backing-chain walks with collect_info, whose rules for backing files are info's.
    std::function<Expected<bool>(std::size_t image, const InfoOptions& opts, const GuestInfoRunner& runner,
                                 OpenedChain& chain)>
        walk;
    // Fills the call for the images as opened; false: take the ordinary path.
    std::function<Expected<bool>(const std::vector<const FirstImage*>&, QuickCall&)> prepare;
    // When the guest inspected but did not go on: each image's inspection, where it succeeded.
    std::vector<std::optional<PrefetchedInfo>>* prefetched = nullptr;
};
// Opens the backing files an INSTAR_INFO_FIRST_CHAINS (or INSTAR_EDIT_INFO_CHAINS) guest asks for.
// Each answer replays the command's walk (open_chain, or QuickRead::walk) over the inspections the
// guest sent so far, so every rule of the ordinary path (the path policy, the probe or the named
// format, loops, depth, the keys) decides the next file exactly as there; the walk's request for one
// more inspection is the file to give. Anything else (an error, a level of another format than its
// top's, extra files) is no answer: the guest stops and the command takes its ordinary path, which
// words the error. Added files (ADD_FILE) go to `adds` (nullptr: refused).
class ChainFiles final : public vmm::OutputFiles {
public:
    // What the host handed the guest for one backing file: the file (a descriptor of its own) and
    // how the guest was told to inspect it.
    struct GivenLevel {
        OpenedFile file;
        const LoadedPlugin* plugin = nullptr;
        std::uint32_t flags = 0; // INSTAR_INFO_FORCE | INSTAR_INFO_NO_KEY
    };
    // `quick.images[i]` is image i as the ordinary path opens it, `firsts[i]` as opened for the run;
    // `modules` the run's modules. All must outlive this object.
    ChainFiles(const QuickRead& quick, const FirstImage* const* firsts, const PluginRegistry& plugins,
               const std::vector<std::string>& modules, vmm::OutputFiles* adds = nullptr);
    ~ChainFiles() override;
    ChainFiles(const ChainFiles&) = delete;
    ChainFiles& operator=(const ChainFiles&) = delete;
    std::optional<vmm::Device> add(const std::string& name, std::string& error) override;
    std::optional<vmm::NextImage> next_image(const std::vector<vmm::Record>& records, std::uint32_t image) override;

    // Every inspection the guest sends before its operation: each image and the backing files given.
    std::size_t total_inspections() const;
    // The index just past image `image`'s inspections, and of its first (its own).
    std::size_t end_of(std::size_t image) const;
    std::size_t first_of(std::size_t image) const;
    // The walk for image `image` over its inspections `own` (the top's first). Each inspection is
    // served only for the file it was made of; `asked` (when given) receives the one more that the
    // walk wanted, which ends the replay. Without `asked`, the chain as the ordinary path opens it.
    Expected<bool> replay(std::size_t image, const std::vector<std::vector<std::uint8_t>>& own, OpenedChain& chain,
                          std::optional<GivenLevel>* asked) const;

private:
    static constexpr const char* NOT_HERE = "(not opened in this start)";
    static constexpr const char* CHANGED = "the image changed while it was being inspected";
    static bool same_file(const OpenedFile& a, const OpenedFile& b);

    const QuickRead& quick_;
    const FirstImage* const* firsts_;
    const PluginRegistry& plugins_;
    const std::vector<std::string>& modules_;
    vmm::OutputFiles* adds_;
    std::vector<std::vector<GivenLevel>> given_; // per image, the backing files given, top down
};

// nullopt: the command did not run (take the ordinary path); else its run (the inspections' records
// removed), with `chains` (one per image) opened as open_chain would have.
Expected<std::optional<vmm::RunResult>> try_quick_read(const QuickRead& quick, const PluginRegistry& plugins,
                                                       const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version,
                                                       std::vector<OpenedChain>& chains);

// open_chain, with the whole chain inspected in one start where every level is a plain image of the
// top's format (INSTAR_OP_INFO_FIRST of INSTAR_OP_INFO over the chain, as try_quick_chain_info);
// otherwise, or when that start fails, open_chain level by level with `runner`, reusing the top's
// inspection. For the commands that open a chain before a run of their own (commit, rebase, the
// edits): an overlay costs one start, not one per level.
Expected<bool> open_chain_at_once(const InfoOptions& opts, const PluginRegistry& plugins,
                                  const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version,
                                  const GuestInfoRunner& runner, OpenedChain& chain);

// `info --backing-chain` in one start (INSTAR_OP_INFO_FIRST of INSTAR_OP_INFO, which only inspects):
// the nodes collect_info would return, or nullopt when the guest did not inspect the whole chain
// (then `prefetched` holds the top's inspection, where it succeeded, for the ordinary path).
Expected<std::optional<std::vector<NodeInfo>>> try_quick_chain_info(const InfoOptions& opts,
                                                                    const PluginRegistry& plugins,
                                                                    const vmm::SandboxConfig& sandbox,
                                                                    std::uint32_t qemu_version,
                                                                    std::optional<PrefetchedInfo>& prefetched);

} // namespace instar
