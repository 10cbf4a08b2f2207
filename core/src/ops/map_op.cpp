// map's host side: chain opened, plan written, one sandbox run, runs checked and printed as qemu-img.
#include "ops/map_op.h"

#include "ops/block_traits.h"
#include "ops/guest_info_runner.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"
#include "ops/info_first.h"
#include "ops/info_op.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <map>
#include <cstdio>
#include <cstring>

namespace instar {
namespace {

// map reads only metadata, but a huge sparse chain has many of it: a minute, plus a second per GiB
// of virtual disk, bounds a guest that stops making progress.
constexpr std::chrono::milliseconds MAP_BASE_TIMEOUT{60'000};
constexpr std::uint64_t MAP_BYTES_PER_SECOND = 1ull << 30;
// A walk keeps one reader per layer (L2 caches, vmdk grain tables) and a 40 KiB batch.
constexpr std::uint64_t MAP_GUEST_MEMORY = INSTAR_MIN_GUEST_MEMORY;
// Runs handed to a sink at a time: 48 KiB of entries and ~128 KiB of JSON text, reused.
constexpr std::size_t MAP_SINK_SLICE = 1024;

// A map run (the walk, or the key unlock) only reads: while it ends with the guest out of memory,
// it runs again with a roomier config (vmm::roomier) from `ran`, the config it last ran with.
void rerun_while_out_of_memory(vmm::Outcome<vmm::RunResult>& run, const vmm::SandboxConfig& ran,
                               const ImageTable& table, std::span<const std::uint8_t> arg) {
    for (auto next = vmm::roomier(ran);
         run && run->exit_status == static_cast<std::int32_t>(guest::Status::NoMemory) && next;
         next = vmm::roomier(*next))
        run = vmm::run(*next, table.devices, table.modules, INSTAR_OP_MAP, arg);
}
// A map in one start (INSTAR_OP_INFO_FIRST) is planned before the host knows the virtual size: its
// budget is computed for this size, and a larger image is mapped on the ordinary path (two starts,
// the budget from info's size), where one start more is nothing against the walk.
constexpr std::uint64_t QUICK_MAP_MAX_VIRTUAL = 1ull << 40;

// The plan of a map of one image that stands alone, made before its info is known: device 0 is the
// image, device 1 this plan; the guest takes the cluster size from its inspection
// (INSTAR_MAP_PLAN_CLUSTER_FROM_INFO).
Expected<bool> prepare_quick_map(const MapSpec& spec, std::uint32_t qemu_version, const FirstImage& first,
                                 PlanFile& plan_file, QuickCall& call) {
    const std::uint32_t traits = (*first.plugin)->qemu_traits;
    if (!((*first.plugin)->capabilities & CAP_CONVERT))
        return false; // the ordinary path words the refusal
    instar_map_plan head{};
    head.magic = INSTAR_MAP_PLAN_MAGIC;
    head.image_count = 1;
    head.start = spec.start;
    head.end = spec.max_length ? spec.start + *spec.max_length : UINT64_MAX;
    head.qemu_version = qemu_version;
    head.flags = INSTAR_MAP_PLAN_CLUSTER_FROM_INFO | INSTAR_MAP_PLAN_CHAIN_FROM_INFO;
    const instar_convert_image image{first.module, 0, 1, 0, INSTAR_CONVERT_NO_BACKING, 0};
    const std::uint32_t style = map_style_of(traits);
    const instar_image_facts facts{first.file.allocated, image_facts_flags_of(traits), 0};
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, &image, 1);
    append_bytes(bytes, &style, 1);
    append_bytes(bytes, &facts, 1);
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    call.devices.push_back(*plan_device);
    const instar_map_arg arg{1, 0};
    append_bytes(call.arg, &arg, 1);
    call.config.guest_memory = MAP_GUEST_MEMORY;
    call.config.huge_pages = false;
    const auto budget = MAP_BASE_TIMEOUT + std::chrono::seconds(QUICK_MAP_MAX_VIRTUAL / MAP_BYTES_PER_SECOND);
    if (call.config.timeout < budget)
        call.config.timeout = budget;
    return true;
}

std::string failure_message(const MapSpec& spec, const std::vector<const ChainLink*>& table,
                            const vmm::RunResult& run, bool* walk, std::optional<std::string>* notice) {
    std::string reason;
    std::optional<instar_convert_failure> failure;
    for (const auto& rec : run.records) {
        if (rec.type == INSTAR_REC_REASON && reason.empty())
            reason = printable_reason(std::string(rec.data.begin(), rec.data.end()));
        else if (rec.type == INSTAR_REC_CONVERT_FAILURE && rec.data.size() == sizeof(instar_convert_failure) &&
                 !failure) {
            instar_convert_failure f{};
            std::memcpy(&f, rec.data.data(), sizeof f);
            failure = f;
        }
    }
    if (reason.empty())
        reason = status_message(static_cast<guest::Status>(run.exit_status));
    *walk = false;
    if (!run.host_error.empty())
        return "Could not open '" + spec.filename + "': " + run.host_error;
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_OPEN && failure->image < table.size()) {
        const std::string& name = table[failure->image]->name;
        for (std::size_t at; (at = reason.find("{image}")) != std::string::npos;)
            reason.replace(at, 7, name);
        return "Could not open '" + name + "': " + reason;
    }
    *walk = true;
    // qcow2's corruption events: qemu prints the event, then the walk's EIO.
    if (failure && failure->phase == INSTAR_CONVERT_PHASE_COPY && failure->image < table.size() &&
        std::string((*table[failure->image]->plugin)->name) == "qcow2" &&
        static_cast<guest::Status>(run.exit_status) == guest::Status::Corrupt)
    {
        *notice = "qcow2: Image is corrupt: " + reason + "; further non-fatal corruption events will be suppressed";
        return "Could not read file metadata: Input/output error";
    }
    return "Could not read file metadata: " + reason;
}

} // namespace

Expected<MapRecords> decode_map_records(const std::vector<std::vector<std::uint8_t>>& payloads, std::uint64_t start,
                                        std::uint64_t end, const std::vector<std::uint32_t>& file_counts) {
    MapRecords out;
    out.payloads = &payloads;
    std::uint64_t at = start;
    for (const auto& p : payloads) {
        if (p.empty() || p.size() % sizeof(instar_map_entry) != 0 ||
            p.size() / sizeof(instar_map_entry) > INSTAR_MAP_MAX_BATCH)
            return Error{"the sandbox sent a malformed map record"};
        for (std::size_t i = 0; i < p.size() / sizeof(instar_map_entry); ++i) {
            instar_map_entry e{};
            std::memcpy(&e, p.data() + i * sizeof e, sizeof e);
            if (e.start != at || e.length == 0 || e.length > end - at || (e.flags & ~INSTAR_MAP_FLAGS_ALL) ||
                e.depth >= file_counts.size() || e.reserved != 0)
                return Error{"the sandbox sent a map run outside the disk or out of order"};
            if (e.flags & INSTAR_MAP_OFFSET_VALID) {
                if (e.file > file_counts[e.depth] || e.offset > static_cast<std::uint64_t>(INT64_MAX))
                    return Error{"the sandbox sent a map run naming an unknown file"};
            } else if (e.offset != 0 || e.file != 0) {
                return Error{"the sandbox sent a malformed map run"};
            }
            at += e.length;
            ++out.count;
        }
    }
    out.end = at;
    return out;
}

Expected<MapResult> map_image(const MapSpec& spec, const PluginRegistry& plugins, vmm::SandboxConfig sandbox,
                              std::uint32_t qemu_version, const MapChunkSink& sink) {
    auto runner = make_sandbox_info_runner(sandbox, qemu_version);
    if (!runner)
        return Error{runner.error()};
    OpenedChain chain;
    InfoOptions io;
    io.filename = spec.filename;
    io.format = spec.format;
    io.backing_chain = !spec.no_backing;
    io.unsafe_quirks = spec.unsafe_quirks;
    io.allow_paths = spec.allow_paths;
    io.header = spec.header;
    io.opens_without_key = !spec.secret;
    io.backing_in_one_node = true; // no backing keys: every level is inspected without one
    // An image that stands alone is inspected and mapped in one sandbox start (info_first.h); any
    // other takes the ordinary path, reusing that inspection.
    std::optional<vmm::RunResult> quick;
    std::vector<std::optional<PrefetchedInfo>> prefetched;
    PlanFile quick_plan;
    if (!spec.header && !spec.secret) {
        QuickRead q;
        q.images = {io};
        q.op = INSTAR_OP_MAP;
        q.max_virtual_size = QUICK_MAP_MAX_VIRTUAL;
        q.prepare = [&](const std::vector<const FirstImage*>& first, QuickCall& call) {
            return prepare_quick_map(spec, qemu_version, *first[0], quick_plan, call);
        };
        q.chains = true; // a backing chain of the top's format joins the plan in the guest
        q.prefetched = &prefetched;
        std::vector<OpenedChain> chains;
        auto r = try_quick_read(q, plugins, sandbox, qemu_version, chains);
        if (!r)
            return Error{"Could not open '" + spec.filename + "': " + r.error()};
        quick = std::move(*r);
        if (quick)
            chain.links = std::move(chains[0].links);
    }
    if (!quick)
        if (auto opened = open_chain(io, plugins, reusing_inspection(*runner, prefetched, 0), chain); !opened)
            return Error{opened.error()};
    for (const auto& link : chain.links)
        if (!((*link.plugin)->capabilities & CAP_CONVERT))
            return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                         std::string((*link.plugin)->name) + " images yet"};

    if (!chain.links.empty())
        chain.links.front().secret = spec.secret;
    ImageTable table; // device 0: the plan
    if (auto top = table.add_chain(chain); !top)
        return Error{top.error()};
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file);
    if (!secrets_device)
        return Error{secrets_device.error()};
    if (auto ok = table.check_limits("map"); !ok)
        return Error{ok.error()};

    const std::uint64_t size = chain.links.front().node.virtual_size;
    instar_map_plan head{};
    head.magic = INSTAR_MAP_PLAN_MAGIC;
    head.image_count = static_cast<std::uint32_t>(table.images.size());
    head.start = spec.start;
    // Both are at most INT64_MAX (cvtnum), so the sum fits.
    head.end = spec.max_length ? spec.start + *spec.max_length : UINT64_MAX;
    head.qemu_version = qemu_version;
    std::vector<std::uint32_t> styles;
    std::vector<std::uint32_t> file_counts;
    // What the host knows of each image's file: its allocated bytes, for qemu's check of qcow2
    // metadata preallocation (done in the guest, which sees the image's clusters).
    std::vector<instar_image_facts> facts(table.links.size());
    for (std::size_t i = 0; i < table.links.size(); ++i) {
        const ChainLink* link = table.links[i];
        const std::uint32_t traits = (*link->plugin)->qemu_traits;
        styles.push_back(map_style_of(traits));
        file_counts.push_back(static_cast<std::uint32_t>(link->files.size()));
        facts[i].allocated = link->image.allocated;
        facts[i].flags = image_facts_flags_of(traits);
    }
    // One index per distinct name (qemu compares names: two layers' runs in one file join).
    MapResult result;
    result.start = spec.start;
    std::map<std::string, std::int32_t> name_index;
    std::vector<std::vector<std::int32_t>> file_ids(chain.links.size());
    for (std::size_t k = 0; k < chain.links.size(); ++k) {
        const ChainLink& link = chain.links[k];
        // qemu names a qcow2 data file as the header writes it (its node's filename), but vmdk
        // extents joined with the descriptor's directory.
        const bool data_file = ((*link.plugin)->qemu_traits & QEMU_FILES_AS_WRITTEN) != 0;
        for (std::size_t f = 0; f <= link.files.size(); ++f) {
            const std::string& name = f == 0       ? link.image.display
                                      : data_file ? link.files[f - 1].reference
                                                  : link.files[f - 1].display;
            auto [it, fresh] = name_index.try_emplace(name, static_cast<std::int32_t>(result.files.size()));
            if (fresh)
                result.files.push_back(name);
            file_ids[k].push_back(it->second);
        }
    }

    const auto budget = MAP_BASE_TIMEOUT + std::chrono::seconds(size / MAP_BYTES_PER_SECOND);
    if (sandbox.timeout < budget)
        sandbox.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(budget);
    const instar_map_arg arg{0, *secrets_device};
    // SAFETY: instar_map_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    const std::uint64_t end = std::min(head.end, size);
    // A map with more runs than one sandbox's records hold (the guest stops with TooLarge after
    // sending whole runs) continues in another sandbox from the end of the last run.
    for (std::uint64_t at = spec.start;;) {
        head.start = at;
        std::vector<std::uint8_t> bytes;
        append_bytes(bytes, &head, 1);
        append_bytes(bytes, table.images.data(), table.images.size());
        append_bytes(bytes, styles.data(), styles.size());
        append_bytes(bytes, facts.data(), facts.size());
        PlanFile plan_file;
        auto plan_device = plan_file.write(bytes);
        if (!plan_device)
            return Error{plan_device.error()};
        table.devices[0] = *plan_device;
        // The smallest VM first (cheapest to create; metadata of ordinary images fits), the cap when
        // the guest runs out of memory: the walk has no side effects, so it simply runs again.
        vmm::SandboxConfig small = sandbox;
        small.guest_memory = MAP_GUEST_MEMORY;
        small.huge_pages = false;
        // The first walk may have run already, in the start that inspected the image.
        auto run = quick ? vmm::Outcome<vmm::RunResult>(std::move(*quick))
                         : vmm::run(small, table.devices, table.modules, INSTAR_OP_MAP, {a, sizeof arg});
        quick.reset();
        rerun_while_out_of_memory(run, small, table, {a, sizeof arg});
        if (!run)
            return Error{"Could not open '" + spec.filename + "': " + run.error().message};

        bool walk = false;
        bool more = false;
        std::optional<std::string> failure;
        if (run->exit_status == static_cast<std::int32_t>(guest::Status::TooLarge)) {
            for (const auto& rec : run->records)
                if (rec.type == INSTAR_REC_CONVERT_FAILURE && rec.data.size() == sizeof(instar_convert_failure)) {
                    instar_convert_failure f{};
                    std::memcpy(&f, rec.data.data(), sizeof f);
                    more = f.phase == INSTAR_CONVERT_PHASE_COPY && f.image == INSTAR_CONVERT_NO_BACKING;
                    break;
                }
        }
        if (run->exit_status != 0 && !more) {
            failure = failure_message(spec, table.links, run.value(), &walk, &result.walk_notice);
            if (!walk)
                return Error{*failure};
        }
        std::vector<std::vector<std::uint8_t>> payloads;
        for (auto& rec : run->records)
            if (rec.type == INSTAR_REC_MAP)
                payloads.push_back(std::move(rec.data));
        auto entries = decode_map_records(payloads, at, std::max(end, at), file_counts);
        if (!entries)
            return Error{"Could not read file metadata: " + entries.error()};
        if (!failure && !more && entries->count > 0 && entries->end != end)
            return Error{"Could not read file metadata: the sandbox's map stopped short of the end"};
        if (more && entries->count == 0)
            return Error{"Could not read file metadata: the sandbox's map made no progress"};
        // Runs go to the sink in slices, so the host's memory stays small whatever the map's size:
        // every page first touched costs a fault, and building the whole chunk and its text at once
        // touched ~1700 of them for a 1 GiB image of 32768 runs.
        std::vector<MapEntry> slice;
        slice.reserve(std::min(entries->count, MAP_SINK_SLICE));
        std::size_t left = entries->count;
        entries->for_each([&](const instar_map_entry& e) {
            MapEntry m;
            m.start = e.start;
            m.length = e.length;
            m.depth = e.depth;
            m.data = e.flags & INSTAR_MAP_DATA;
            m.zero = e.flags & INSTAR_MAP_ZERO;
            m.present = e.flags & INSTAR_MAP_PRESENT;
            m.compressed = e.flags & INSTAR_MAP_COMPRESSED;
            m.has_offset = e.flags & INSTAR_MAP_OFFSET_VALID;
            if (m.has_offset) {
                m.offset = e.offset;
                m.file = file_ids[e.depth][e.file];
            }
            --left;
            if (!sink) {
                result.entries.push_back(m);
                return;
            }
            slice.push_back(m);
            if (slice.size() == MAP_SINK_SLICE || left == 0) {
                sink(slice, result.files);
                slice.clear();
            }
        });
        if (!more) {
            result.walk_error = failure;
            return result;
        }
        at = entries->end;
    }
}

Expected<bool> unlock_image(const ChainLink& link, const std::optional<std::string>& secret,
                            vmm::SandboxConfig sandbox, std::uint32_t qemu_version) {
    if (!link.node.encrypted.value_or(false))
        return true;
    if (!((*link.plugin)->capabilities & CAP_CONVERT))
        return Error{"Could not open '" + link.name + "': instar cannot read the data of " +
                     std::string((*link.plugin)->name) + " images yet"};
    ChainLink keyed = link; // the files stay the chain's (a ChainLink copy owns none)
    keyed.secret = secret;
    ImageTable table; // device 0: the plan
    if (auto top = table.add(keyed); !top)
        return Error{top.error()};
    PlanFile secrets_file;
    auto secrets_device = table.attach_secrets(secrets_file);
    if (!secrets_device)
        return Error{secrets_device.error()};
    instar_map_plan head{};
    head.magic = INSTAR_MAP_PLAN_MAGIC;
    head.image_count = 1;
    head.start = 0;
    head.end = 0; // nothing to walk: opening is the point
    head.qemu_version = qemu_version;
    const std::uint32_t style = map_style_of((*link.plugin)->qemu_traits);
    instar_image_facts facts{};
    facts.allocated = link.image.allocated;
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, table.images.data(), table.images.size());
    append_bytes(bytes, &style, 1);
    append_bytes(bytes, &facts, 1);
    PlanFile plan_file;
    auto plan_device = plan_file.write(bytes);
    if (!plan_device)
        return Error{plan_device.error()};
    table.devices[0] = *plan_device;
    const instar_map_arg arg{0, *secrets_device};
    // SAFETY: instar_map_arg is a trivially-copyable ABI struct with no padding (static_assert).
    const auto* a = reinterpret_cast<const std::uint8_t*>(&arg);
    sandbox.guest_memory = MAP_GUEST_MEMORY;
    sandbox.huge_pages = false;
    if (sandbox.timeout < MAP_BASE_TIMEOUT)
        sandbox.timeout = MAP_BASE_TIMEOUT;
    auto run = vmm::run(sandbox, table.devices, table.modules, INSTAR_OP_MAP, {a, sizeof arg});
    // A key derivation that needs more RAM (a LUKS2 argon2 slot): the unlock only reads, so it runs
    // again with more, as map's walk does.
    rerun_while_out_of_memory(run, sandbox, table, {a, sizeof arg});
    if (!run)
        return Error{"Could not open '" + link.name + "': " + run.error().message};
    if (run->exit_status != 0) {
        MapSpec spec;
        spec.filename = link.name;
        bool walk = false;
        std::optional<std::string> notice;
        return Error{failure_message(spec, table.links, run.value(), &walk, &notice)};
    }
    return true;
}

Expected<bool> unlock_chain(const OpenedChain& chain, std::size_t levels, const std::string& top,
                            const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version, std::size_t first) {
    for (std::size_t d = first; d < levels && d < chain.links.size(); ++d) {
        const ChainLink& link = chain.links[d];
        auto unlocked = unlock_image(link, link.secret, sandbox, qemu_version);
        if (unlocked)
            continue;
        std::string why = unlocked.error();
        const std::string head = "Could not open '" + link.name + "': ";
        if (why.starts_with(head))
            why.erase(0, head.size());
        return Error{open_frame(top, d) + why};
    }
    return true;
}

Expected<bool> assign_backing_secrets(OpenedChain& chain, const BackingSecretFn& secret_of, const std::string& top,
                                      const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version,
                                      std::size_t first) {
    for (std::size_t d = 1; d < chain.links.size() && secret_of; ++d) {
        ChainLink& link = chain.links[d];
        if (!link.node.encrypted.value_or(false))
            continue;
        auto secret = secret_of(d, link.plugin ? (*link.plugin)->secret_option : nullptr);
        if (!secret) {
            if (auto keys = unlock_chain(chain, d, top, sandbox, qemu_version, first); !keys)
                return Error{keys.error()};
            return Error{open_frame(top, d) + secret.error()};
        }
        link.secret = std::move(*secret);
    }
    return true;
}

Error unlock_above_failure(OpenedChain& chain, Error failure, const std::optional<std::string>& top_secret,
                           const BackingSecretFn& secret_of, const std::string& top,
                           const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version) {
    std::size_t opened = 0;
    while (opened < chain.links.size() && chain.links[opened].plugin != nullptr)
        ++opened;
    if (opened == 0)
        return failure; // the top itself failed: no key was looked at yet
    chain.links.front().secret = top_secret;
    // assign_backing_secrets skips the failed link (nothing inspected: not known to be encrypted).
    if (auto named = assign_backing_secrets(chain, secret_of, top, sandbox, qemu_version); !named)
        return Error{named.error()};
    if (auto keys = unlock_chain(chain, opened, top, sandbox, qemu_version); !keys)
        return Error{keys.error()};
    return failure;
}

namespace {

bool mergeable(const MapEntry& curr, const MapEntry& next) {
    if (curr.length == 0)
        return false;
    if (curr.zero != next.zero || curr.data != next.data || curr.compressed != next.compressed ||
        curr.depth != next.depth || curr.present != next.present ||
        curr.file != next.file || curr.has_offset != next.has_offset)
        return false;
    if (curr.has_offset && curr.offset + curr.length != next.offset)
        return false;
    return true;
}

void hex16(std::string& out, std::uint64_t v) {
    char buf[40];
    const int n = std::snprintf(buf, sizeof buf, "%#-16" PRIx64, v);
    out.append(buf, static_cast<std::size_t>(n));
}

void number(std::string& out, std::uint64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// dump_map_entry; false when qemu stops with `error`.
bool dump(std::string& out, bool json, bool compressed_field, const std::vector<std::string>& files,
          const MapEntry& e, MapEntry* next, std::optional<std::string>& error) {
    if (!json) {
        if (e.data && !e.has_offset) {
            error = "File contains external, encrypted or compressed clusters.";
            return false;
        }
        if (e.data && !e.zero) {
            hex16(out, e.start);
            hex16(out, e.length);
            hex16(out, e.has_offset ? e.offset : 0);
            if (e.file >= 0)
                out += files[static_cast<std::size_t>(e.file)];
            out += '\n';
        }
        // qemu: this format ignores the distinction between 0, ZERO and ZERO|DATA.
        if (next && (!next->data || next->zero)) {
            next->data = false;
            next->zero = true;
        }
        return true;
    }
    auto b = [](bool v) { return v ? "true" : "false"; };
    out += "{ \"start\": ";
    number(out, e.start);
    out += ", \"length\": ";
    number(out, e.length);
    out += ", \"depth\": ";
    number(out, e.depth);
    out += ", \"present\": ";
    out += b(e.present);
    out += ", \"zero\": ";
    out += b(e.zero);
    out += ", \"data\": ";
    out += b(e.data);
    if (compressed_field) {
        out += ", \"compressed\": ";
        out += b(e.compressed);
    }
    if (e.has_offset) {
        out += ", \"offset\": ";
        number(out, e.offset);
    }
    out += '}';
    if (next)
        out += ",\n";
    return true;
}

} // namespace

MapPrinter::MapPrinter(bool json, std::uint32_t qemu_version, std::uint64_t start)
    // qemu 8.2 added "compressed" to the JSON runs.
    : json_(json), compressed_field_(qemu_version >= instar::qemu_version(8, 2)) {
    curr_.start = start;
}

void MapPrinter::begin(std::string& out) {
    if (begun_)
        return;
    begun_ = true;
    out += json_ ? "[" : "Offset          Length          Mapped to       File\n";
}

bool MapPrinter::add(const std::vector<MapEntry>& entries, const std::vector<std::string>& files, std::string& out) {
    begin(out);
    if (error_)
        return false;
    files_ = files;
    out.reserve(out.size() + entries.size() * (json_ ? 128 : 64));
    for (const MapEntry& n : entries) {
        MapEntry next = n; // dump may change its flags (human output)
        if (mergeable(curr_, next)) {
            curr_.length += next.length;
            continue;
        }
        if (curr_.length > 0 && !dump(out, json_, compressed_field_, files_, curr_, &next, error_))
            return false;
        curr_ = next;
    }
    return true;
}

void MapPrinter::finish(const MapResult& result, std::string& out) {
    begin(out);
    if (error_)
        return;
    if (result.walk_error) {
        error_ = result.walk_error;
        notice_ = result.walk_notice;
        return;
    }
    if (!dump(out, json_, compressed_field_, files_, curr_, nullptr, error_))
        return;
    if (json_)
        out += "]\n";
}

MapOutput render_map(const MapResult& result, bool json, std::uint32_t qemu_version) {
    MapPrinter p(json, qemu_version, result.start);
    MapOutput o;
    p.add(result.entries, result.files, o.out);
    p.finish(result, o.out);
    o.error = p.error();
    o.notice = p.notice();
    return o;
}

} // namespace instar
