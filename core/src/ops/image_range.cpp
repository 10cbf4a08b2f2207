// read_image_range: dd's byte window of one image into a private temporary file.
#include "ops/image_range.h"

#include "ops/convert_op.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <random>

namespace instar {

Expected<ImageRange> read_image_range(const ChainLink& link, std::uint64_t offset, std::uint64_t length,
                                      const std::vector<std::string>& allow_paths, bool unsafe_quirks,
                                      const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                                      std::uint32_t qemu_version) {
    if (length == 0 || length > INT_MAX || offset % length != 0)
        return Error{"internal error: a byte range dd cannot read"};
    // The bytes go to a new raw file in the temporary directory ($TMPDIR), made as every convert
    // target is (atomic_output.h: an unnamed file linked into place once complete, so a kill -9 before
    // then leaves nothing), opened and unlinked as soon as it is there.
    std::error_code ec;
    const std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
    if (ec)
        return Error{"no temporary directory: " + ec.message()};
    std::random_device random;
    char name[64];
    std::snprintf(name, sizeof name, "instar-range-%ld-%08x%08x.raw", static_cast<long>(::getpid()), random(),
                  random());
    const std::string target = (tmp / name).string();
    struct Cleanup {
        const std::string& file;
        ~Cleanup() { ::unlink(file.c_str()); }
    } cleanup{target};

    ConvertSpec spec;
    spec.sources = {link.image.path.string()};
    spec.source_formats = {link.node.format};
    spec.source_secrets = {link.secret};
    spec.allow_paths = allow_paths;
    spec.unsafe_quirks = unsafe_quirks;
    spec.target.filename = target;
    spec.target.plugin = plugins.find("raw");
    spec.min_sparse = 0;
    ConvertSpec::DdWindow window;
    window.block_size = length; // dd's window: [skip * bs, min(size, count * bs))
    window.skip = offset / length;
    window.count = offset / length + 1;
    bool past_end = false;
    window.skipped_past_end = &past_end;
    spec.dd = window;
    std::vector<std::string> lines; // a driver's own warnings: not this command's
    spec.warnings = &lines;
    if (auto done = convert_image(spec, plugins, sandbox, qemu_version); !done)
        return Error{done.error()};
    ImageRange out;
    out.fd = vmm::UniqueFd(::open(target.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st {};
    if (out.fd.get() < 0 || ::fstat(out.fd.get(), &st) != 0)
        return Error{std::string("cannot open the bytes read: ") + std::strerror(errno)};
    out.size = static_cast<std::uint64_t>(st.st_size) < length ? static_cast<std::uint64_t>(st.st_size) : length;
    return out;
}

std::vector<guest::ResizeNeedBacking> backing_bytes_asked(const EditReport& report) {
    std::vector<guest::ResizeNeedBacking> need;
    for (const auto& [kind, bytes] : report.data) {
        if (kind != guest::RESIZE_DATA_NEED_BACKING)
            continue;
        if (need.size() == guest::RESIZE_MAX_BACKING_RANGES || bytes.size() != sizeof(guest::ResizeNeedBacking))
            return {};
        guest::ResizeNeedBacking n{};
        std::memcpy(&n, bytes.data(), sizeof n);
        // (and inside int64, as every offset qemu takes: dd's window is computed from it)
        if (n.length == 0 || n.length > guest::RESIZE_MAX_BACKING_BYTES || n.offset % n.length != 0 ||
            n.offset > static_cast<std::uint64_t>(INT64_MAX) - n.length)
            return {};
        need.push_back(n);
    }
    return need;
}

Expected<std::vector<ImageRange>> read_asked_backing_bytes(const Expected<EditReport>& report,
                                                             const OpenedChain& chain,
                                                             const std::vector<std::string>& allow_paths,
                                                             bool unsafe_quirks, const PluginRegistry& plugins,
                                                             const vmm::SandboxConfig& sandbox,
                                                             std::uint32_t qemu_version) {
    if (!report || report->status == guest::Status::Ok || chain.links.size() < 2)
        return std::vector<ImageRange>{};
    return read_asked_bytes_of(*report, chain.links[1], allow_paths, unsafe_quirks, plugins, sandbox, qemu_version);
}

Expected<std::vector<ImageRange>> read_asked_bytes_of(const EditReport& report, const ChainLink& backing,
                                                        const std::vector<std::string>& allow_paths,
                                                        bool unsafe_quirks, const PluginRegistry& plugins,
                                                        const vmm::SandboxConfig& sandbox,
                                                        std::uint32_t qemu_version) {
    std::vector<ImageRange> out;
    if (report.status == guest::Status::Ok)
        return out;
    for (const auto& need : backing_bytes_asked(report)) {
        auto bytes = read_image_range(backing, need.offset, need.length, allow_paths, unsafe_quirks, plugins, sandbox,
                                      qemu_version);
        if (!bytes)
            return Error{bytes.error()};
        out.push_back(std::move(*bytes));
    }
    return out;
}

std::vector<vmm::Device> range_devices(const std::vector<ImageRange>& ranges) {
    std::vector<vmm::Device> out;
    for (const auto& range : ranges)
        out.push_back(vmm::Device{range.fd.get(), range.size, false});
    return out;
}

} // namespace instar
