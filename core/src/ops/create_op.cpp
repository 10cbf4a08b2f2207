// Image creation: the plain-file path on the host, the metadata path through the sandbox.
#include "ops/create_op.h"

#include "ops/atomic_output.h"
#include "ops/guest_module.h"
#include "ops/image_table.h"

#include <instar/guest/create_api.h>
#include <instar/guest/format_api.h>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace instar {
namespace {

// Host-side zero filling for preallocation=full writes in pieces of this size.
constexpr std::size_t ZERO_PIECE = 8u << 20;

// Writing preallocated zeros runs at disk speed, not parsing speed: a 1 TiB full preallocation may
// take many minutes, so those runs get an hour instead of the parse budget.
constexpr std::chrono::milliseconds PREALLOC_TIMEOUT{60 * 60 * 1000};

// The most disk one added file can stand for (vmdk's 2 GiB extents), and the time allowed per
// added file: 5 times what creating one took on a loaded test machine.
constexpr std::uint64_t ADDED_FILE_SPAN = 2ull << 30;
constexpr std::chrono::milliseconds ADDED_FILE_TIME{5};

// Creating a LUKS header derives two keys for about iter-time (default 2 s) on qemu's calibration,
// measured 36 s on a heavily loaded 2-core machine: this much more time whenever the image has a
// secret, however iter-time is set.
constexpr std::chrono::milliseconds LUKS_DEFAULT_PBKDF_TIME{120'000};

std::string file_error(const std::string& file, const std::string& what) { return file + ": " + what; }

// As qemu's file protocol: falloc extends the empty file with fallocate alone; full truncates to the
// final size first, then writes zeros.
Expected<bool> fill_plain(int fd, std::uint64_t size, const std::string& mode) {
    if (mode == "falloc") {
        const int err = size > 0 ? ::posix_fallocate(fd, 0, static_cast<off_t>(size)) : 0;
        if (err == EFBIG)
            return Error{"EFBIG"};
        if (err != 0)
            return Error{std::string("Could not preallocate data for the new file: ") + std::strerror(err)};
        return true;
    }
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
        return Error{errno == EFBIG ? "EFBIG" : std::string("Could not resize file: ") + std::strerror(errno)};
    if (mode == "full") {
        const std::vector<char> zeros(ZERO_PIECE);
        for (std::uint64_t off = 0; off < size;) {
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), size - off));
            const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(off));
            if (w <= 0) {
                if (w < 0 && errno == EINTR)
                    continue;
                return Error{std::string("Could not write zeros for preallocation: ") + std::strerror(errno)};
            }
            off += static_cast<std::uint64_t>(w);
        }
    }
    return true;
}

std::uint64_t file_length(int fd) {
    struct stat st{};
    return ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// The format's generic "too large" message, which qemu-img prints for any EFBIG from a driver; it
// adds the hint when the format has a cluster_size option.
std::string too_large(const LoadedPlugin& plugin) {
    std::string msg = "The image size is too large for file format '" + std::string(plugin->name) + "'";
    for (std::uint32_t i = 0; i < plugin->option_count; ++i)
        if (std::string_view(plugin->options[i].key) == "cluster_size")
            return msg + " (try using a larger cluster size)";
    return msg;
}

// qemu's file protocol makes files a whole number of sectors long.
constexpr std::uint64_t SECTOR = 512;

// Growing an empty file, qemu's file protocol writes zeros over its first block "to optimize future
// alignment probing" (file-posix.c allocate_first_block): 4 KiB (MAX_BLOCKSIZE), or one sector when
// the new length is below that. `du` and `qemu-img map` see that block, so a new raw file has it too.
constexpr std::uint64_t FILE_FIRST_BLOCK = 4096;

// Failures are ignored, as qemu does: the file's content is right either way.
void allocate_first_block(int fd, std::uint64_t length) {
    if (length == 0)
        return;
    static const char zeros[FILE_FIRST_BLOCK] = {};
    const std::size_t n = length < FILE_FIRST_BLOCK ? SECTOR : FILE_FIRST_BLOCK;
    while (::pwrite(fd, zeros, n, 0) < 0 && errno == EINTR) {
    }
}

Expected<CreateOutcome> create_plain(const CreateSpec& spec) {
    AtomicFiles files(spec.filename);
    auto fd = files.open_image();
    if (!fd)
        return Error{file_error(spec.filename, fd.error())};
    const std::uint64_t length = (spec.size + SECTOR - 1) / SECTOR * SECTOR; // size <= INT64_MAX: no overflow
    if (auto filled = fill_plain(*fd, length, spec.preallocation); !filled)
        return Error{file_error(spec.filename, filled.error() == "EFBIG" ? too_large(*spec.plugin)
                                                                          : filled.error())};
    if (spec.preallocation == "off") // falloc and full allocate every block anyway
        allocate_first_block(*fd, length);
    CreateOutcome out;
    out.file_size = file_length(*fd);
    if (auto done = files.commit(); !done)
        return Error{file_error(spec.filename, done.error())};
    return out;
}

std::string base_name(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Writing a new image's metadata needs little guest memory unless the image is huge (tables for
// preallocation=metadata); the smallest VM is the cheapest to create. A guest that runs out exits
// with NoMemory, and the create is repeated from scratch with the configured cap.
constexpr std::uint64_t CREATE_GUEST_MEMORY = INSTAR_MIN_GUEST_MEMORY;

// One attempt in a VM of `config`'s size. Sets `out_of_memory` (and returns an error) when the guest
// ran out of memory; the temporary files are gone by then.
Expected<CreateOutcome> create_in_vm(const CreateSpec& spec, vmm::SandboxConfig config, const std::string& module,
                                     const std::vector<std::uint8_t>& arg, bool& out_of_memory) {
    AtomicFiles files(spec.filename);
    auto fd = files.open_image();
    if (!fd)
        return Error{file_error(spec.filename, fd.error())};
    std::vector<vmm::Device> devices{vmm::output_device(*fd)};
    if (spec.backing)
        devices.push_back({spec.backing->fd, spec.backing->size, false});
    if (spec.data_file) {
        auto data = files.add_path(*spec.data_file);
        if (!data)
            return Error{file_error(spec.filename, data.error())};
        devices.push_back(vmm::output_device(*data));
    }
    // The secret (a LUKS passphrase) in a sealed in-memory device, the last one.
    PlanFile secret_file;
    if (spec.secret) {
        if (spec.secret->size() > INSTAR_MAX_SECRET_BYTES)
            return Error{file_error(spec.filename, "a secret is larger than instar accepts (" +
                                                       std::to_string(INSTAR_MAX_SECRET_BYTES) + " bytes)")};
        const instar_secret_table head{INSTAR_SECRETS_MAGIC, 1};
        const instar_secret_entry entry{0, static_cast<std::uint32_t>(spec.secret->size())};
        std::vector<std::uint8_t> bytes;
        append_bytes(bytes, &head, 1);
        append_bytes(bytes, &entry, 1);
        bytes.insert(bytes.end(), spec.secret->begin(), spec.secret->end());
        auto dev = secret_file.write(bytes);
        std::fill(bytes.begin(), bytes.end(), std::uint8_t{0});
        if (!dev)
            return Error{file_error(spec.filename, dev.error())};
        devices.push_back(*dev);
    }
    config.outputs = &files;
    bool fills = false;
    for (const auto& o : spec.options)
        fills |= o.key == "preallocation" && (o.value == "falloc" || o.value == "full");
    if (fills && config.timeout < PREALLOC_TIMEOUT)
        config.timeout = PREALLOC_TIMEOUT;
    // Files the guest adds are created by the host at file-system speed (about 1 ms each on a busy
    // disk); a format adds at most one per 2 GiB of disk (vmdk's twoGbMaxExtent*), so that many
    // get time of their own beyond the parse budget.
    const std::uint64_t may_add = std::min<std::uint64_t>(spec.size / ADDED_FILE_SPAN, INSTAR_MAX_ADDED_FILES);
    config.timeout += ADDED_FILE_TIME * static_cast<std::int64_t>(may_add);
    // LUKS key derivation runs for about iter-time milliseconds per key slot (qemu's calibration);
    // ten times that on a loaded machine.
    for (const auto& o : spec.options)
        if (o.key == "iter-time" || o.key == "encrypt.iter-time")
            if (const auto ms = std::strtoull(o.value.c_str(), nullptr, 10); ms < (1ull << 32))
                config.timeout += std::chrono::milliseconds(10 * ms);
    if (spec.secret)
        config.timeout += LUKS_DEFAULT_PBKDF_TIME;
    const std::vector<std::string> modules{module};
    auto run = vmm::run(config, devices, modules, INSTAR_OP_CREATE, arg);
    if (!run)
        return Error{file_error(spec.filename, run.error().message)};
    out_of_memory = run->exit_status == static_cast<std::int32_t>(guest::Status::NoMemory);
    std::string reason;
    CreateOutcome out;
    bool reported = false;
    for (const auto& rec : run->records) {
        if (rec.type == INSTAR_REC_REASON && reason.empty())
            reason.assign(rec.data.begin(), rec.data.end());
        else if (rec.type == INSTAR_REC_CREATE && rec.data.size() == sizeof(instar_create_record)) {
            instar_create_record r{};
            std::memcpy(&r, rec.data.data(), sizeof r);
            out.unit_size = r.resolved_unit_size;
            reported = true;
        }
    }
    if (run->exit_status != 0 || !reported) {
        if (run->host_errno == EFBIG) // qemu-img's words for any driver's EFBIG
            return Error{file_error(spec.filename, too_large(*spec.plugin))};
        if (!run->host_error.empty())
            return Error{file_error(spec.filename, run->host_error)};
        if (!reason.empty())
            return Error{file_error(spec.filename, printable_reason(reason))};
        return Error{file_error(spec.filename, "the " + std::string(spec.plugin->descriptor->name) +
                                                   " module failed to create the image (status " +
                                                   std::to_string(run->exit_status) + ")")};
    }
    out.metadata_bytes = run->bytes_written;
    out.file_size = file_length(*fd);
    if (auto done = files.commit(); !done)
        return Error{file_error(spec.filename, done.error())};
    return out;
}

Expected<CreateOutcome> create_in_guest(const CreateSpec& spec, const vmm::SandboxConfig& config) {
    auto module = guest_module_path(*spec.plugin);
    if (!module)
        return Error{file_error(spec.filename, module.error())};
    auto arg = encode_create_arg(spec);
    if (!arg)
        return Error{file_error(spec.filename, arg.error())};
    if (auto err = vmm::check_sandbox(config))
        return Error{err->message};
    vmm::SandboxConfig small = config;
    small.guest_memory = CREATE_GUEST_MEMORY;
    bool out_of_memory = false;
    auto made = create_in_vm(spec, small, *module, *arg, out_of_memory);
    if (made || !out_of_memory || vmm::guest_ram(config) <= vmm::guest_ram(small))
        return made;
    out_of_memory = false;
    return create_in_vm(spec, config, *module, *arg, out_of_memory);
}

} // namespace

// The operation argument: instar_create_arg, then the NUL-terminated strings it describes.
Expected<std::vector<std::uint8_t>> encode_create_arg(const CreateSpec& spec) {
    instar_create_arg a{};
    a.size = spec.size;
    a.backing_size = spec.backing_size;
    a.unix_time = static_cast<std::int64_t>(std::time(nullptr));
    a.qemu_version = spec.qemu_version;
    a.flags = (spec.backing ? INSTAR_CREATE_BACKING_DEVICE : 0u) | (spec.backing_file ? INSTAR_CREATE_HAS_BACKING : 0u) |
              (spec.backing_fmt ? INSTAR_CREATE_HAS_BACKING_FMT : 0u) |
              (spec.data_file ? INSTAR_CREATE_DATA_FILE_DEVICE : 0u) | (spec.secret ? INSTAR_CREATE_SECRET_DEVICE : 0u);
    a.option_count = static_cast<std::uint32_t>(spec.options.size());
    if (::getrandom(a.random, sizeof a.random, 0) != static_cast<ssize_t>(sizeof a.random))
        return Error{std::string("cannot read random bytes: ") + std::strerror(errno)};
    std::string strings;
    auto add = [&](const std::string& s) {
        strings += s;
        strings += '\0';
    };
    add(base_name(spec.filename));
    add(spec.backing_file.value_or(""));
    add(spec.backing_fmt.value_or(""));
    for (const auto& o : spec.options) {
        add(o.key);
        add(o.value);
    }
    a.strings_len = static_cast<std::uint32_t>(strings.size());
    if (sizeof a + strings.size() > INSTAR_MAX_OP_ARG)
        return Error{"the options and backing file name are too long (" + std::to_string(strings.size()) +
                     " bytes; at most " + std::to_string(INSTAR_MAX_OP_ARG - sizeof a) + ")"};
    std::vector<std::uint8_t> arg(sizeof a + strings.size());
    std::memcpy(arg.data(), &a, sizeof a);
    std::memcpy(arg.data() + sizeof a, strings.data(), strings.size());
    return arg;
}

Expected<CreateOutcome> create_image(const CreateSpec& spec, const vmm::SandboxConfig& sandbox) {
    if ((*spec.plugin)->capabilities & CAP_CREATE_PLAIN_FILE)
        return create_plain(spec);
    return create_in_guest(spec, sandbox);
}

} // namespace instar
