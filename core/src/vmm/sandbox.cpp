// run(): validate the request, lay out guest RAM, boot the VM, collect what the guest reported.
#include "vmm/sandbox.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <mutex>

#include "vmm/guest_image.h"
#include "vmm/guest_layout.h"
#include "vmm/guest_memory.h"
#include "vmm/hypercall_server.h"
#include "vmm/kvm_system.h"
#include "vmm/process_sandbox.h"
#include "vmm/read_ahead_worker.h"
#include "vmm/reaper.h"
#include "vmm/seccomp_filter.h"
#include "vmm/spare_vm.h"
#include "vmm/vcpu_thread.h"
#include "vmm/vm.h"
#include "vmm/watchdog.h"
#include "vmm/x86_boot.h"

namespace instar::vmm {

namespace {

SandboxError config_error(const std::string& msg) { return {ErrorKind::Config, msg, {}}; }

// Confined threads (vCPU, write-behind, compress workers) allocate and free memory under a
// seccomp filter that kills on openat. glibc's per-thread arenas give memory back with
// shrink_heap(), whose first call in a process opens /proc/sys/vm/overcommit_memory: a thread
// arena that shrank during a run killed the process (seen in the compress test once the image
// loader stopped freeing large blocks, which had raised malloc's trim threshold by chance). One
// arena for every thread means no thread heaps, hence no shrink_heap(); the main arena trims with
// brk, which the filter allows. Set once, before the vmm starts its first thread (glibc fixes the
// arena limit when a thread first needs an arena).
void single_malloc_arena() {
    static std::once_flag once;
    std::call_once(once, [] { (void)::mallopt(M_ARENA_MAX, 1); });
}

std::optional<SandboxError> check_request(const SandboxConfig& config, std::span<const Device> devices,
                                          std::span<const std::string> modules, std::span<const std::uint8_t> arg) {
    const bool own_size = config.guest_memory != 0; // 0: the operation takes the cap
    for (const std::uint64_t asked : {config.max_guest_memory, own_size ? config.guest_memory : config.max_guest_memory}) {
        const std::uint64_t ram = asked & ~(INSTAR_LARGE_PAGE_SIZE - 1);
        if (ram < INSTAR_MIN_GUEST_MEMORY || ram > INSTAR_MAX_GUEST_MEMORY) {
            return config_error("guest memory must be between " + std::to_string(INSTAR_MIN_GUEST_MEMORY >> 20) +
                                " MiB and " + std::to_string(INSTAR_MAX_GUEST_MEMORY >> 20) + " MiB, not " +
                                std::to_string(asked) + " bytes");
        }
    }
    if (config.timeout.count() <= 0) return config_error("the guest time budget must be positive");
    if (devices.size() > INSTAR_MAX_DEVICES) return config_error("too many devices for one guest");
    std::size_t writable = 0;
    for (const Device& d : devices) {
        if (d.fd < 0) return config_error("a device has no open file");
        if (d.output && (!d.writable || d.size > INSTAR_MAX_OUTPUT_SIZE))
            return config_error("an output device must be writable and at most INSTAR_MAX_OUTPUT_SIZE");
        writable += d.writable && !d.output ? 1 : 0;
    }
    if (writable > 1) return config_error("at most one device may be writable");
    if (modules.size() > INSTAR_MAX_MODULES) return config_error("too many guest modules for one guest");
    if (arg.size() > INSTAR_MAX_OP_ARG) return config_error("operation argument too large");
    return std::nullopt;
}

Outcome<RunResult> boot_and_run(PreparedVm& vm, const GuestImage& rt,
                                const std::vector<std::shared_ptr<const GuestImage>>& images,
                                std::span<const Device> devices, std::uint32_t op, std::span<const std::uint8_t> arg,
                                std::chrono::milliseconds timeout, OutputFiles* outputs,
                                const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                                const VcpuFilter* confine, const AheadFilter& ahead, bool write_behind,
                                bool compress_workers, bool read_ahead, const HypercallServer::GrowFn& grow) {
    GuestMemory& m = vm.memory;
    x86::write_boot_tables({m.host_base(), m.size()},
                           std::span<const std::uint64_t, INSTAR_EXCEPTION_VECTORS>(rt.exception_handlers), m.limit());
    if (auto bad = lay_out_guest(m, rt, images, devices, op, arg, KVM_LAYOUT)) return *bad;

    if (auto bad = vm.vm->boot(INSTAR_GPA_RUNTIME + rt.entry)) return *bad;
    auto watchdog = Watchdog::arm(timeout);
    if (!watchdog) return watchdog.error();
    // Everything is open, built and armed: from here this thread may only run the guest and serve
    // its hypercalls (seccomp_filter.cpp has the list; `confine` is null when it is off).
    // The host threads beside it (write-behind writer, read-ahead reader, compress workers) exist
    // before this thread drops its rights (clone is not on the list), and each confines itself with
    // the same device list before it touches a request.
    std::function<bool()> confine_worker;
    if (confine) confine_worker = [filter = *confine] { return !confine_worker_thread(filter).has_value(); };
    std::optional<WriteBehind> writer;
    if (write_behind) {
        writer.emplace(*watchdog.value());
        if (!writer->start(confine_worker)) writer.reset(); // no thread: plain writes
    }
    std::optional<ReadAheadWorker> reader;
    if (read_ahead) {
        reader.emplace(*watchdog.value());
        if (!reader->start(confine_worker)) reader.reset(); // no thread: reads at once
    }
    // INSTAR_HC_COMPRESS's workers, with the bulk-copy runs only: one per online CPU beside this
    // thread, which takes its share of each batch.
    std::optional<CompressPool> pool;
    if (compress_workers) {
        pool.emplace();
        if (const unsigned cpus = online_cpus(); cpus > 1) pool->start(cpus - 1, confine_worker);
    }
    if (confine) {
        if (auto bad = confine_vcpu_thread(*confine, ahead)) return *bad;
    }
    HypercallServer server(m, devices, *watchdog.value(), outputs, progress, writer ? &*writer : nullptr);
    if (pool) server.set_compress_pool(&*pool);
    if (reader) server.set_read_ahead_worker(&*reader);
    if (grow) server.set_memory_grower(grow);
    auto ran = vm.vm->run(server, *watchdog.value());
    if (!ran) {
        SandboxError e = ran.error();
        e.log = server.take_log(); // records are dropped: a failed guest's output is never used
        return e;
    }
    return server.take_result();
}

} // namespace

namespace {
// The process build of a runtime named explicitly: "-process" before ".elf" (guest/meson.build).
std::string process_runtime_for(const std::string& runtime) {
    const std::string suffix = ".elf";
    if (runtime.size() >= suffix.size() && runtime.compare(runtime.size() - suffix.size(), suffix.size(), suffix) == 0)
        return runtime.substr(0, runtime.size() - suffix.size()) + "-process" + suffix;
    return runtime + "-process";
}
} // namespace

std::uint64_t guest_ram(const SandboxConfig& config) {
    const std::uint64_t asked = config.guest_memory == 0 ? config.max_guest_memory
                                                         : std::min(config.guest_memory, config.max_guest_memory);
    return asked & ~(INSTAR_LARGE_PAGE_SIZE - 1);
}

std::uint64_t start_ram(const SandboxConfig& config) {
    const std::uint64_t ram = guest_ram(config);
    const std::uint64_t start = std::max<std::uint64_t>(config.start_memory & ~(INSTAR_LARGE_PAGE_SIZE - 1),
                                                        INSTAR_MIN_GUEST_MEMORY);
    return config.start_memory == 0 || start >= ram ? ram : start;
}

std::optional<SandboxConfig> roomier(const SandboxConfig& ran) {
    SandboxConfig next = ran;
    next.guest_memory = 0;
    next.huge_pages = true; // the guest outgrew its RAM: it touches many MiB, where huge pages pay
    if (guest_ram(next) > guest_ram(ran))
        return next;
    if (ran.max_guest_memory_given || ran.max_guest_memory >= INSTAR_MAX_GUEST_MEMORY)
        return std::nullopt;
    next.max_guest_memory = INSTAR_MAX_GUEST_MEMORY;
    return next;
}

Outcome<RunResult> run(const SandboxConfig& config, std::span<const Device> devices,
                       std::span<const std::string> modules, std::uint32_t op, std::span<const std::uint8_t> arg) {
    if (auto bad = check_request(config, devices, modules, arg)) return *bad;
    single_malloc_arena();
    const std::uint64_t ram = guest_ram(config);
    const std::uint64_t start = start_ram(config); // KVM: grows to `ram` when the guest asks
    const bool huge = config.huge_pages;

    std::vector<std::shared_ptr<const GuestImage>> images;
    for (const std::string& path : modules) {
        auto m = load_guest_image(path, ImageKind::Module);
        if (!m) return m.error();
        images.push_back(m.value());
    }
    const SandboxKind kind = requested_sandbox(config.sandbox);
    auto in_process = [&]() -> Outcome<RunResult> {
        std::string path = config.process_runtime_path;
        if (path.empty()) path = config.runtime_path.empty() ? default_process_runtime_path() : process_runtime_for(config.runtime_path);
        auto runtime = load_guest_image(path, ImageKind::Runtime);
        if (!runtime) return runtime.error();
        return run_in_process(config, ram, devices, *runtime.value(), images, op, arg);
    };
    if (kind == SandboxKind::Process) return in_process();

    const std::string runtime_path = config.runtime_path.empty() ? default_runtime_path() : config.runtime_path;
    auto runtime = load_guest_image(runtime_path, ImageKind::Runtime);
    if (!runtime) return runtime.error();

    // The keeper first, so that it closes its copies of the descriptors while this thread waits
    // in the VM's set-up (the memslot's SRCU grace period) instead of at exit.
    if (config.detached_teardown && !spares_enabled() && (kind == SandboxKind::Kvm || !check_kvm()))
        (void)start_teardown_keeper();
    auto prepared = take_prepared_vm(start, huge, ram);
    if (!prepared) {
        // Auto: without a usable /dev/kvm, the process sandbox runs the guest instead.
        const ErrorKind why = prepared.error().kind;
        if (kind == SandboxKind::Auto &&
            (why == ErrorKind::KvmMissing || why == ErrorKind::KvmNoAccess || why == ErrorKind::KvmUnusable)) {
            return in_process();
        }
        return prepared.error();
    }
    std::shared_ptr<PreparedVm> vm = std::move(prepared.value());
    // The guest runs on a fresh thread that confines itself (vcpu_thread.h); this thread creates
    // added files and reports progress for it, through the broker.
    int added_fd_floor = vm->vm->vcpu_fd() + 1;
    for (const Device& d : devices) added_fd_floor = std::max(added_fd_floor, d.fd + 1);
    std::optional<BrokeredOutputs> outputs; // destroyed here, on this thread: it closes descriptors
    if (config.outputs != nullptr) outputs.emplace(*config.outputs, added_fd_floor);
    std::optional<VcpuFilter> filter;
    if (seccomp_enabled()) {
        filter.emplace();
        filter->vcpu_fd = vm->vm->vcpu_fd();
        for (const Device& d : devices) filter->device_fds.push_back(d.fd);
        filter->added_fd_floor = outputs ? added_fd_floor : -1;
    }
    AheadFilter ahead; // compiled on this thread while the vCPU thread places the guest
    auto ran = run_on_fresh_thread([&](Broker& broker) {
        if (outputs) outputs->attach(broker);
        // The vCPU thread may not map memory or add a memslot (seccomp): this thread does, while the
        // vCPU waits in the hypercall's exit.
        HypercallServer::GrowFn grow;
        if (start < ram) {
            grow = [&](std::uint64_t new_size) {
                bool grown = false;
                broker.call([&] { grown = vm->vm->grow_memory(vm->memory, new_size); });
                return grown;
            };
        }
        std::function<void(std::uint64_t, std::uint64_t)> progress;
        if (config.progress) {
            progress = [&](std::uint64_t done, std::uint64_t total) {
                broker.call([&] { config.progress(done, total); });
            };
        }
        return boot_and_run(*vm, *runtime.value(), images, devices, op, arg, config.timeout,
                            outputs ? &*outputs : nullptr, progress, filter ? &*filter : nullptr, ahead,
                            config.write_behind, config.compress_workers, config.read_ahead, grow);
    }, [&] {
        if (filter) compile_vcpu_filter(*filter, ahead);
    });
    // Everything the host needs was copied out of the guest. After prewarm() (a process running
    // many operations), in the background: get a spare ready for the next run first (it may be
    // waiting for it), then tear this VM down. Otherwise tear it down here: a helper thread would
    // cost more in cross-CPU wake-ups than the teardown it hides (docs/sandbox.md, "Start-up").
    if (spares_enabled()) {
        announce_spare_vm(start);
        reap_later([vm, start, ram, huge]() mutable {
            prepare_spare_vm(start, huge, ram);
            vm.reset();
        });
    } else if (config.detached_teardown && leave_to_keeper()) {
        // Left to the keeper on purpose: this process's descriptors of the VM close at its exit
        // without destroying it (the vCPU's kvm_run page, mapped in the address space the keeper
        // shares, holds the VM), and the kernel tears VM and guest RAM down when the keeper ends.
        new std::shared_ptr<PreparedVm>(std::move(vm)); // NOLINT: a deliberate leak
    } else {
        vm.reset();
    }
    return ran;
}


namespace {
// A host thread beside the vCPU's: `variable`=off or =on when set so, else where another CPU is online.
bool cpu_switch_requested(const char* variable) {
    if (const char* v = std::getenv(variable); v != nullptr) {
        if (std::string_view(v) == "off") return false;
        if (std::string_view(v) == "on") return true;
    }
    return online_cpus() > 1;
}
} // namespace

bool write_behind_requested() { return cpu_switch_requested("INSTAR_WRITE_BEHIND"); }

bool read_ahead_requested() { return cpu_switch_requested("INSTAR_READ_AHEAD"); }

std::optional<SandboxError> check_sandbox(const SandboxConfig& config) {
    switch (requested_sandbox(config.sandbox)) {
    case SandboxKind::Process: return std::nullopt;
    case SandboxKind::Kvm: return check_kvm();
    case SandboxKind::Auto: break;
    }
    return std::nullopt; // auto: whatever is wrong with KVM, the process sandbox runs the guest
}

void prewarm(const SandboxConfig& config) {
    if (requested_sandbox(config.sandbox) == SandboxKind::Process) return; // nothing to keep ready
    const std::uint64_t ram = guest_ram(config);
    if (ram < INSTAR_MIN_GUEST_MEMORY || ram > INSTAR_MAX_GUEST_MEMORY) return; // run() will say why
    const std::uint64_t start = start_ram(config);
    const bool huge = config.huge_pages;
    single_malloc_arena();
    enable_spares();
    announce_spare_vm(start);
    reap_later([start, ram, huge] { prepare_spare_vm(start, huge, ram); });
}

} // namespace instar::vmm
