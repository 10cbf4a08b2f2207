// measure's host side: qemu's size arithmetic for raw and qcow2 targets (qcow2_measure, raw_measure,
// computed here from trusted inputs), and the source's allocation walk run in the sandbox
// (INSTAR_OP_MEASURE, guest/src/op_measure.cpp). Documented in docs/measure.md.
#pragma once

#include "ops/info_op.h"
#include "options/option_list.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace instar {

// qemu's BlockMeasureInfo.
struct MeasureFigures {
    std::uint64_t required = 0;
    std::uint64_t fully_allocated = 0;
    std::optional<std::uint64_t> bitmaps; // printed only when set (qcow2 v3 source and target)
};

// qcow2_measure's options after validation (defaults: qemu's).
struct Qcow2MeasureParams {
    std::uint64_t cluster_size = 65536;
    bool extended_l2 = false;
    int version = 3;
    std::uint64_t refcount_bits = 16;
    bool full_preallocation = false; // preallocation=full or falloc: every cluster is required
    bool has_backing = false;        // backing_file given: every cluster is required
    std::uint64_t luks_payload = 0;  // encrypt.format=luks: the LUKS header, in whole clusters
};

// qcow2_refcount_metadata_size (generous_increase = false) and qcow2_calc_prealloc_size.
std::uint64_t qcow2_refcount_metadata_size(std::uint64_t clusters, std::uint64_t cluster_size, int refcount_order);
std::uint64_t qcow2_prealloc_size(std::uint64_t total_size, std::uint64_t cluster_size, int refcount_order,
                                  bool extended_l2);

// One persistent bitmap of the source, as info reported it.
struct MeasureBitmap {
    std::string name;
    std::uint64_t granularity = 0;
};
// qcow2_get_persistent_dirty_bitmap_size.
std::uint64_t qcow2_bitmaps_size(std::uint64_t virtual_size, const std::vector<MeasureBitmap>& bitmaps,
                                 std::uint64_t cluster_size);

// The source, opened (with its whole backing chain) and described.
struct MeasureSource {
    OpenedChain chain;
    std::uint64_t virtual_size = 0;
    bool qcow2_v3 = false;               // the top is a qcow2 version 3 image: it can hold bitmaps
    std::vector<MeasureBitmap> bitmaps;  // the top's persistent bitmaps
    // The walk, when it ran in the start that inspected the source (open_measure_source with
    // MeasureSourceSpec::quick_cluster_size), and the cluster size it walked with.
    std::optional<vmm::RunResult> quick;
    std::uint32_t quick_cluster_size = 0;
};

struct MeasureSourceSpec {
    std::string filename;
    std::optional<std::string> format; // -f
    std::optional<std::string> snapshot; // -l (an id or a name)
    std::vector<std::string> allow_paths;
    bool unsafe_quirks = false;
    std::optional<std::string> secret; // the source's (--object secret), never printed
    // The cluster size measure_data_clusters will walk with, where the command knows it before the
    // source is open: an image that stands alone (or over a chain of its own format) is then
    // inspected and walked in one sandbox start (info_first.h). Unset: the walk starts on its own.
    std::optional<std::uint32_t> quick_cluster_size;
};

// Opens the source as qemu-img's img_open does; the error is qemu's message.
Expected<bool> open_measure_source(const MeasureSourceSpec& spec, const PluginRegistry& plugins,
                                   const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version, MeasureSource& out);

// The guest's walk: bytes of `cluster_size` clusters holding data anywhere in the source's chain
// (qcow2_measure's `required` loop). Checked against the source's size before it is returned.
Expected<std::uint64_t> measure_data_clusters(const MeasureSourceSpec& spec, const MeasureSource& source,
                                              std::uint32_t cluster_size, vmm::SandboxConfig sandbox,
                                              std::uint32_t qemu_version);

// raw_measure.
MeasureFigures raw_measure(std::optional<std::uint64_t> source_size, std::uint64_t size_option);

// qcow2_measure's figures from validated parameters: `data` is the walk's result (ignored when
// backing or full preallocation make every cluster required). The size check ("The image size is
// too large") is the caller's (qcow2_image_too_large), as qemu does it before opening the walk.
MeasureFigures qcow2_measure(const Qcow2MeasureParams& p, std::uint64_t virtual_size, bool have_source,
                             std::uint64_t data, const std::optional<std::vector<MeasureBitmap>>& bitmaps);
bool qcow2_image_too_large(const Qcow2MeasureParams& p, std::uint64_t size);

// instar's extension (`measure --estimate`) for targets qemu-img cannot measure (vmdk, vpc, vhdx):
// upper bounds of what instar's own writers produce (the sum of the files' lengths), so that
// `instar convert` output never exceeds fully_allocated. The allocation unit the walk counts data
// in (vpc and vhdx blocks, vmdk grains), or 0 when the layout does not depend on the data (flat,
// fixed). Both take the target's validated -o items and the virtual size.
std::uint64_t estimate_unit(const std::string& format, const std::vector<OptionItem>& items, std::uint64_t size);
MeasureFigures estimate_figures(const std::string& format, const std::vector<OptionItem>& items, std::uint64_t size,
                                std::optional<std::uint64_t> data);

} // namespace instar
