// The vCPU thread's seccomp-bpf allow-list (Firecracker-style): after the VM is built and the
// watchdog armed, the thread that runs the guest may make only the system calls the run loop and
// the hypercall server need, on the descriptors they need. Anything else kills the process
// (SECCOMP_RET_KILL_PROCESS). The filter is installed on that one thread only (no TSYNC): the CLI's
// own thread keeps its rights and carries on after the run. docs/sandbox.md, "System-call filter".
#pragma once

#include <linux/filter.h>

#include <atomic>
#include <cstddef>
#include <optional>
#include <vector>

#include "vmm/sandbox.h"

namespace instar::vmm {

struct VcpuFilter {
    int vcpu_fd = -1;            // ioctl(KVM_RUN) / ioctl(KVM_GET_REGS) only on this descriptor
    // pread/pwrite/fdatasync/fstat/ftruncate/fallocate/lseek only on these. They are allowed per
    // aligned power-of-two block of descriptors (fd_blocks), one rule per block and call: a vmdk's
    // thousands of extents opened into one contiguous range (ops/file_limit.h, FdBlock) cost a few
    // rules, not one each (the kernel refuses a BPF program of more than 4096 instructions).
    std::vector<int> device_fds;
    // When the guest may add files (INSTAR_HC_ADD_FILE), their descriptors are made on the caller's
    // thread during the run and placed at or above this number; the same I/O calls are then also
    // allowed on any descriptor >= it. -1: the run adds no files.
    int added_fd_floor = -1;
};

// An aligned block of descriptors: [first, first + count), count a power of two, first a multiple
// of count. One masked-equality rule (fd & ~(count - 1) == first) allows exactly this block.
struct FdRange {
    int first = 0;
    int count = 1;
};

// The fewest aligned power-of-two blocks whose union is exactly the set `fds` (negative values are
// ignored, duplicates count once), in ascending order. No descriptor outside the set is in a block.
std::vector<FdRange> fd_blocks(std::vector<int> fds);

// At most this many blocks per call: each is a few BPF instructions, times the 8 device calls, far
// below the kernel's 4096-instruction limit (BPF_MAXINSNS). A device set needing more (descriptors
// scattered across the table, not opened into a block) is refused with a message naming the count.
inline constexpr std::size_t MAX_DEVICE_FD_BLOCKS = 64;

// False only when INSTAR_SECCOMP=off (debugging; a warning is printed once on stderr).
bool seccomp_enabled();

// Installs the filter on the calling thread (PR_SET_NO_NEW_PRIVS for this thread, then
// SECCOMP_SET_MODE_FILTER without TSYNC). nullopt on success.
std::optional<SandboxError> confine_vcpu_thread(const VcpuFilter& filter);

// The same list without the vCPU ioctls (filter.vcpu_fd is ignored), for the write-behind writer
// thread (device_io.h) and the read-ahead reader thread (read_ahead_worker.h): they only write or
// read the devices and wait on their queue's lock.
std::optional<SandboxError> confine_worker_thread(const VcpuFilter& filter);

// The vCPU filter compiled ahead, by another thread, while the vCPU thread places the guest: what
// costs in confine_vcpu_thread is libseccomp's rule database and BPF generation (~0.09 ms of a
// ~4.5 ms `info` on kvm-pvm), not the kernel's install. The compiling thread stores the program,
// then `ready` (release); the vCPU thread installs it if `ready` (acquire) when it gets there,
// else compiles its own (it never waits).
struct AheadFilter {
    std::vector<sock_filter> program;
    std::atomic<bool> ready{false};
};

// Compiles `filter` as confine_vcpu_thread would install it, into `out` (setting out.ready).
// Quiet on failure: the vCPU thread then compiles (and reports) it itself.
void compile_vcpu_filter(const VcpuFilter& filter, AheadFilter& out);

// Installs the vCPU filter on the calling thread: `ahead`'s program when ready, else as
// confine_vcpu_thread. nullopt on success.
std::optional<SandboxError> confine_vcpu_thread(const VcpuFilter& filter, const AheadFilter& ahead);

} // namespace instar::vmm
