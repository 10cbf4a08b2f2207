// Bytes of an image as qemu reads them through its backing chain, for a command whose format code
// needs them while it changes another image (resize of a qcow2 overlay whose write path copies a
// cluster's head from the backing file: RESIZE_DATA_NEED_BACKING). The host never parses them: they
// are read by dd's convert path in a sandbox of its own and handed to the next sandbox as a device.
#pragma once

#include "ops/edit_op.h"
#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"
#include "vmm/unique_fd.h"

#include <instar/guest/edit_resize.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct ImageRange {
    vmm::UniqueFd fd;       // an unlinked file ($TMPDIR) holding the bytes from `offset` on
    std::uint64_t size = 0; // at most the length asked; shorter where the image ends first
};

// [offset, offset + length) of `link`'s image and its backing chain (the chain opened again through
// the path policy with `allow_paths`). offset must be a multiple of length, length at most INT_MAX
// (dd's block size).
Expected<ImageRange> read_image_range(const ChainLink& link, std::uint64_t offset, std::uint64_t length,
                                      const std::vector<std::string>& allow_paths, bool unsafe_quirks,
                                      const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                                      std::uint32_t qemu_version);

// The ranges of the backing chain a refused edit asked for (RESIZE_DATA_NEED_BACKING records: resize,
// snapshot -a), in the order sent, when every record is well formed and there are at most
// RESIZE_MAX_BACKING_RANGES of them; else none. Untrusted, so checked as dd will read each (a length
// that divides the offset, at most RESIZE_MAX_BACKING_BYTES).
std::vector<guest::ResizeNeedBacking> backing_bytes_asked(const EditReport& report);

// The bytes a refused edit of `chain`'s top asked for (backing_bytes_asked), each range read through
// its backing chain (read_image_range of links[1]); none when the edit did not fail asking for them
// or the image has no backing file.
Expected<std::vector<ImageRange>> read_asked_backing_bytes(const Expected<EditReport>& report,
                                                             const OpenedChain& chain,
                                                             const std::vector<std::string>& allow_paths,
                                                             bool unsafe_quirks, const PluginRegistry& plugins,
                                                             const vmm::SandboxConfig& sandbox,
                                                             std::uint32_t qemu_version);

// The same for an edit of an image whose backing image is `backing` (commit's base, down a chain):
// each range read through `backing`'s chain.
Expected<std::vector<ImageRange>> read_asked_bytes_of(const EditReport& report, const ChainLink& backing,
                                                        const std::vector<std::string>& allow_paths,
                                                        bool unsafe_quirks, const PluginRegistry& plugins,
                                                        const vmm::SandboxConfig& sandbox,
                                                        std::uint32_t qemu_version);

// The read-only devices that hand `ranges` to the edit's run again, in order (EditRequest::extra).
std::vector<vmm::Device> range_devices(const std::vector<ImageRange>& ranges);

} // namespace instar
