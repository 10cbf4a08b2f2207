// The one list of system calls the vCPU thread may make after it drops its rights, each with the
// reason it is there. Built with libseccomp; the default action kills the whole process.
#include "vmm/seccomp_filter.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

// libseccomp's SCMP_A0..SCMP_A5 macros leave datum_b to zero-initialisation, which clang reports
// (-Wmissing-field-initializers) inside their expansion here; gcc does not.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wmissing-field-initializers"
#endif

namespace instar::vmm {

namespace {


// Calls allowed whatever their arguments. Nothing here opens, creates, executes, maps executable
// memory, signals another task, or talks to the network.
struct Plain {
    int nr;
    const char* reason;
};
const Plain PLAIN[] = {
    {SCMP_SYS(futex), "the caller-thread broker (ADD_FILE, PROGRESS), the write-behind queue, malloc's locks"},
    {SCMP_SYS(brk), "malloc: records, log lines and error messages are built during the run"},
    {SCMP_SYS(munmap), "malloc/free of large blocks; glibc frees thread-arena heaps"},
    {SCMP_SYS(mremap), "realloc of large blocks (the record list)"},
    {SCMP_SYS(madvise), "free() trims heaps (MADV_DONTNEED); thread exit releases its stack"},
    {SCMP_SYS(rt_sigreturn), "return from the watchdog's (empty) signal handler"},
    {SCMP_SYS(rt_sigprocmask), "the watchdog restores the signal mask; glibc blocks signals at thread exit"},
    {SCMP_SYS(restart_syscall), "the kernel's restart of a call the watchdog signal interrupted"},
    {SCMP_SYS(timer_delete), "the watchdog deletes its timer at the end of the run"},
    {SCMP_SYS(clock_gettime), "the watchdog's deadline check, should the vDSO fall back to the syscall"},
    {SCMP_SYS(exit), "the vCPU (or writer) thread ends (only this thread: exit_group is not allowed)"},
};

// Calls allowed only on the guest's devices: the hypercall server's whole file I/O.
const Plain ON_DEVICES[] = {
    {SCMP_SYS(pread64), "INSTAR_HC_READ into guest RAM"},
    {SCMP_SYS(pwrite64), "INSTAR_HC_WRITE (on the writer thread with write-behind); zero fills for SET_LENGTH and DISCARD"},
    {SCMP_SYS(fdatasync), "INSTAR_HC_FLUSH"},
    {SCMP_SYS(sync_file_range), "early writeback of a device the operation will flush (device_io.h)"},
    {SCMP_SYS(fstat), "SET_LENGTH, ALLOCATION, DISCARD and O_DIRECT writes read the file's length (not newfstatat: takes a path)"},
    {SCMP_SYS(ftruncate), "INSTAR_HC_SET_LENGTH; an O_DIRECT write cuts its padding block back"},
    {SCMP_SYS(fallocate), "SET_LENGTH preallocation, DISCARD hole punching"},
    {SCMP_SYS(lseek), "INSTAR_HC_ALLOCATION (SEEK_DATA/SEEK_HOLE)"},
};

// ioctl requests allowed on the vCPU descriptor (and on nothing else).
struct Ioctl {
    unsigned long request;
    const char* reason;
};
const Ioctl VCPU_IOCTLS[] = {
    {KVM_RUN, "run the guest until its next exit"},
    {KVM_GET_REGS, "read rip to report a KVM internal error"},
};

// Calls allowed unless they ask for executable memory: malloc needs fresh memory, nothing on this
// thread needs new code.
const Plain NO_EXEC[] = {
    {SCMP_SYS(mmap), "malloc: large blocks and new thread-arena heaps (never PROT_EXEC)"},
    {SCMP_SYS(mprotect), "malloc grows thread-arena heaps (never PROT_EXEC)"},
};

SandboxError filter_error(const char* what, int rc) {
    return {ErrorKind::HostResource,
            std::string("seccomp: ") + what + " failed: " + std::strerror(rc < 0 ? -rc : rc), {}};
}

scmp_datum_t datum(int fd) { return static_cast<scmp_datum_t>(static_cast<unsigned int>(fd)); }

bool read_enabled() {
    const char* v = std::getenv("INSTAR_SECCOMP");
    if (v == nullptr || std::strcmp(v, "off") != 0) return true;
    std::fputs("instar: warning: INSTAR_SECCOMP=off: the sandbox's system-call filter is disabled; use this only to "
               "debug, never on untrusted images\n",
               stderr);
    return false;
}

} // namespace

std::vector<FdRange> fd_blocks(std::vector<int> fds) {
    std::sort(fds.begin(), fds.end());
    fds.erase(std::unique(fds.begin(), fds.end()), fds.end());
    std::vector<FdRange> out;
    std::size_t i = 0;
    while (i < fds.size() && fds[i] < 0)
        ++i;
    while (i < fds.size()) {
        // One contiguous run [a, b) of the set.
        const std::int64_t a = fds[i];
        std::size_t j = i + 1;
        while (j < fds.size() && fds[j] == fds[j - 1] + 1)
            ++j;
        const std::int64_t b = static_cast<std::int64_t>(fds[j - 1]) + 1;
        // Cut the run greedily into the largest aligned power-of-two blocks that fit: the classic
        // exact cover (as for an address range into CIDR prefixes), at most 2 log2(b - a) blocks.
        for (std::int64_t at = a; at < b;) {
            std::int64_t size = 1;
            while (at % (size * 2) == 0 && at + size * 2 <= b)
                size *= 2;
            out.push_back({static_cast<int>(at), static_cast<int>(size)});
            at += size;
        }
        i = j;
    }
    return out;
}

bool seccomp_enabled() {
    static const bool enabled = read_enabled();
    return enabled;
}

namespace {

struct Release {
    scmp_filter_ctx c;
    ~Release() { seccomp_release(c); }
};

// The allow-list as a libseccomp filter in `ctx` (made by seccomp_init(SCMP_ACT_KILL_PROCESS)).
std::optional<SandboxError> add_rules(scmp_filter_ctx ctx, const VcpuFilter& f, bool vcpu) {
    int rc = 0;
    for (const Plain& p : PLAIN)
        if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, p.nr, 0)) < 0) return filter_error("seccomp_rule_add", rc);
    for (const Plain& p : NO_EXEC)
        if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, p.nr, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) < 0)
            return filter_error("seccomp_rule_add", rc);
    for (const Ioctl& i : VCPU_IOCTLS)
        if (vcpu && (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 2, SCMP_A0(SCMP_CMP_EQ, datum(f.vcpu_fd)),
                                   SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(i.request)))) < 0)
            return filter_error("seccomp_rule_add", rc);
    const std::vector<FdRange> blocks = fd_blocks(f.device_fds);
    if (blocks.size() > MAX_DEVICE_FD_BLOCKS)
        return SandboxError{ErrorKind::HostResource,
                            "seccomp: the " + std::to_string(f.device_fds.size()) + " device descriptors need " +
                                std::to_string(blocks.size()) + " separate blocks, more than the filter allows (" +
                                std::to_string(MAX_DEVICE_FD_BLOCKS) + "); open many files into one block (FdBlock)",
                            {}};
    for (const Plain& p : ON_DEVICES) {
        for (const FdRange& b : blocks) {
            // The fd argument is compared as the 64-bit register: a block's mask keeps the upper
            // bits, so only the zero-extended descriptors [first, first + count) match.
            const scmp_datum_t mask = ~static_cast<scmp_datum_t>(static_cast<unsigned int>(b.count - 1));
            rc = b.count == 1
                     ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, p.nr, 1, SCMP_A0(SCMP_CMP_EQ, datum(b.first)))
                     : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, p.nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, mask, datum(b.first)));
            if (rc < 0)
                return filter_error("seccomp_rule_add", rc);
        }
        if (f.added_fd_floor >= 0 &&
            (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, p.nr, 1, SCMP_A0(SCMP_CMP_GE, datum(f.added_fd_floor)))) < 0)
            return filter_error("seccomp_rule_add", rc);
    }
    return std::nullopt;
}

std::optional<SandboxError> confine_thread(const VcpuFilter& f, bool vcpu) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == nullptr) return filter_error("seccomp_init", ENOMEM);
    const Release release{ctx};
    if (auto bad = add_rules(ctx, f, vcpu)) return bad;
    // No TSYNC (libseccomp's default): only this thread is confined. NO_NEW_PRIVS (also libseccomp's
    // default) is set for this thread only, as the kernel requires of an unprivileged filter.
    if (const int rc = seccomp_load(ctx); rc < 0) return filter_error("seccomp_load", rc);
    return std::nullopt;
}

} // namespace

std::optional<SandboxError> confine_vcpu_thread(const VcpuFilter& f) { return confine_thread(f, true); }

std::optional<SandboxError> confine_worker_thread(const VcpuFilter& f) { return confine_thread(f, false); }

void compile_vcpu_filter(const VcpuFilter& f, AheadFilter& out) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == nullptr) return;
    const Release release{ctx};
    if (add_rules(ctx, f, true)) return;
    // libseccomp 2.5 exports the program only to a descriptor: an unnamed memory file.
    const int fd = static_cast<int>(::syscall(SYS_memfd_create, "instar-seccomp", MFD_CLOEXEC));
    if (fd < 0) return;
    struct Close {
        int fd;
        ~Close() { ::close(fd); }
    } close_fd{fd};
    struct stat st {};
    if (seccomp_export_bpf(ctx, fd) < 0 || ::fstat(fd, &st) != 0 || st.st_size <= 0 ||
        st.st_size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
        return;
    }
    std::vector<sock_filter> program(static_cast<std::size_t>(st.st_size) / sizeof(sock_filter));
    if (::pread(fd, program.data(), static_cast<std::size_t>(st.st_size), 0) != st.st_size) return;
    out.program = std::move(program);
    out.ready.store(true, std::memory_order_release);
}

std::optional<SandboxError> confine_vcpu_thread(const VcpuFilter& f, const AheadFilter& ahead) {
    if (!ahead.ready.load(std::memory_order_acquire)) return confine_vcpu_thread(f);
    // What seccomp_load does with libseccomp's defaults: NO_NEW_PRIVS, then the filter on this
    // thread only (flags 0: no TSYNC, no logging).
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return filter_error("prctl(PR_SET_NO_NEW_PRIVS)", errno);
    const sock_fprog prog{static_cast<unsigned short>(ahead.program.size()), const_cast<sock_filter*>(ahead.program.data())};
    if (ahead.program.size() > BPF_MAXINSNS) return filter_error("seccomp (program too long)", E2BIG);
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return filter_error("seccomp(SECCOMP_SET_MODE_FILTER)", errno);
    return std::nullopt;
}

} // namespace instar::vmm
