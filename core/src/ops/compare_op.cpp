// compare's host side: both chains opened, one plan, one sandbox run, the record decoded.
#include "ops/compare_op.h"

#include "ops/block_traits.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/info_op.h"

#include <algorithm>
#include <cstring>

namespace instar {
namespace {

// Comparing runs at disk speed. The watchdog bounds a guest that stops making progress: a minute,
// plus one second per 16 MiB of both virtual disks (far slower than any disk), so a hostile image
// claiming petabytes cannot keep a sandbox for long unless it really holds the data.
constexpr std::chrono::milliseconds COMPARE_BASE_TIMEOUT{60'000};
constexpr std::uint64_t COMPARE_BYTES_PER_SECOND = 16u << 20;

// A compare in one start (INSTAR_OP_INFO_FIRST) is planned before the host knows the virtual sizes:
// its budget is computed for two images of this size, and a larger one is compared on the ordinary
// path (three starts, the budget from info's sizes), where two starts more are nothing against
// reading it.
constexpr std::uint64_t QUICK_COMPARE_MAX_VIRTUAL = 64ull << 30;

std::uint64_t whole_sectors(std::uint64_t v) { return v > UINT64_MAX - 511 ? v : (v + 511) / 512 * 512; }

// The plan of a compare of two images that stand alone, made before their info is known: devices 0
// and 1 are the images, device 2 this plan; the guest takes their cluster sizes from its inspections
// (INSTAR_COMPARE_CLUSTER_FROM_INFO).
Expected<bool> prepare_quick_compare(const CompareSpec& spec, std::uint32_t qemu_version,
                                     const std::vector<const FirstImage*>& first, PlanFile& plan_file,
                                     QuickCall& call) {
    instar_compare_plan head{};
    head.magic = INSTAR_COMPARE_PLAN_MAGIC;
    head.image_count = 2;
    head.flags = (spec.strict ? INSTAR_COMPARE_STRICT : 0u) | INSTAR_COMPARE_CLUSTER_FROM_INFO |
                 INSTAR_COMPARE_CHAIN_FROM_INFO;
    head.qemu_version = qemu_version;
    std::vector<instar_convert_image> images;
    std::vector<std::uint32_t> flags;
    std::vector<instar_image_facts> facts;
    for (std::uint32_t i = 0; i < 2; ++i) {
        const LoadedPlugin* plugin = first[i]->plugin;
        if (!((*plugin)->capabilities & CAP_CONVERT))
            return false; // the ordinary path words the refusal
        images.push_back({first[i]->module, i, 2, 0, INSTAR_CONVERT_NO_BACKING, 0});
        const std::uint32_t traits = (*plugin)->qemu_traits;
        flags.push_back(compare_flags_of(traits));
        facts.push_back({first[i]->file.allocated, image_facts_flags_of(traits), 0});
    }
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, images.data(), images.size());
    append_bytes(bytes, flags.data(), flags.size());
    append_bytes(bytes, facts.data(), facts.size());
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    call.devices.push_back(*plan_device);
    const instar_compare_arg arg{2, 0};
    append_bytes(call.arg, &arg, 1);
    const auto budget = COMPARE_BASE_TIMEOUT + std::chrono::seconds(2 * (QUICK_COMPARE_MAX_VIRTUAL / COMPARE_BYTES_PER_SECOND));
    if (call.config.timeout < budget)
        call.config.timeout = budget;
    return true;
}

} // namespace

Expected<CompareReport> compare_images(const CompareSpec& spec, const PluginRegistry& plugins,
                                       vmm::SandboxConfig sandbox, std::uint32_t qemu_version) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};
    // The comparison's runs (not the inspections the runner makes): both sides' next chunk is read
    // while the guest compares this one (docs/compare.md, "Read-ahead").
    sandbox.read_ahead = vmm::read_ahead_requested();

    // Both images with their whole backing chains, FILE1 first, as qemu-img opens them.
    std::vector<OpenedChain> chains(2);
    const std::string* names[2] = {&spec.file1, &spec.file2};
    const std::optional<std::string>* formats[2] = {&spec.format1, &spec.format2};
    std::vector<InfoOptions> opens(2);
    for (std::size_t i = 0; i < 2; ++i) {
        InfoOptions& io = opens[i];
        io.filename = *names[i];
        io.format = *formats[i];
        io.backing_chain = !spec.no_backing[i];
        io.unsafe_quirks = spec.unsafe_quirks;
        io.allow_paths = spec.allow_paths;
        io.header = spec.headers[i];
        io.opens_without_key = !(i < spec.secrets.size() && spec.secrets[i]);
        io.backing_in_one_node = true; // no backing keys: every level is inspected without one
    }
    // Two images that stand alone are inspected and compared in one sandbox start (info_first.h);
    // otherwise the ordinary path reuses the inspections. Not with -p: qemu-img prints the first
    // progress line once both images are open, before the comparison.
    std::optional<vmm::RunResult> quick;
    std::vector<std::optional<PrefetchedInfo>> prefetched;
    PlanFile quick_plan;
    const bool secrets = std::any_of(spec.secrets.begin(), spec.secrets.end(), [](const auto& s) { return s.has_value(); });
    if (!spec.progress && !secrets && !spec.headers[0] && !spec.headers[1]) {
        QuickRead q;
        q.images = opens;
        q.op = INSTAR_OP_COMPARE;
        q.max_virtual_size = QUICK_COMPARE_MAX_VIRTUAL;
        q.prepare = [&](const std::vector<const FirstImage*>& first, QuickCall& call) {
            return prepare_quick_compare(spec, qemu_version, first, quick_plan, call);
        };
        q.prefetched = &prefetched;
        q.chains = true; // backing chains of the tops' formats join the plan in the guest
        auto r = try_quick_read(q, plugins, sandbox, qemu_version, chains);
        if (!r)
            return Error{"error while comparing: " + r.error()};
        quick = std::move(*r);
    }
    for (std::size_t i = 0; i < 2; ++i) {
        if (!quick)
            if (auto opened = open_chain(opens[i], plugins, reusing_inspection(*runner, prefetched, i), chains[i]);
                !opened)
                return Error{opened.error()};
        if (i < spec.secrets.size() && !chains[i].links.empty())
            chains[i].links.front().secret = spec.secrets[i];
        for (const auto& link : chains[i].links)
            if (!((*link.plugin)->capabilities & CAP_CONVERT))
                return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                             std::string((*link.plugin)->name) + " images yet"};
    }

    ImageTable table; // device 0: the plan
    if (auto added = table.add_chains(chains); !added)
        return Error{added.error()};
    if (auto ok = table.check_limits("compare"); !ok)
        return Error{ok.error()};

    instar_compare_plan head{};
    head.magic = INSTAR_COMPARE_PLAN_MAGIC;
    head.image_count = static_cast<std::uint32_t>(table.images.size());
    head.flags = (spec.strict ? INSTAR_COMPARE_STRICT : 0u) | (spec.progress ? INSTAR_COMPARE_PROGRESS : 0u);
    head.qemu_version = qemu_version;
    // qemu's block-layer facts about each format (its plugin's qemu_traits), and what the host knows
    // of each image's file: its allocated bytes, for qcow2's metadata-preallocation check, which the
    // guest runs over the image's clusters as map's and measure's walks do (file_status.h).
    std::vector<std::uint32_t> flags;
    std::vector<instar_image_facts> facts(table.links.size());
    for (std::size_t i = 0; i < table.links.size(); ++i) {
        const std::uint32_t traits = (*table.links[i]->plugin)->qemu_traits;
        flags.push_back(compare_flags_of(traits));
        facts[i].allocated = table.links[i]->image.allocated;
        facts[i].flags = image_facts_flags_of(traits);
    }
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, table.images.data(), table.images.size());
    append_bytes(bytes, flags.data(), flags.size());
    append_bytes(bytes, facts.data(), facts.size());
    PlanFile plan_file;
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    table.devices[0] = *plan_device;
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file);
    if (!secrets_device)
        return Error{secrets_device.error()};

    CompareReport report;
    report.size1 = whole_sectors(chains[0].links.front().node.virtual_size);
    report.size2 = whole_sectors(chains[1].links.front().node.virtual_size);
    if (spec.opened)
        spec.opened(report.size1, report.size2);
    const auto budget = COMPARE_BASE_TIMEOUT + std::chrono::seconds((report.size1 / COMPARE_BYTES_PER_SECOND) +
                                                                    (report.size2 / COMPARE_BYTES_PER_SECOND));
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    if (spec.progress)
        sandbox.progress = spec.progress;
    const instar_compare_arg arg{0, *secrets_device};
    // SAFETY: instar_compare_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    // The comparison may have run already, in the start that inspected the images.
    auto run = quick ? vmm::Outcome<vmm::RunResult>(std::move(*quick))
                     : vmm::run(sandbox, table.devices, table.modules, INSTAR_OP_COMPARE, {a, sizeof arg});
    if (!run)
        return Error{"error while comparing: " + run.error().message};

    // Untrusted: exactly one well-formed record, every field inside what the plan allows.
    std::string reason;
    std::optional<instar_compare_record> rec;
    bool bad = false;
    for (const auto& r : run->records) {
        if (r.type == INSTAR_REC_REASON && reason.empty())
            reason = printable_reason(std::string(r.data.begin(), r.data.end()));
        else if (r.type == INSTAR_REC_COMPARE) {
            if (rec || r.data.size() != sizeof(instar_compare_record)) {
                bad = true;
                continue;
            }
            instar_compare_record c{};
            std::memcpy(&c, r.data.data(), sizeof c);
            rec = c;
        }
    }
    if (!run->host_error.empty())
        return Error{"error while comparing: " + run->host_error};
    if (run->exit_status != 0 || !rec || bad) {
        std::string why = reason.empty() ? status_message(static_cast<guest::Status>(run->exit_status)) : reason;
        return Error{"error while comparing: " + why};
    }
    if (rec->outcome == INSTAR_COMPARE_OPEN_FAILED) {
        if (rec->image >= table.links.size())
            return Error{"error while comparing: the sandbox sent an invalid record"};
        const std::string& name = table.links[rec->image]->name;
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, name);
        return Error{"Could not open '" + name + "': " + reason};
    }
    const bool known = rec->outcome <= INSTAR_COMPARE_READ_FAILED;
    const bool sized = rec->size_mismatch == 0 || report.size1 != report.size2;
    const std::uint64_t limit = std::max(report.size1, report.size2);
    if (!known || rec->image > 1 || !sized || rec->offset > limit ||
        (rec->status != 0 && rec->outcome != INSTAR_COMPARE_READ_FAILED))
        return Error{"error while comparing: the sandbox sent an invalid record"};
    report.outcome = rec->outcome;
    report.side = rec->image;
    report.offset = rec->offset;
    report.size_mismatch = rec->size_mismatch != 0;
    report.read_status = rec->status;
    return report;
}

} // namespace instar
