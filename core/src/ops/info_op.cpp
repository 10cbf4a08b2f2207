// The info operation's host side: detection, reruns for referenced files, chains, node assembly.
#include "ops/info_op.h"

#include "ops/file_limit.h"
#include "ops/host_probe.h"

#include <instar/guest_abi.h>

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

namespace instar {
namespace {

using guest::FileRole;
using guest::Status;

// Closes every file opened for one inspection when it goes out of scope.
struct FileSet {
    std::vector<OpenedFile> files;
    ~FileSet() {
        for (auto& f : files)
            close_file(f);
    }
};

Error could_not_open(const std::string& name, const std::string& why) {
    return Error{"Could not open '" + name + "': " + why};
}

// Why a backing file (or, `from_cwd`, a data file) that open_referenced refused could not be
// opened, in qemu's words, when the policy allows its name and the open itself failed (missing,
// unreadable): "Could not open 'PATH': strerror", PATH as qemu opens it. nullopt when the refusal
// is the policy's (its own words then). Asked only after a refusal, so a chain that opens costs no
// extra open.
std::optional<std::string> missing_file(const PathPolicy& policy, const std::string& image, std::string_view field,
                                        const std::string& file_name, bool from_cwd = false) {
    auto allowed = check_referenced(policy, image, field, file_name, from_cwd);
    if (!allowed)
        return std::nullopt;
    const int fd = ::open(allowed->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return "Could not open '" + *allowed + "': " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
}

// qemu's bdrv_apply_auto_read_only, for a read-write open of a read-only driver's image.
constexpr const char* READ_ONLY = "Image is read-only";

// Not recognised by any plugin's magic bytes (qemu-img would fall back to raw).
constexpr const char* NOT_RECOGNISED =
    "image format not recognised: no known signature and no partition table (instar never guesses raw; "
    "use -f raw, or --unsafe-quirks for qemu-img's fallback; `instar formats` lists the installed format plugins)";

struct Candidates {
    std::vector<const LoadedPlugin*> plugins;
    bool force = false; // the guest must not re-probe: the user named the format
};

Expected<Candidates> candidates_for(const InfoOptions& opts, const PluginRegistry& plugins, const OpenedFile& image,
                                    const std::string& name, const std::optional<std::string>& format) {
    if (format) {
        const LoadedPlugin* p = plugins.find(*format);
        if (!p)
            return could_not_open(name, "Unknown driver '" + *format + "'" + missing_plugin_hint(*format));
        return Candidates{{p}, true};
    }
    // --unsafe-quirks probes as qemu-img does, from the file's first bytes only.
    Candidates c{host_probe(plugins, image, opts.unsafe_quirks), false};
    if (!c.plugins.empty())
        return c;
    const LoadedPlugin* raw = plugins.find("raw");
    if (!raw)
        return could_not_open(name, NOT_RECOGNISED);
    // --unsafe-quirks: qemu-img's raw fallback. Otherwise raw's module only names what it sees.
    return Candidates{{raw}, opts.unsafe_quirks};
}

// qemu prints the file names inside format-specific data (vmdk extents) as host paths: the image's
// own name for an extent that is the image itself (reported as ""), otherwise the name joined to
// the image's directory (path_combine). The guest reports names as written; the host joins them.
void resolve_filenames(boost::json::value& v, const std::string& image) {
    if (v.is_array()) {
        for (auto& e : v.get_array())
            resolve_filenames(e, image);
    } else if (v.is_object()) {
        for (auto& kv : v.get_object()) {
            if (kv.key() == "filename" && kv.value().is_string()) {
                const std::string name(kv.value().get_string());
                kv.value() = name.empty() ? image : combine_path(image, name);
            } else {
                resolve_filenames(kv.value(), image);
            }
        }
    }
}

// What qemu reports as a file's disk size (allocated blocks), or with --ignore-quirks its length.
std::uint64_t disk_size(const OpenedFile& f, const InfoOptions& opts) {
    return opts.ignore_quirks ? f.size : f.allocated;
}

// The protocol node of one file, with qemu's numbers or (--ignore-quirks) the true ones.
NodeInfo file_node(const std::string& name, const OpenedFile& f, const InfoOptions& opts) {
    return file_protocol_node(name, f.size, disk_size(f, opts), !opts.ignore_quirks);
}

struct Inspected {
    NodeInfo node;
    std::optional<std::string> backing_name;
    std::optional<std::string> backing_format;
    const LoadedPlugin* plugin = nullptr; // the candidate that reported
    // A reason the guest gave with an Ok report: qemu's info (opened without I/O) refuses the image
    // with it, while a command that reads the data leaves the refusal to the format's open, which
    // first asks for the key as qemu does (docs/guest-abi.md, "Info refusals").
    std::optional<std::string> info_refusal;
};

// With `keep`, the files the image is made of (extents, a data file: every reference but the backing
// file, in reference order) stay open and move there, for a caller that reads the image's data.
Expected<Inspected> inspect(const InfoOptions& opts, const PluginRegistry& plugins, const GuestInfoRunner& run_guest,
                            const PathPolicy& policy, const OpenedFile& image, const std::string& name,
                            const std::optional<std::string>& format, std::vector<OpenedFile>* keep = nullptr,
                            bool write = false, bool top = false, bool no_key = false) {
    auto candidates = candidates_for(opts, plugins, image, name, format);
    if (!candidates)
        return Error{candidates.error()};
    if (write && candidates->plugins.size() == 1 && ((*candidates->plugins.front())->capabilities & CAP_READ_ONLY))
        return could_not_open(name, READ_ONLY);
    FileSet referenced;
    const bool header = top && opts.header.has_value();
    if (header) {
        auto f = open_user_file(*opts.header);
        if (!f)
            return could_not_open(name, f.error());
        referenced.files.push_back(*f);
    }
    const std::uint32_t flags = (candidates->force ? INSTAR_INFO_FORCE : 0u) | (no_key ? INSTAR_INFO_NO_KEY : 0u);
    auto run = run_guest(candidates->plugins, flags, image, referenced.files);
    if (!run)
        return could_not_open(name, run.error());
    if (run->status == Status::NeedFiles) {
        // The image names files it is made of (vmdk extents): open each through the policy, rerun.
        std::size_t extents = 0;
        for (const auto& ref : run->info.files)
            extents += ref.role == FileRole::Extent ? 1 : 0;
        // Into one block of descriptors: the sandbox's filter allows a block with one rule.
        auto block = FdBlock::reserve(extents);
        if (!block)
            return could_not_open(name, block.error());
        for (const auto& ref : run->info.files) {
            if (ref.role != FileRole::Extent)
                continue;
            // An allowed name whose file is missing gets qemu's words; a refusal keeps the policy's.
            if (auto allowed = check_referenced(policy, name, "extent file", ref.name)) {
                struct stat st{};
                if (::stat(allowed->c_str(), &st) != 0)
                    return could_not_open(name, "Could not open '" + *allowed + "': " + std::strerror(errno));
            }
            auto f = open_referenced(policy, name, "extent file", ref.name);
            if (!f)
                return could_not_open(name, f.error());
            f->fd = block->place(f->fd);
            referenced.files.push_back(*f);
        }
        run = run_guest(candidates->plugins, flags, image, referenced.files);
        if (!run)
            return could_not_open(name, run.error());
        if (run->status == Status::NeedFiles)
            return could_not_open(name, "the format module asked for its files twice");
    }
    if (run->status == Status::Unsupported && run->detail == "no format module recognised the image")
        return could_not_open(name, NOT_RECOGNISED);
    if (run->status == Status::Unsupported && run->detail.rfind("unsupported format: ", 0) == 0)
        return could_not_open(name, "image format '" + run->detail.substr(20) +
                                        "' is not supported by instar (it is never treated as raw)");
    if (run->status != Status::Ok) {
        std::string detail = run->detail.empty() ? status_message(run->status) : run->detail;
        for (std::size_t at; (at = detail.find("{image}")) != std::string::npos;)
            detail.replace(at, 7, name);
        return could_not_open(name, detail);
    }
    const ImageInfo& info = run->info;
    const LoadedPlugin* claimed = nullptr;
    for (const LoadedPlugin* c : candidates->plugins)
        if (!claimed && c->answers_to(info.format))
            claimed = c;
    if (!claimed)
        return could_not_open(name, "the sandbox reported format '" + info.format + "', which was not probed");

    Inspected out;
    out.plugin = claimed;
    if (!info.reason.empty())
        out.info_refusal = could_not_open(name, run->detail).message;
    NodeInfo& n = out.node;
    n.filename = name;
    n.format = info.format;
    n.dirty_flag = info.dirty.value_or(false);
    n.has_dirty_flag = info.dirty.has_value();
    std::uint64_t actual = disk_size(image, opts);
    for (const auto& f : referenced.files)
        actual += disk_size(f, opts);
    n.actual_size = actual;
    n.virtual_size = info.virtual_size;
    n.cluster_size = info.cluster_size;
    n.encrypted = info.encrypted;
    if (const FileReference* b = info.first_file(FileRole::Backing)) {
        n.backing_filename = b->name;
        n.full_backing_filename = full_backing_filename(name, b->name);
        n.backing_filename_format = info.backing_format;
        out.backing_name = b->name;
        out.backing_format = info.backing_format;
    }
    n.snapshots = info.snapshots;
    n.specific_type = info.specific_type;
    n.specific = info.specific;
    for (auto& kv : n.specific)
        resolve_filenames(kv.value(), name);
    n.children.emplace_back("file", file_node(name, image, opts));
    if (header) // opened after file: printed before it (newest first)
        n.children.emplace_back("header", file_node(referenced.files.front().display, referenced.files.front(), opts));
    for (std::size_t i = header ? 1 : 0; i < referenced.files.size(); ++i) {
        const OpenedFile& f = referenced.files[i];
        n.children.emplace_back("extents." + std::to_string(i), file_node(f.display, f, opts));
    }
    if (keep) {
        // Extents were opened for the second run; a data file is opened here, through the policy.
        for (const auto& ref : info.files) {
            if (ref.role != FileRole::DataFile)
                continue;
            // qemu opens the data file by its name as written, from the working directory.
            auto f = open_referenced(policy, name, "data file", ref.name, true);
            if (!f) {
                if (auto missing = missing_file(policy, name, "data file", ref.name, true))
                    return could_not_open(name, *missing);
                return could_not_open(name, f.error());
            }
            referenced.files.push_back(*f);
        }
        *keep = std::move(referenced.files);
        referenced.files.clear();
    }
    return out;
}

} // namespace

void OpenedChain::close() {
    for (auto& link : links) {
        close_file(link.image);
        for (auto& f : link.files)
            close_file(f);
    }
    links.clear();
}


Expected<bool> open_chain(const InfoOptions& opts, const PluginRegistry& plugins, const GuestInfoRunner& run_guest,
                          OpenedChain& chain) {
    auto policy = default_policy(opts.filename, opts.allow_paths);
    if (!policy)
        return Error{policy.error()};
    // opts.top: already opened by the caller (convert -n's target, read-write, perhaps a block device).
    auto top = opts.top ? duplicate(*opts.top) : open_user_file(opts.filename);
    if (!top)
        return Error{top.error()};
    std::set<std::pair<std::uint64_t, std::uint64_t>> seen{{top->device, top->inode}};
    std::string name = opts.filename;
    std::optional<std::string> format = opts.format;
    chain.links.push_back(ChainLink{*top, {}, nullptr, {}, name, {}});
    for (;;) {
        ChainLink& link = chain.links.back();
        const bool top_link = chain.links.size() == 1;
        const std::size_t depth = chain.links.size() - 1;
        // The key the level's driver reads (its plugin's secret_option; unknown before a probe: either).
        const LoadedPlugin* level_plugin = format ? plugins.find(*format) : nullptr;
        const std::optional<BackingKey::Named> key =
            depth >= 1 && depth <= opts.backing_keys.size()
                ? opts.backing_keys[depth - 1].for_option(level_plugin ? (*level_plugin)->secret_option : nullptr)
                : std::nullopt;
        const bool one_node = opts.backing_in_one_node;
        const bool without_key = top_link ? opts.opens_without_key : one_node && !(key && key->defined);
        auto inspected = inspect(opts, plugins, run_guest, *policy, link.image, name, format, &link.files,
                                 opts.read_write && top_link, top_link, without_key);
        if (!inspected) {
            // A backing image of a chain opened as one node: qemu's frame for the top.
            const std::string own = "Could not open '" + name + "': ";
            if (!top_link && one_node && inspected.error().rfind(own, 0) == 0) {
                std::string why = inspected.error().substr(own.size());
                // A key named but never defined: qemu's lookup fails before the header is read.
                if (key && !key->defined && why.ends_with("' is required for cipher"))
                    why = "No secret with id '" + key->id + "'";
                return Error{open_frame(opts.filename, depth) + why};
            }
            return Error{inspected.error()};
        }
        link.plugin = inspected->plugin;
        link.node = std::move(inspected->node);
        if (!opts.backing_chain || !inspected->backing_name)
            return true;
        if (chain.links.size() >= MAX_CHAIN_DEPTH)
            return Error{name + ": backing chain longer than " + std::to_string(MAX_CHAIN_DEPTH) + " images"};
        auto next = open_referenced(*policy, name, "backing file", *inspected->backing_name);
        if (!next) {
            // qemu opens the chain as one node: "Could not open backing file: " for each image below
            // the top, the top's name first.
            if (auto missing = missing_file(*policy, name, "backing file", *inspected->backing_name))
                return Error{open_frame(opts.filename, chain.links.size()) + *missing};
            return Error{next.error()};
        }
        if (!seen.insert({next->device, next->inode}).second) {
            close_file(*next);
            return Error{name + ": backing file '" + *inspected->backing_name +
                         "' refused: it loops back to an image already in the chain"};
        }
        name = next->display;
        format = inspected->backing_format;
        chain.links.push_back(ChainLink{*next, {}, nullptr, {}, name, {}});
    }
}

std::string open_frame(const std::string& top, std::size_t depth) {
    std::string frame = "Could not open '" + top + "': ";
    for (std::size_t i = 0; i < depth; ++i)
        frame += "Could not open backing file: ";
    return frame;
}

std::string status_message(Status s) {
    switch (s) {
    case Status::Ok: return "success";
    case Status::IoError: return "I/O error while reading the image";
    case Status::Corrupt: return "the image is corrupt";
    case Status::Unsupported: return "the image uses a feature instar does not support";
    case Status::TooLarge: return "the image exceeds one of instar's safety limits";
    case Status::NoMemory: return "the image needs more memory than the sandbox allows (see --max-guest-memory)";
    case Status::Invalid: return "internal error: invalid request to the format module";
    case Status::NeedFiles: return "the image needs other files";
    }
    return "unknown error " + std::to_string(static_cast<int>(s));
}

const char* status_errno_text(std::uint32_t status) {
    return guest::status_strerror(static_cast<Status>(status));
}

// A second handle on an opened file, owned by the caller like any other OpenedFile.
Expected<OpenedFile> duplicate(const OpenedFile& f) {
    OpenedFile copy = f;
    copy.fd = ::fcntl(f.fd, F_DUPFD_CLOEXEC, 0);
    if (copy.fd < 0)
        return Error{"Could not open '" + f.display + "': " + std::strerror(errno)};
    return copy;
}

Expected<std::vector<NodeInfo>> collect_info(const InfoOptions& opts, const PluginRegistry& plugins,
                                             const GuestInfoRunner& run_guest) {
    auto policy = default_policy(opts.filename, opts.allow_paths);
    if (!policy)
        return Error{policy.error()};
    auto top = opts.top ? duplicate(*opts.top) : open_user_file(opts.filename);
    if (!top)
        return Error{top.error()};
    FileSet chain;
    chain.files.push_back(*top);

    std::vector<NodeInfo> nodes;
    std::set<std::pair<std::uint64_t, std::uint64_t>> seen{{top->device, top->inode}};
    std::string name = opts.filename;
    std::optional<std::string> format = opts.format;
    const OpenedFile* current = &chain.files.back();
    for (;;) {
        auto inspected = inspect(opts, plugins, run_guest, *policy, *current, name, format, nullptr, false,
                                 nodes.empty(), nodes.empty() && opts.opens_without_key);
        if (!inspected)
            return Error{inspected.error()};
        if (inspected->info_refusal)
            return Error{*inspected->info_refusal};
        nodes.push_back(std::move(inspected->node));
        if (!opts.backing_chain || !inspected->backing_name)
            break;
        if (nodes.size() >= MAX_CHAIN_DEPTH)
            return Error{name + ": backing chain longer than " + std::to_string(MAX_CHAIN_DEPTH) + " images"};
        auto next = open_referenced(*policy, name, "backing file", *inspected->backing_name);
        if (!next) {
            // qemu-img info opens each backing file as an image of its own.
            if (auto missing = missing_file(*policy, name, "backing file", *inspected->backing_name))
                return could_not_open(full_backing_filename(name, *inspected->backing_name), *missing);
            return Error{next.error()};
        }
        chain.files.push_back(*next);
        // qemu-img compares names, instar the files themselves; the words are qemu-img's.
        if (!seen.insert({next->device, next->inode}).second)
            return Error{"Backing file '" + next->display + "' creates an infinite loop."};
        name = next->display;
        format = inspected->backing_format;
        current = &chain.files.back();
    }
    return nodes;
}

} // namespace instar
