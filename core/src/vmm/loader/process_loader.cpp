/* instar-process-loader: the first and only program of a process-sandbox guest (docs/sandbox.md).
 *
 * The host starts it with the channel on fd INSTAR_PROC_CHANNEL_FD, the guest-memory memfd on fd
 * LOADER_MEMFD_FD, an empty environment and argv = {name, ram size, entry, cpu seconds, arena base,
 * code pages} (hex, hex, decimal, hex, then "start-end,start-end,..." in hex: the pages of the
 * runtime and modules that hold code). It maps guest memory at the guest addresses, gives up everything it can (descriptors,
 * privileges, capabilities through a user namespace, resources), tells the host what it applied, enters seccomp strict mode
 * (read, write, exit, sigreturn) and jumps to the runtime's entry. From then on the process is
 * untrusted: the host believes nothing it sends beyond the hypercall rules.
 *
 * Freestanding C++ (C style): no libc (only its headers, for types and constants), raw system
 * calls. */
#include <instar/guest_abi.h>

#include <asm/prctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#include "process_loader.h"

#define LOADER_MEMFD_FD 4
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* x86-64 kernel ABI (asm/signal.h) */
#endif

// The compiler may emit calls to these for struct copies and clears; there is no libc to provide them.
extern "C" void* memset(void* d, int c, size_t n) {
    auto* p = static_cast<volatile uint8_t*>(d);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(c);
    return d;
}
extern "C" void* memcpy(void* d, const void* s, size_t n) {
    auto* p = static_cast<volatile uint8_t*>(d);
    const auto* q = static_cast<const uint8_t*>(s);
    for (size_t i = 0; i < n; ++i) p[i] = q[i];
    return d;
}

static long sys6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys(nr, a, b, c) sys6((nr), (long)(a), (long)(b), (long)(c), 0, 0, 0)

[[noreturn]] static void die(int code) {
    for (;;) sys(SYS_exit, code, 0, 0);
}

static int parse(const char* s, int base, uint64_t* out) {
    uint64_t v = 0;
    if (s == NULL || *s == '\0') return 0;
    for (; *s != '\0'; ++s) {
        unsigned d;
        if (*s >= '0' && *s <= '9') d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f') d = (unsigned)(*s - 'a' + 10);
        else return 0;
        if (v > (UINT64_MAX - d) / (uint64_t)base) return 0;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return 1;
}

/* CPU exceptions in the guest arrive as signals; the handler reports them as the KVM runtime's
 * exception stubs do (INSTAR_HC_FAULT with vector, rip, error code, fault address) and ends the
 * process. It runs on its own stack, so a guest stack overflow is reported too. */
static uint8_t alt_stack[64 * 1024] __attribute__((aligned(16)));

static void on_fault(int sig, siginfo_t* info, void* ctx) {
    (void)sig;
    (void)info;
    const ucontext_t* uc = (const ucontext_t*)ctx;
    struct instar_hypercall mb = {};
    mb.nr = INSTAR_HC_FAULT;
    mb.arg0 = (uint64_t)uc->uc_mcontext.gregs[REG_TRAPNO];
    mb.arg1 = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    mb.arg2 = (uint64_t)uc->uc_mcontext.gregs[REG_ERR];
    mb.arg3 = (uint64_t)uc->uc_mcontext.gregs[REG_CR2];
    sys(SYS_write, INSTAR_PROC_CHANNEL_FD, &mb, sizeof mb);
    die(124);
}

/* The kernel's struct sigaction for rt_sigaction (not glibc's). */
struct kernel_sigaction {
    void (*handler)(int, siginfo_t*, void*);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};
extern "C" void loader_restore(void);
__asm__(".text\n loader_restore:\n movl $15, %eax\n syscall\n hlt\n");

static uint32_t confine(uint64_t cpu_seconds, uint64_t ram) {
    uint32_t applied = 0;
    /* No descriptors but the channel. */
    for (int fd = 0; fd < 3; ++fd) sys(SYS_close, fd, 0, 0);
    if (sys(SYS_close_range, LOADER_MEMFD_FD, 0xFFFFFFFFu, 0) != 0) {
        for (int fd = LOADER_MEMFD_FD; fd < 65536; ++fd) sys(SYS_close, fd, 0, 0);
    }
    applied |= LOADER_FDS_CLOSED;
    sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0); /* the host gone: so is the guest */
    if (sys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0) == 0) applied |= LOADER_NO_NEW_PRIVS;
    sys(SYS_prctl, PR_SET_DUMPABLE, 0, 0); /* no core dumps, no ptrace by the same user */
    /* A user namespace where the kernel allows one: the process keeps no capability in the
     * host's namespace (it may have been started by root). No mount, network, IPC or PID
     * namespace: they confine mount(2), socket(2), shmget(2), kill(2) and the like, which strict
     * mode below kills the process for calling; making and tearing them down cost ~0.6 ms of
     * every sandbox start (docs/sandbox.md, "Start-up"). */
    if (sys(SYS_unshare, CLONE_NEWUSER, 0, 0) == 0) applied |= LOADER_NS_USER;
    /* Resource limits: no new files or processes, no core dump, CPU time near the budget, address
     * space about what is mapped now (strict mode allows no mmap anyway). */
    const struct rlimit zero = {0, 0};
    const struct rlimit cpu = {static_cast<rlim_t>(cpu_seconds), static_cast<rlim_t>(cpu_seconds)};
    const struct rlimit as = {static_cast<rlim_t>(ram + LOADER_AS_SLACK), static_cast<rlim_t>(ram + LOADER_AS_SLACK)};
    int limits_ok = 1;
    limits_ok &= sys(SYS_setrlimit, RLIMIT_CORE, &zero, 0) == 0;
    limits_ok &= sys(SYS_setrlimit, RLIMIT_NOFILE, &zero, 0) == 0;
    limits_ok &= sys(SYS_setrlimit, RLIMIT_FSIZE, &zero, 0) == 0;
    limits_ok &= sys(SYS_setrlimit, RLIMIT_NPROC, &zero, 0) == 0;
    limits_ok &= sys(SYS_setrlimit, RLIMIT_CPU, &cpu, 0) == 0;
    limits_ok &= sys(SYS_setrlimit, RLIMIT_AS, &as, 0) == 0;
    if (limits_ok) applied |= LOADER_RLIMITS;
    return applied;
}

/* The code page ranges: at most the runtime and INSTAR_MAX_MODULES modules, one range each (the
 * host merges adjacent code segments of an image). */
#define MAX_CODE_RANGES (INSTAR_MAX_MODULES + 1)
struct code_range {
    uint64_t start, end;
};

/* Parses "start-end,start-end,..." (hex) into r; returns the count, 0 on any error. */
static size_t parse_ranges(const char* s, struct code_range* r) {
    char field[20];
    size_t n = 0;
    if (s == NULL) return 0;
    for (;;) {
        if (n == MAX_CODE_RANGES) return 0;
        for (int half = 0; half < 2; ++half) {
            size_t len = 0;
            while (*s != '\0' && *s != '-' && *s != ',') {
                if (len + 1 >= sizeof field) return 0;
                field[len++] = *s++;
            }
            field[len] = '\0';
            if (!parse(field, 16, half == 0 ? &r[n].start : &r[n].end)) return 0;
            if (half == 0 && *s++ != '-') return 0;
        }
        ++n;
        if (*s == '\0') return n;
        if (*s++ != ',') return 0;
    }
}

extern "C" void loader_main(long* sp) {
    const long argc = sp[0];
    char** argv = (char**)(sp + 1);
    uint64_t ram = 0, entry = 0, cpu = 0, arena = 0;
    struct code_range code[MAX_CODE_RANGES];
    size_t code_count = 0;
    if (argc != 6 || !parse(argv[1], 16, &ram) || !parse(argv[2], 16, &entry) || !parse(argv[3], 10, &cpu) ||
        !parse(argv[4], 16, &arena) || (code_count = parse_ranges(argv[5], code)) == 0) {
        die(120);
    }
    if (ram < INSTAR_MIN_GUEST_MEMORY || ram > INSTAR_MAX_GUEST_MEMORY || entry < INSTAR_GPA_RUNTIME || entry >= arena ||
        arena < INSTAR_GPA_MODULES || arena > ram || arena % INSTAR_PAGE_SIZE != 0) {
        die(120);
    }
    int entry_is_code = 0;
    for (size_t i = 0; i < code_count; ++i) {
        if (code[i].start >= code[i].end || code[i].start < INSTAR_GPA_RUNTIME || code[i].end > arena ||
            code[i].start % INSTAR_PAGE_SIZE != 0 || code[i].end % INSTAR_PAGE_SIZE != 0) {
            die(120);
        }
        entry_is_code |= entry >= code[i].start && entry < code[i].end;
    }
    if (!entry_is_code) die(120);

    /* Guest memory at the guest addresses, with the stack guard left out, read-write. Then W^X: the
     * pages of the runtime and modules that hold code become read+execute (the host wrote them,
     * relocations included, before this process started); nothing else is executable, so bytes
     * the guest writes (arena, stack, data) never run, and code cannot be rewritten. */
    const long rw = PROT_READ | PROT_WRITE, rx = PROT_READ | PROT_EXEC;
    const long flags = MAP_SHARED | MAP_FIXED_NOREPLACE;
    const uint64_t guard = INSTAR_PROC_STACK_GUARD;
    const struct {
        uint64_t start, end;
        long prot;
    } maps[] = {{INSTAR_PROC_MAP_BASE, guard, rw},
                {guard + INSTAR_PAGE_SIZE, INSTAR_GPA_RUNTIME, rw},
                {INSTAR_GPA_RUNTIME, ram, rw}};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; ++i) {
        if (maps[i].end == maps[i].start) continue;
        const long at = (long)maps[i].start;
        if (sys6(SYS_mmap, at, (long)(maps[i].end - maps[i].start), maps[i].prot, flags, LOADER_MEMFD_FD, at) != at) die(121);
    }
    for (size_t i = 0; i < code_count; ++i) {
        if (sys(SYS_mprotect, code[i].start, code[i].end - code[i].start, rx) != 0) die(121);
    }

    const uint32_t applied = confine(cpu, ram);
    if (sys(SYS_arch_prctl, ARCH_SET_FS, INSTAR_PROC_TLS, 0) != 0) die(122);

    stack_t ss = {alt_stack, 0, sizeof alt_stack};
    if (sys(SYS_sigaltstack, &ss, 0, 0) != 0) die(122);
    struct kernel_sigaction sa = {on_fault, SA_SIGINFO | SA_ONSTACK | SA_RESTORER | SA_NODEFER, loader_restore, 0};
    const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; ++i) {
        if (sys6(SYS_rt_sigaction, faults[i], (long)&sa, 0, 8, 0, 0) != 0) die(122);
    }

    if (sys(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0) != 0) die(123);
    const struct loader_hello hello = {LOADER_HELLO_MAGIC, applied | LOADER_SECCOMP_STRICT};
    if (sys(SYS_write, INSTAR_PROC_CHANNEL_FD, &hello, sizeof hello) != (long)sizeof hello) die(123);

    /* Enter the runtime as the KVM vCPU does: rsp = stack top, rdi = boot info, nothing else. */
    register uint64_t target __asm__("r11") = entry;
    __asm__ volatile("mov %0, %%rsp\n"
                     "push %%r11\n" /* popped by ret below: rsp is the stack top again */
                     "xor %%eax, %%eax\n xor %%ebx, %%ebx\n xor %%ecx, %%ecx\n xor %%edx, %%edx\n"
                     "xor %%esi, %%esi\n xor %%ebp, %%ebp\n xor %%r8d, %%r8d\n xor %%r9d, %%r9d\n"
                     "xor %%r10d, %%r10d\n xor %%r11d, %%r11d\n xor %%r12d, %%r12d\n xor %%r13d, %%r13d\n"
                     "xor %%r14d, %%r14d\n xor %%r15d, %%r15d\n"
                     "ret\n"
                     :
                     : "i"(INSTAR_GPA_STACK_TOP), "D"(INSTAR_PROC_BOOT_INFO), "r"(target)
                     : "memory");
    __builtin_unreachable();
}

__asm__(".text\n .globl _start\n _start:\n mov %rsp, %rdi\n and $-16, %rsp\n call loader_main\n hlt\n");
