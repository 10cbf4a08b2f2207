// `convert` as an operation: open every source and its backing chain (through the path policy),
// write the plan, and run one sandbox in which the sources' formats read and the target's format
// creates and writes the new image. The target appears atomically (ops/atomic_output.h).
#pragma once

#include "ops/create_op.h"
#include "output/progress.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct ConvertSpec {
    std::vector<std::string> sources;          // SRC arguments, concatenated in order
    std::optional<std::string> source_format;  // -f
    // Per source (same length as `sources`, or empty): a format named by the source's own name
    // (json:{"driver":...} or --image-opts driver=...), used instead of source_format.
    std::vector<std::optional<std::string>> source_formats;
    // Each source's secret (--object secret named by its key-secret / encrypt.key-secret), by
    // source index; shorter than `sources` (or nullopt) where a source has none.
    std::vector<std::optional<std::string>> source_secrets;
    std::vector<std::optional<std::string>> source_headers; // per source: luks's header= (InfoOptions::header)
    std::vector<bool> source_no_backing; // per source: "backing": null (the image alone; unallocated reads zeros)
    std::optional<std::string> snapshot;       // -l (id or name; may be empty: qemu finds nothing)
    // -l snapshot.id=ID,snapshot.name=NAME: `snapshot` is unset and these name it, each matched
    // exactly when given (at least one is).
    bool snapshot_exact = false;
    std::optional<std::string> snapshot_id, snapshot_name;
    // The target as create would make it: filename, plugin, options, backing file/format (-B/-F or
    // -o backing_file/backing_fmt); size is filled in from the sources.
    CreateSpec target;
    std::uint64_t min_sparse = 4096;           // -S bytes; 0 writes everything
    bool compressed = false;                   // -c
    bool out_of_order = false;                 // -W
    unsigned coroutines = 8;                   // -m (qemu's default 8): only whether it is 1 matters
    // -t / -T: qemu's cache modes (none/off, writeback, writethrough, directsync, unsafe), already
    // checked; what each means for instar's files is in docs/convert.md ("Cache modes").
    std::string target_cache = "unsafe";
    std::string source_cache = "writeback";
    bool unsafe_quirks = false;
    std::vector<std::string> allow_paths;
    Progress* progress = nullptr;              // -p / --progress=json; nullptr: none
    // -n: write into the existing file target.filename, opened with target_format (no probing);
    // target.plugin is that format's plugin or nullptr when instar has none. Only filename,
    // plugin and backing_file (-B: the target is then taken to have a backing file) are used.
    bool existing_target = false;
    bool target_is_zero = false;               // --target-is-zero (only with -n)
    std::string target_format;                 // -n: -O as given
    std::optional<std::string> target_cache_error; // -n: a bad -t, reported where qemu checks it
    // -n: a qcow2 target with the dirty bit is repaired first, as qemu's read-write open does
    // (dirty_repair.h), check's stderr text handed here. Unset: opened as it is (the writer refuses).
    std::function<void(const std::string&)> repair_dirty;
    // -n: the target's name could not be opened (json:/--target-image-opts errors, -O with
    // --target-image-opts): reported where qemu opens the target, after the sources and -t.
    std::optional<std::string> target_open_error;
    std::uint64_t rate_limit = 0;              // -r bytes per second; 0 = none
    bool salvage = false;                      // --salvage
    bool bitmaps = false;                      // --bitmaps
    bool skip_broken_bitmaps = false;          // --skip-broken-bitmaps
    std::optional<std::string> target_compat;  // a new qcow2 target's -o compat (bitmaps need 1.1)
    bool quiet = false;                        // -q: no salvage warnings
    // dd (qemu-img dd): copy only img_dd's byte window of the one source into a new target of the
    // window's size, every block written (min_sparse 0). The window follows img_dd from the source's
    // size: size = min(size, count * bs); window [skip * bs, size), empty when skip * bs > size.
    // target.plugin may be nullptr (checked after the source opens, as img_dd does).
    struct DdWindow {
        std::uint64_t block_size = 512;             // bs (1..INT_MAX)
        std::optional<std::uint64_t> count;         // count=, in blocks
        std::optional<std::uint64_t> skip;          // skip=, in blocks
        bool* skipped_past_end = nullptr;           // set when skip is past the end (qemu warns)
        // Without a plugin for -O: the message img_dd gives once the input is open.
        std::string no_plugin_error = "Unknown file format";
        // of= is no name bdrv_create takes (json:, a protocol): img_dd's message, given once the
        // input is open and the output format is known.
        std::optional<std::string> target_name_error;
    };
    std::optional<DdWindow> dd;
    // --salvage: qemu's warnings (without the "prog: warning: " prefix), in order; may be nullptr.
    std::vector<std::string>* warnings = nullptr;
};

// Errors are qemu-img's messages without the "prog: " prefix. false (with -n only): --target-is-zero
// with a backing file, which qemu-img reports and then exits 0 having written nothing.
Expected<bool> convert_image(const ConvertSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                             std::uint32_t qemu_version);

} // namespace instar
