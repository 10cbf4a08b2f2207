// measure's host side (measure_op.h): one sandbox run for the source's walk, and the target's hooks.
#include "ops/measure_op.h"

#include "ops/block_traits.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/map_op.h"
#include "options/size.h"

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
                SourceBitmap bm;
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
    const std::uint64_t limit = measure_round_up(source.virtual_size, cluster_size);
    if (result->virtual_size != source.virtual_size || result->required > limit || result->required % cluster_size != 0)
        return Error{"Unable to get block status: the sandbox's result is inconsistent with the image"};
    return result->required;
}

} // namespace instar

namespace instar {

TargetMeasure::TargetMeasure(const MeasureHooks& hooks, std::vector<OptionItem> items,
                             std::span<const OptionDesc> table, std::uint32_t qemu_version, std::uint64_t size_option,
                             const std::vector<std::string>& secret_ids, std::uint32_t flags,
                             std::uint64_t virtual_size, const std::vector<SourceBitmap>* bitmaps)
    : hooks_(hooks), items_(std::move(items)), secret_ids_(secret_ids) {
    // The hooks read sizes in bytes: instar's size syntax (k, M, ...) stays in the core.
    for (auto& item : items_)
        if (const OptionDesc* d = find_option(table, item.key, qemu_version); d && d->type == OptionType::Size)
            item.value = std::to_string(parse_qemu_size(item.value, qemu_version).value);
    for (const auto& item : items_)
        options_.push_back({item.key.c_str(), item.value.c_str()});
    for (const auto& id : secret_ids_)
        secret_ptrs_.push_back(id.c_str());
    if (bitmaps) {
        flags |= MEASURE_SOURCE_BITMAPS;
        bitmaps_ = *bitmaps;
        for (const auto& b : bitmaps_)
            bitmap_views_.push_back({b.name.c_str(), b.granularity});
    }
    request_.options = options_.data();
    request_.option_count = static_cast<std::uint32_t>(options_.size());
    request_.flags = flags;
    request_.size_option = size_option;
    request_.virtual_size = (flags & MEASURE_HAVE_SOURCE) ? virtual_size : size_option;
    request_.qemu_version = qemu_version;
    request_.secret_count = static_cast<std::uint32_t>(secret_ptrs_.size());
    request_.secret_ids = secret_ptrs_.data();
    request_.bitmaps = bitmap_views_.data();
    request_.bitmap_count = static_cast<std::uint32_t>(bitmap_views_.size());
}

Expected<MeasurePlan> TargetMeasure::plan() const {
    MeasurePlan p;
    char error[MEASURE_ERROR_MAX] = {};
    if (!hooks_.plan(request_, p, error))
        return Error{error};
    // A unit the walk cannot count in is the plugin's bug, refused rather than trusted.
    if (p.walk_unit != 0 && (!std::has_single_bit(p.walk_unit) || p.walk_unit > (1ull << 31)))
        return Error{"measure: the target format's plugin asked for a walk in " + std::to_string(p.walk_unit) +
                     "-byte units"};
    return p;
}

Expected<MeasureAnswer> TargetMeasure::figures(std::uint64_t data) const {
    MeasureAnswer a;
    char error[MEASURE_ERROR_MAX] = {};
    if (!hooks_.figures(request_, data, a, error))
        return Error{error};
    return a;
}

} // namespace instar
