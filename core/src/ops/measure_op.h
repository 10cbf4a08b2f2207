// measure's host side: the source's allocation walk run in the sandbox (INSTAR_OP_MEASURE,
// guest/src/op_measure.cpp), and the target format's measure hooks (instar/measure.h: each plugin's
// size arithmetic) asked with trusted inputs. Documented in docs/measure.md.
#pragma once

#include "ops/info_op.h"
#include "options/option_list.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <instar/measure.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace instar {

// One persistent bitmap of the source, as info reported it.
struct SourceBitmap {
    std::string name;
    std::uint64_t granularity = 0;
};

// The source, opened (with its whole backing chain) and described.
struct MeasureSource {
    OpenedChain chain;
    std::uint64_t virtual_size = 0;
    bool qcow2_v3 = false;               // the top is a qcow2 version 3 image: it can hold bitmaps
    std::vector<SourceBitmap> bitmaps;   // the top's persistent bitmaps
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

// A target format's measure hooks (instar/measure.h) asked with trusted inputs: the request and the
// storage it points into.
class TargetMeasure {
public:
    // `items`: the -o items, checked against the target's option table (Size-typed values are
    // normalised to decimal bytes here); `size_option`: --size or -o size; `source`: the measured
    // image (nullptr for --size); `bitmaps`: the source's persistent bitmaps when it can carry them.
    TargetMeasure(const MeasureHooks& hooks, std::vector<OptionItem> items, std::span<const OptionDesc> table,
                  std::uint32_t qemu_version, std::uint64_t size_option, const std::vector<std::string>& secret_ids,
                  std::uint32_t flags, std::uint64_t virtual_size, const std::vector<SourceBitmap>* bitmaps);
    TargetMeasure(const TargetMeasure&) = delete;
    TargetMeasure& operator=(const TargetMeasure&) = delete;

    Expected<MeasurePlan> plan() const;
    Expected<MeasureAnswer> figures(std::uint64_t data) const;

private:
    const MeasureHooks& hooks_;
    std::vector<OptionItem> items_;
    std::vector<MeasureOption> options_;
    std::vector<std::string> secret_ids_;
    std::vector<const char*> secret_ptrs_;
    std::vector<SourceBitmap> bitmaps_;
    std::vector<MeasureBitmap> bitmap_views_;
    MeasureRequest request_{};
};

} // namespace instar
