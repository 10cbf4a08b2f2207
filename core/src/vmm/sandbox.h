// The sandbox's public API: run one operation in a fresh KVM micro-VM and get back what the guest
// reported. Every byte of an image is parsed only inside that VM (docs/sandbox.md).
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <instar/guest_abi.h>

namespace instar::vmm {

inline constexpr std::uint64_t DEFAULT_GUEST_MEMORY = INSTAR_DEFAULT_GUEST_MEMORY;
// Ten seconds: far more than parsing any metadata needs; long copies pass their own budget.
inline constexpr std::chrono::milliseconds DEFAULT_TIMEOUT{10'000};

// A file the host opened for the guest. The guest sees only its index in the device list.
struct Device {
    int fd = -1;             // borrowed: the caller keeps it open during run()
    std::uint64_t size = 0;  // the guest can address [0, size)
    bool writable = false;   // at most one non-output device per run may be writable
    // A file being created: writable, writes may extend it up to `size`, and the guest may set its
    // length (INSTAR_HC_SET_LENGTH). Use output_device().
    bool output = false;
    // Opened with O_DIRECT (cache modes none/directsync): the hypercall server moves its data through
    // aligned bounce buffers (DIRECT_IO_ALIGN), reading and rewriting partial blocks at the edges.
    bool direct = false;
    // The operation flushes this device's writes when it ends (a cache mode that flushes, not
    // O_DIRECT): the host starts their writeback as they come (device_io.h, WritebackStarter), so
    // that flush waits for the last few megabytes, not for all of them.
    bool early_writeback = false;
    // cache=unsafe (qemu's BDRV_O_NO_FLUSH): INSTAR_HC_FLUSH succeeds without flushing this device.
    bool flush_ignored = false;
};

// What INSTAR_HC_DEVICE_INFO (and the boot info's device table) says of a device: INSTAR_DEVICE_*.
inline std::uint64_t device_flags(const Device& d) {
    return (d.writable ? INSTAR_DEVICE_WRITABLE : 0) | (d.output ? INSTAR_DEVICE_OUTPUT : 0);
}

// An output device over `fd`: addressable up to INSTAR_MAX_OUTPUT_SIZE.
inline Device output_device(int fd) { return Device{fd, INSTAR_MAX_OUTPUT_SIZE, true, true}; }

struct Record;

// A backing file the host opened while the guest ran (INSTAR_HC_NEXT_IMAGE): the read-only device
// and what the guest inspects it with (INSTAR_NEXT_IMAGE_*: the module index and the flags).
struct NextImage {
    Device device;
    std::uint32_t module_flags = 0;
    std::uint64_t allocated = 0; // the file's allocated bytes (st_blocks * 512), as plans' facts name them
};

// Creates the further files an operation's guest may add (INSTAR_HC_ADD_FILE, e.g. vmdk extents).
// The operation owns them (and deletes them when the operation fails). It also opens the backing
// files an INSTAR_OP_INFO_FIRST guest asks for (INSTAR_HC_NEXT_IMAGE), which the operation owns too.
class OutputFiles {
public:
    virtual ~OutputFiles() = default;
    // `name` is already checked to be a plain file name (no '/', not "." or "..", at most
    // NAME_MAX bytes). Returns the new output device, or nullopt with `error` set (one line).
    virtual std::optional<Device> add(const std::string& name, std::string& error) = 0;
    // The backing file of image `image`'s last inspection, judged from the records the guest sent
    // so far (untrusted: decoded as any guest output). nullopt: not opened in this run (the guest
    // then stops before its operation and the command takes its ordinary path).
    virtual std::optional<NextImage> next_image(const std::vector<Record>& records, std::uint32_t image) {
        (void)records;
        (void)image;
        return std::nullopt;
    }
};

// Where the guest runs (docs/sandbox.md): a KVM micro-VM, or a confined process (no /dev/kvm
// needed). Auto: $INSTAR_SANDBOX when set (auto|kvm|process), else KVM when usable, else process.
enum class SandboxKind { Auto, Kvm, Process };
std::optional<SandboxKind> parse_sandbox_kind(const std::string& text); // "auto", "kvm", "process"
const char* sandbox_kind_name(SandboxKind kind);
// config's kind, or $INSTAR_SANDBOX's when that is Auto (an unknown value counts as auto).
SandboxKind requested_sandbox(SandboxKind kind);

struct SandboxConfig {
    SandboxKind sandbox = SandboxKind::Auto;

    std::uint64_t max_guest_memory = DEFAULT_GUEST_MEMORY; // the cap (--max-guest-memory); rounded down to 2 MiB
    // The user chose the cap (--max-guest-memory): an operation that could retry with more RAM (check's
    // reference-count array, docs/check.md) keeps to it instead.
    bool max_guest_memory_given = false;
    // This operation's RAM: 0 = max_guest_memory; larger values are clamped to max_guest_memory.
    // Small operations (info) ask for little: a smaller VM is cheaper to create (docs/sandbox.md).
    std::uint64_t guest_memory = 0;
    // KVM only: the RAM the guest starts with when less than guest_ram() (0: all of it). The guest
    // asks for the rest when its allocator runs out (INSTAR_HC_GROW_MEMORY) and gets it up to
    // guest_ram(): a VM's memslot costs more the larger it is (docs/sandbox.md), and an operation
    // that may need the cap but mostly needs little (an edit: a resize's tables, a commit's
    // buffers) pays for it only when it does. A run that writes cannot be repeated with more RAM
    // (roomier()), so this is how such a run starts small. The process sandbox has all of it at once.
    std::uint64_t start_memory = 0;
    // Advise host huge pages for guest RAM: pays when the guest touches many MiB (create's cluster
    // buffers, copies), costs a 2 MiB clear per touched region when it touches a few pages (info).
    bool huge_pages = true;
    std::chrono::milliseconds timeout = DEFAULT_TIMEOUT;   // wall-clock budget for the guest
    std::string runtime_path; // the guest runtime ELF; empty: default_runtime_path()
    // The process sandbox's runtime; empty: runtime_path with "-process" before ".elf" when that is
    // set, else default_process_runtime_path().
    std::string process_runtime_path;
    OutputFiles* outputs = nullptr; // where INSTAR_HC_ADD_FILE goes; nullptr: the guest may not add files
    // Called for each INSTAR_HC_PROGRESS (work done, total; done <= total, checked), on the thread
    // that called run(). Empty: progress reports are accepted and dropped.
    std::function<void(std::uint64_t done, std::uint64_t total)> progress;
    // Write-behind: an INSTAR_WRITE_DEFERRABLE write to an output device is written from guest RAM
    // by a host writer thread while the guest carries on (docs/sandbox.md, "Write-behind"). Convert,
    // commit and rebase ask for it with write_behind_requested() (by default where a second CPU can
    // take the writes; INSTAR_WRITE_BEHIND=off|on to choose; docs/convert.md, figures).
    bool write_behind = false;
    // INSTAR_HC_COMPRESS runs on one worker thread per online CPU beside the vCPU thread (without:
    // on the vCPU thread alone). For convert; other operations do not compress.
    bool compress_workers = false;
    // Read-ahead: the guest's INSTAR_READ_AHEAD reads are made by a host reader thread while the
    // guest runs on (read_ahead_worker.h), in both sandboxes. Compare and convert (without
    // write-behind) ask for it with read_ahead_requested(). Without it the process sandbox still
    // reads ahead on its serving thread, after each answer (its thread is not the guest's CPU).
    bool read_ahead = false;
    // A one-shot process (the command line): the finished VM is not torn down here but left to a
    // keeper process that shares this address space and ends when this process does, so closing
    // the VM (SRCU grace periods, freeing its MMU state: 1 ms idle, several ms on a loaded host)
    // happens after the command's exit status is known (docs/sandbox.md, "Start-up"). At most
    // MAX_DETACHED_TEARDOWNS runs per process; later runs tear down here.
    bool detached_teardown = false;
};

// Whether a data operation (convert, commit, rebase) asks for SandboxConfig::write_behind:
// INSTAR_WRITE_BEHIND=off or =on when set so; otherwise on where more than one CPU is online (the
// writes overlap the reads only where another CPU can run them).
bool write_behind_requested();
// Whether compare and convert ask for SandboxConfig::read_ahead: INSTAR_READ_AHEAD=off or =on when
// set so; otherwise on where more than one CPU is online (another CPU must make the reads).
bool read_ahead_requested();

struct Record {
    std::uint32_t type = 0;
    std::vector<std::uint8_t> data;
};

struct RunResult {
    std::int32_t exit_status = 0; // the guest's instar::guest::Status (0 = Ok)
    std::vector<Record> records;  // size-bounded; per-type validation is the operation's job
    std::vector<std::string> log; // printable ASCII, each line bounded
    std::uint32_t dropped_log_lines = 0;
    std::uint64_t bytes_written = 0; // by INSTAR_HC_WRITE (not the fills of INSTAR_HC_SET_LENGTH)
    // Calls that may have changed a writable device (WRITE, WRITE_SEGMENTS, SET_LENGTH, DISCARD,
    // DISCARD_RANGES), failed ones included: 0 means every device is as it was before the run.
    std::uint64_t device_changes = 0;
    std::string host_error;          // the first host-side I/O failure the guest was told about
    int host_errno = 0;              // its errno (EFBIG: the file system cannot hold that size)
    SandboxKind sandbox = SandboxKind::Kvm; // the sandbox that ran the guest (never Auto)
    std::string confinement; // process sandbox: what its guest process applied, e.g. "seccomp-strict,..."
};

enum class ErrorKind {
    KvmMissing,      // /dev/kvm does not exist
    KvmNoAccess,     // /dev/kvm exists but cannot be opened (permissions)
    KvmUnusable,     // wrong API version, missing capability, or a KVM ioctl failed
    Config,          // bad SandboxConfig, device list or arguments
    GuestImage,      // the runtime or a module file cannot be loaded
    HostResource,    // mmap, timer, ... failed
    HostIo,          // pread/pwrite on a device failed in a way the guest cannot fix
    GuestBadRequest, // a hypercall broke the rules (range, device, writable flag, unknown call)
    GuestBadRecord,  // a record or log line broke the limits; output discarded
    GuestFault,      // a CPU exception in the guest (vector and address in the message)
    GuestShutdown,   // triple fault, or the guest stopped without the exit hypercall
    GuestTimeout,    // the watchdog ended the guest
    UnexpectedExit,  // any other VM exit
};

struct SandboxError {
    ErrorKind kind;
    std::string message;          // one line, says what happened and (for KVM) how to fix it
    std::vector<std::string> log; // the guest's log lines up to the failure, for diagnosis
};

// A value or a SandboxError. Nothing in the sandbox throws across this API.
template <typename T>
class Outcome {
public:
    Outcome(T value) : v_(std::move(value)) {}
    Outcome(SandboxError error) : v_(std::move(error)) {}
    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(v_); }
    const T& value() const { return std::get<0>(v_); }
    T* operator->() { return &value(); }
    const SandboxError& error() const { return std::get<1>(v_); }

private:
    std::variant<T, SandboxError> v_;
};

// Boots the runtime plus `modules` (paths of .gmod files, loaded in order: module 0 first),
// attaches `devices`, runs `op` (enum instar_op) with `arg` (at most INSTAR_MAX_OP_ARG bytes).
Outcome<RunResult> run(const SandboxConfig& config, std::span<const Device> devices,
                       std::span<const std::string> modules, std::uint32_t op,
                       std::span<const std::uint8_t> arg);

// The RAM run() gives a guest for `config`: guest_memory (or the cap when 0), at most the cap, rounded
// down to 2 MiB.
std::uint64_t guest_ram(const SandboxConfig& config);
// The RAM a KVM guest starts with: start_memory when set and smaller (rounded down to 2 MiB, at
// least INSTAR_MIN_GUEST_MEMORY), else guest_ram(config).
std::uint64_t start_ram(const SandboxConfig& config);

// After a run that only reads ended with the guest out of memory (Status::NoMemory): the roomier
// config to run it again with, or nullopt when there is none. First the cap (guest_memory 0), then,
// when the user set no cap (max_guest_memory_given false), the largest guest, INSTAR_MAX_GUEST_MEMORY
// (its RAM is mapped lazily: a run pays only for the pages it touches), with huge pages (a guest
// that outgrew its RAM touches many MiB). A run that writes must not be repeated this way.
std::optional<SandboxConfig> roomier(const SandboxConfig& ran);

// For a process that runs many operations: starts creating a VM for `config` on a background thread
// (KVM VM, RAM, vCPU: ~0.5 ms) so the next run() with the same memory size and huge-page advice
// finds it ready, and from then on keeps one such spare ready (and tears finished VMs down) on that
// thread after every run. A one-shot command should not call it: the thread's cross-CPU wake-ups
// cost more than the VM creation it hides, and the last spare is never used. A spare never ran
// guest code, so each operation still gets a fresh VM; errors surface in run().
void prewarm(const SandboxConfig& config);

// Whether /dev/kvm is there and usable, without booting anything; nullopt when it is.
std::optional<SandboxError> check_kvm();
// Whether run() can run a guest for `config` at all: nullopt for the process sandbox (requested, or
// auto without usable KVM), else check_kvm(). Operations call this before their first run.
std::optional<SandboxError> check_sandbox(const SandboxConfig& config);

// Where the guest runtime is: $INSTAR_GUEST_RUNTIME, else the installed copy, else the build tree.
std::string default_runtime_path();
// The process sandbox's runtime: $INSTAR_GUEST_RUNTIME_PROCESS, else $INSTAR_GUEST_RUNTIME with
// "-process" before ".elf", else the installed copy, else the build tree.
std::string default_process_runtime_path();
// The process sandbox's loader: $INSTAR_PROCESS_LOADER, else the installed copy, else the build tree.
std::string process_loader_path();

// Finds a plugin's guest module (e.g. "raw.gmod"): $INSTAR_PLUGIN_PATH directories, the installed
// plugin directory, then the build tree (plugins/<name>/guest/). Empty when not found.
std::string find_guest_module(const std::string& file_name);

} // namespace instar::vmm
