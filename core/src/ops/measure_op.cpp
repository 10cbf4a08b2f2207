// measure's host side (measure_op.h): qemu's arithmetic, and one sandbox run for the source's walk.
#include "ops/measure_op.h"

#include "ops/block_traits.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/map_op.h"

#include <instar/guest/read_api.h>
#include <instar/guest_abi.h>

#include <boost/json.hpp>

#include <bit>
#include <cstring>

namespace instar {
namespace {

// The walk reads metadata, not data: a minute, plus a second per 4 GiB of virtual disk, bounds a
// guest that stops making progress without cutting short a walk over a huge sparse image.
constexpr std::chrono::milliseconds MEASURE_BASE_TIMEOUT{60'000};
constexpr std::uint64_t MEASURE_BYTES_PER_SECOND = 4ull << 30;

constexpr std::uint64_t L1E_SIZE = 8;               // qcow2.h
constexpr std::uint64_t L2E_SIZE_NORMAL = 8;
constexpr std::uint64_t L2E_SIZE_EXTENDED = 16;
constexpr std::uint64_t REFTABLE_ENTRY_SIZE = 8;
constexpr std::uint64_t QCOW_MAX_L1_SIZE = 32ull << 20;
constexpr std::uint64_t BME_TABLE_ENTRY_SIZE = 8;   // qcow2-bitmap.c
constexpr std::uint64_t BITMAP_DIR_ENTRY_SIZE = 24; // sizeof(Qcow2BitmapDirEntry)

std::uint64_t div_round_up(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }
std::uint64_t round_up(std::uint64_t a, std::uint64_t b) { return div_round_up(a, b) * b; }

// The measure plan: header, image table, snapshot name.
std::vector<std::uint8_t> plan_bytes(const instar_measure_plan& head, const std::vector<instar_convert_image>& images,
                                     const std::vector<instar_image_facts>& layers, const std::string& snapshot) {
    std::vector<std::uint8_t> out;
    append_bytes(out, &head, 1);
    append_bytes(out, images.data(), images.size());
    append_bytes(out, layers.data(), layers.size());
    out.insert(out.end(), snapshot.begin(), snapshot.end());
    return out;
}

} // namespace

std::uint64_t qcow2_refcount_metadata_size(std::uint64_t clusters, std::uint64_t cluster_size, int refcount_order) {
    const std::uint64_t blocks_per_table_cluster = cluster_size / REFTABLE_ENTRY_SIZE;
    const std::uint64_t refcounts_per_block = cluster_size * 8 / (1ull << refcount_order);
    std::uint64_t table = 0;
    std::uint64_t blocks = 0;
    std::uint64_t n = 0;
    std::uint64_t last = 0;
    do {
        last = n;
        blocks = div_round_up(clusters + table + blocks, refcounts_per_block);
        table = div_round_up(blocks, blocks_per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cluster_size;
}

std::uint64_t qcow2_prealloc_size(std::uint64_t total_size, std::uint64_t cluster_size, int refcount_order,
                                  bool extended_l2) {
    const std::uint64_t aligned = round_up(total_size, cluster_size);
    const std::uint64_t l2e = extended_l2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
    std::uint64_t meta = cluster_size; // header
    const std::uint64_t nl2e = round_up(aligned / cluster_size, cluster_size / l2e);
    meta += nl2e * l2e;
    const std::uint64_t nl1e = round_up(nl2e * l2e / cluster_size, cluster_size / L1E_SIZE);
    meta += nl1e * L1E_SIZE;
    meta += qcow2_refcount_metadata_size((meta + aligned) / cluster_size, cluster_size, refcount_order);
    return meta + aligned;
}

std::uint64_t qcow2_bitmaps_size(std::uint64_t virtual_size, const std::vector<MeasureBitmap>& bitmaps,
                                 std::uint64_t cluster_size) {
    std::uint64_t size = 0;
    std::uint64_t dir = 0;
    for (const auto& bm : bitmaps) {
        const std::uint64_t bytes = div_round_up(div_round_up(virtual_size, bm.granularity), 8);
        const std::uint64_t clusters = div_round_up(bytes, cluster_size);
        size += clusters * cluster_size;
        size += round_up(clusters * BME_TABLE_ENTRY_SIZE, cluster_size);
        dir += round_up(BITMAP_DIR_ENTRY_SIZE + bm.name.size(), 8);
    }
    return size + round_up(dir, cluster_size);
}

MeasureFigures raw_measure(std::optional<std::uint64_t> source_size, std::uint64_t size_option) {
    MeasureFigures f;
    f.required = source_size ? *source_size : round_up(size_option, 512);
    f.fully_allocated = f.required;
    return f;
}

bool qcow2_image_too_large(const Qcow2MeasureParams& p, std::uint64_t size) {
    const std::uint64_t vs = round_up(size, p.cluster_size);
    const std::uint64_t l2e = p.extended_l2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
    const std::uint64_t l2_tables = div_round_up(vs / p.cluster_size, p.cluster_size / l2e);
    return l2_tables > QCOW_MAX_L1_SIZE / L1E_SIZE;
}

MeasureFigures qcow2_measure(const Qcow2MeasureParams& p, std::uint64_t virtual_size, bool have_source,
                             std::uint64_t data, const std::optional<std::vector<MeasureBitmap>>& bitmaps) {
    const std::uint64_t vs = round_up(virtual_size, p.cluster_size);
    std::uint64_t required = 0;
    if (have_source)
        required = p.has_backing ? vs : data;
    if (p.full_preallocation)
        required = vs;
    MeasureFigures f;
    f.fully_allocated =
        p.luks_payload + qcow2_prealloc_size(vs, p.cluster_size, std::countr_zero(p.refcount_bits), p.extended_l2);
    f.required = f.fully_allocated - vs + required;
    if (p.version >= 3 && bitmaps)
        f.bitmaps = qcow2_bitmaps_size(virtual_size, *bitmaps, p.cluster_size);
    return f;
}

namespace {

// A measure in one start (INSTAR_OP_INFO_FIRST) is planned before the host knows the virtual size:
// its budget is computed for this size, and a larger source is walked on the ordinary path.
constexpr std::uint64_t QUICK_MEASURE_MAX_VIRTUAL = 1ull << 40;

// The plan of a measure of one image that stands alone, made before its info is known: device 0 is
// the image, device 1 this plan, device 2 no secrets; the guest takes the cluster size and the
// backing files from its inspections (INSTAR_MEASURE_PLAN_FROM_INFO). False: the ordinary path
// (a format it cannot read, or one measured without a walk).
Expected<bool> prepare_quick_measure(std::uint32_t cluster_size, std::uint32_t qemu_version, const FirstImage& first,
                                     PlanFile& plan_file, QuickCall& call) {
    const std::uint32_t traits = (*first.plugin)->qemu_traits;
    if (!((*first.plugin)->capabilities & CAP_CONVERT) || (traits & QEMU_NO_BLOCK_STATUS) != 0)
        return false;
    instar_measure_plan head{};
    head.magic = INSTAR_MEASURE_PLAN_MAGIC;
    head.image_count = 1;
    head.cluster_size = cluster_size;
    head.qemu_version = qemu_version;
    head.flags = INSTAR_MEASURE_PLAN_FROM_INFO;
    const instar_convert_image image{first.module, 0, 1, 0, INSTAR_CONVERT_NO_BACKING, 0};
    const instar_image_facts facts{first.file.allocated, image_facts_flags_of(traits), 0};
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, &image, 1);
    append_bytes(bytes, &facts, 1);
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    call.devices.push_back(*plan_device);
    const instar_measure_arg arg{1, 0};
    append_bytes(call.arg, &arg, 1);
    const auto budget = MEASURE_BASE_TIMEOUT + std::chrono::seconds(QUICK_MEASURE_MAX_VIRTUAL / MEASURE_BYTES_PER_SECOND);
    if (call.config.timeout < budget)
        call.config.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    return true;
}

} // namespace

Expected<bool> open_measure_source(const MeasureSourceSpec& spec, const PluginRegistry& plugins,
                                   const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version, MeasureSource& out) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};
    InfoOptions io;
    io.filename = spec.filename;
    io.format = spec.format;
    io.backing_chain = true;
    io.unsafe_quirks = spec.unsafe_quirks;
    io.allow_paths = spec.allow_paths;
    io.opens_without_key = !spec.secret;
    io.backing_in_one_node = true; // no backing keys: every level is inspected without one
    // A source that stands alone (or over backing files of its own format) is inspected and walked
    // in one start; any other takes the ordinary path, reusing that inspection.
    std::vector<std::optional<PrefetchedInfo>> prefetched;
    if (spec.quick_cluster_size && !spec.secret && !spec.snapshot) {
        PlanFile quick_plan;
        QuickRead q;
        q.images = {io};
        q.op = INSTAR_OP_MEASURE;
        q.max_virtual_size = QUICK_MEASURE_MAX_VIRTUAL;
        q.chains = true;
        q.prefetched = &prefetched;
        q.prepare = [&](const std::vector<const FirstImage*>& first, QuickCall& call) {
            return prepare_quick_measure(*spec.quick_cluster_size, qemu_version, *first[0], quick_plan, call);
        };
        std::vector<OpenedChain> chains;
        auto r = try_quick_read(q, plugins, sandbox, qemu_version, chains);
        if (!r)
            return Error{"Could not open '" + spec.filename + "': " + r.error()};
        if (*r) {
            out.quick = std::move(**r);
            out.quick_cluster_size = *spec.quick_cluster_size;
            out.chain.links = std::move(chains[0].links);
        }
    }
    if (!out.quick)
        if (auto opened = open_chain(io, plugins, reusing_inspection(*runner, prefetched, 0), out.chain); !opened)
            return Error{opened.error()};
    out.chain.links.front().secret = spec.secret;
    // qemu's img_open unlocks an encrypted source's key (measure may not read its data).
    if (auto unlocked = unlock_image(out.chain.links.front(), spec.secret, sandbox, qemu_version); !unlocked)
        return Error{unlocked.error()};
    const NodeInfo& top = out.chain.links.front().node;
    out.virtual_size = top.virtual_size;
    if (top.format == "qcow2") {
        const auto* compat = top.specific.if_contains("compat");
        out.qcow2_v3 = compat && compat->is_string() && compat->as_string() == "1.1";
        if (const auto* list = top.specific.if_contains("bitmaps"); list && list->is_array()) {
            for (const auto& v : list->as_array()) {
                if (!v.is_object())
                    continue;
                const auto& o = v.as_object();
                const auto* name = o.if_contains("name");
                const auto* gran = o.if_contains("granularity");
                MeasureBitmap bm;
                if (name && name->is_string())
                    bm.name = std::string(name->as_string());
                if (gran && gran->is_int64() && gran->as_int64() > 0)
                    bm.granularity = static_cast<std::uint64_t>(gran->as_int64());
                else if (gran && gran->is_uint64() && gran->as_uint64() > 0)
                    bm.granularity = gran->as_uint64();
                else
                    return Error{"Could not open '" + spec.filename + "': a bitmap without a granularity"};
                out.bitmaps.push_back(std::move(bm));
            }
        }
    }
    return true;
}

Expected<std::uint64_t> measure_data_clusters(const MeasureSourceSpec& spec, const MeasureSource& source,
                                              std::uint32_t cluster_size, vmm::SandboxConfig sandbox,
                                              std::uint32_t qemu_version) {
    for (const auto& link : source.chain.links)
        if (!((*link.plugin)->capabilities & CAP_CONVERT))
            return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                         std::string((*link.plugin)->name) + " images yet"};
    ImageTable table; // device 0: the plan
    auto top = table.add_chain(source.chain);
    if (!top)
        return Error{top.error()};
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file);
    if (!secrets_device)
        return Error{secrets_device.error()};
    if (auto ok = table.check_limits("measure"); !ok)
        return Error{ok.error()};
    instar_measure_plan head{};
    head.magic = INSTAR_MEASURE_PLAN_MAGIC;
    head.image_count = static_cast<std::uint32_t>(table.images.size());
    head.cluster_size = cluster_size;
    const std::string snapshot = spec.snapshot.value_or("");
    head.snapshot_len = static_cast<std::uint32_t>(snapshot.size());
    head.qemu_version = qemu_version;
    // What the host knows of each image's file: its allocated bytes, for qemu's check of qcow2
    // metadata preallocation (done in the guest, which sees the image's clusters).
    std::vector<instar_image_facts> layers(table.images.size());
    for (std::size_t i = 0; i < table.links.size(); ++i) {
        layers[i].allocated = table.links[i]->image.allocated;
        layers[i].flags = image_facts_flags_of((*table.links[i]->plugin)->qemu_traits);
    }
    PlanFile plan_file;
    auto plan_device = plan_file.write(plan_bytes(head, table.images, layers, snapshot));
    if (!plan_device)
        return Error{plan_device.error()};
    table.devices[0] = *plan_device;

    const auto budget = MEASURE_BASE_TIMEOUT + std::chrono::seconds(source.virtual_size / MEASURE_BYTES_PER_SECOND);
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    const instar_measure_arg arg{0, *secrets_device};
    // SAFETY: instar_measure_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    // The walk may have run already, in the start that inspected the source (for this cluster size).
    auto run = source.quick && source.quick_cluster_size == cluster_size
                   ? vmm::Outcome<vmm::RunResult>(*source.quick)
                   : vmm::run(sandbox, table.devices, table.modules, INSTAR_OP_MEASURE, {a, sizeof arg});
    if (!run)
        return Error{"Unable to get block status: " + run.error().message};

    // Untrusted records: every size and bound re-checked.
    std::string reason;
    std::optional<instar_convert_failure> failure;
    std::optional<instar_measure_record> result;
    for (const auto& rec : run->records) {
        if (rec.type == INSTAR_REC_REASON && reason.empty()) {
            reason = printable_reason(std::string(rec.data.begin(), rec.data.end()));
        } else if (rec.type == INSTAR_REC_CONVERT_FAILURE && rec.data.size() == sizeof(instar_convert_failure) &&
                   !failure) {
            instar_convert_failure f{};
            std::memcpy(&f, rec.data.data(), sizeof f);
            failure = f;
        } else if (rec.type == INSTAR_REC_MEASURE && rec.data.size() == sizeof(instar_measure_record) && !result) {
            instar_measure_record r{};
            std::memcpy(&r, rec.data.data(), sizeof r);
            result = r;
        }
    }
    const auto status = static_cast<guest::Status>(run->exit_status);
    if (reason.empty())
        reason = status_message(status);
    if (run->exit_status != 0) {
        if (failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN && failure->image < table.links.size()) {
            const std::string& name = table.links[failure->image]->name;
            for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
                reason.replace(at, 7, name);
            if (failure->image == 0 && reason.rfind(guest::SNAPSHOT_LOAD_FAILED, 0) == 0)
                return Error{reason}; // -l's snapshot, after the open
            return Error{"Could not open '" + name + "': " + reason};
        }
        return Error{"Unable to get block status: " + reason};
    }
    if (!result)
        return Error{"Unable to get block status: the sandbox sent no result"};
    const std::uint64_t limit = round_up(source.virtual_size, cluster_size);
    if (result->virtual_size != source.virtual_size || result->required > limit || result->required % cluster_size != 0)
        return Error{"Unable to get block status: the sandbox's result is inconsistent with the image"};
    return result->required;
}

} // namespace instar

namespace instar {
namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

std::string item_or(const std::vector<OptionItem>& items, std::string_view key, std::string fallback) {
    for (auto it = items.rbegin(); it != items.rend(); ++it)
        if (it->key == key)
            return it->value;
    return fallback;
}

// The vhdx block size instar's writer picks (vhdx_create_params.cpp): -o block_size rounded up to
// MiB and capped at 256 MiB, or by size.
std::uint64_t vhdx_block_size(const std::vector<OptionItem>& items, std::uint64_t size) {
    // Size options arrive normalised to bytes (cmd_measure).
    std::uint64_t bs = std::strtoull(item_or(items, "block_size", "0").c_str(), nullptr, 10);
    bs = round_up(bs, MiB);
    if (bs > 256 * MiB)
        bs = 256 * MiB;
    if (bs == 0)
        bs = size > (32ull << 40) ? 64 * MiB : size > (100ull << 30) ? 32 * MiB : size > (1ull << 30) ? 16 * MiB : 8 * MiB;
    return bs;
}

enum class VmdkKind { Sparse, TwoGbSparse, Flat, Stream };
VmdkKind vmdk_kind(const std::vector<OptionItem>& items) {
    const std::string sub = item_or(items, "subformat", "monolithicSparse");
    if (sub == "streamOptimized")
        return VmdkKind::Stream;
    if (sub == "twoGbMaxExtentSparse")
        return VmdkKind::TwoGbSparse;
    if (sub == "monolithicFlat" || sub == "twoGbMaxExtentFlat" || sub == "vmfs")
        return VmdkKind::Flat;
    return VmdkKind::Sparse;
}

constexpr std::uint64_t VMDK_GRAIN = 64 * KiB;
constexpr std::uint64_t VMDK_GT_GRAINS = 512; // grain table entries
constexpr std::uint64_t VMDK_EXTENT_MAX = 2ull << 30; // twoGbMaxExtent*

// One sparse extent's metadata: header and descriptor, redundant and primary grain directory and
// tables, each padded to a grain, and a grain of slack.
std::uint64_t vmdk_sparse_overhead(std::uint64_t extent_size) {
    const std::uint64_t grains = div_round_up(extent_size, VMDK_GRAIN);
    const std::uint64_t gts = div_round_up(grains, VMDK_GT_GRAINS);
    const std::uint64_t tables = round_up(4 * gts, 512) + gts * VMDK_GT_GRAINS * 4;
    return 2 * VMDK_GRAIN + 2 * round_up(tables, VMDK_GRAIN) + VMDK_GRAIN;
}

} // namespace

std::uint64_t estimate_unit(const std::string& format, const std::vector<OptionItem>& items, std::uint64_t size) {
    if (format == "vpc")
        return item_or(items, "subformat", "dynamic") == "fixed" ? 0 : 2 * MiB;
    if (format == "vhdx")
        return item_or(items, "subformat", "dynamic") == "fixed" ? 0 : vhdx_block_size(items, size);
    if (format == "vmdk")
        return vmdk_kind(items) == VmdkKind::Flat ? 0 : VMDK_GRAIN;
    return 0;
}

MeasureFigures estimate_figures(const std::string& format, const std::vector<OptionItem>& items, std::uint64_t size,
                                std::optional<std::uint64_t> data) {
    MeasureFigures f;
    const std::uint64_t unit = estimate_unit(format, items, size);
    if (format == "vpc") {
        // CHS geometry may round the size up by less than a cylinder (16 heads x 255 sectors).
        const std::uint64_t vs = round_up(size, 512) + 16 * 255 * 512;
        if (unit == 0) {
            f.fully_allocated = f.required = vs + 512 + 64 * KiB;
            return f;
        }
        const std::uint64_t blocks = div_round_up(vs, unit);
        // footer copy, dynamic header, BAT, footer; each block with its sector bitmap; slack.
        const std::uint64_t meta = 512 + 1024 + round_up(4 * blocks, 512) + 512 + 64 * KiB;
        f.fully_allocated = meta + blocks * (unit + 512);
        f.required = meta + (data ? *data / unit : blocks) * (unit + 512);
        return f;
    }
    if (format == "vhdx") {
        const std::uint64_t bs = vhdx_block_size(items, size);
        const std::uint64_t blocks = div_round_up(size, bs);
        const std::uint64_t chunk_ratio = (1ull << 32) / bs; // 2^23 sectors of 512 bytes per bitmap block
        const std::uint64_t bat = round_up(8 * (blocks + div_round_up(blocks, chunk_ratio) + 1), MiB);
        std::uint64_t log = std::strtoull(item_or(items, "log_size", "1048576").c_str(), nullptr, 10);
        log = round_up(std::max<std::uint64_t>(log, MiB), MiB);
        // Header section, log, BAT, the 5 MiB gap (metadata region) before the payload, a MiB of
        // alignment before the first appended block, a MiB of slack (the log's trailing sectors).
        const std::uint64_t meta = MiB + log + bat + 5 * MiB + MiB + MiB;
        if (unit == 0) {
            // A fixed disk's payload, and (instar's writer today) blocks appended for the data.
            f.fully_allocated = f.required = meta + round_up(size, MiB) + blocks * bs;
            return f;
        }
        f.fully_allocated = meta + blocks * bs;
        f.required = meta + (data ? *data / unit : blocks) * bs;
        return f;
    }
    // vmdk
    const VmdkKind kind = vmdk_kind(items);
    const std::uint64_t descriptor = 64 * KiB;
    if (kind == VmdkKind::Flat) {
        const std::uint64_t extents = item_or(items, "subformat", "") == "twoGbMaxExtentFlat"
                                          ? std::max<std::uint64_t>(1, div_round_up(size, VMDK_EXTENT_MAX))
                                          : 1;
        f.fully_allocated = f.required = round_up(size, 512) + descriptor + extents * 512;
        return f;
    }
    const std::uint64_t grains = div_round_up(size, VMDK_GRAIN);
    const std::uint64_t used = data ? *data / VMDK_GRAIN : grains;
    if (kind == VmdkKind::Stream) {
        // Each grain: a marker sector, the deflated grain (incompressible data grows by a few
        // bytes per 16 KiB block), padded to sectors. Grain tables with markers, the directory,
        // footer and end-of-stream markers, header and descriptor.
        const std::uint64_t per_grain = VMDK_GRAIN + 2 * KiB;
        const std::uint64_t gts = div_round_up(grains, VMDK_GT_GRAINS);
        const std::uint64_t meta = 2 * VMDK_GRAIN + gts * (512 + VMDK_GT_GRAINS * 4) + round_up(4 * gts, 512) + 8 * 512;
        f.fully_allocated = meta + grains * per_grain;
        f.required = meta + used * per_grain;
        return f;
    }
    std::uint64_t meta = 0;
    if (kind == VmdkKind::TwoGbSparse) {
        const std::uint64_t extents = std::max<std::uint64_t>(1, div_round_up(size, VMDK_EXTENT_MAX));
        meta = descriptor + extents * vmdk_sparse_overhead(std::min(size, VMDK_EXTENT_MAX));
    } else {
        meta = vmdk_sparse_overhead(size);
    }
    f.fully_allocated = meta + grains * VMDK_GRAIN;
    f.required = meta + used * VMDK_GRAIN;
    return f;
}

} // namespace instar
