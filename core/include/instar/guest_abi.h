/* The sandbox ABI shared by the host VMM and the guest runtime: memory map, hypercalls, records.
 *
 * Plain C so that any guest toolchain can use it. Every layout is pinned by a static assertion;
 * any change to a layout or meaning bumps INSTAR_GUEST_ABI_VERSION. Documented in docs/guest-abi.md.
 */
#ifndef INSTAR_GUEST_ABI_H
#define INSTAR_GUEST_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define INSTAR_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define INSTAR_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define INSTAR_GUEST_ABI_VERSION 10u

/* ---- Guest physical memory map (identity-mapped: guest virtual == guest physical) ---- */
#define INSTAR_PAGE_SIZE 0x1000ull
#define INSTAR_GPA_GDT 0x1000ull        /* null, kernel code/data, user code/data, 16-byte TSS */
#define INSTAR_GPA_PML4 0x2000ull
#define INSTAR_GPA_PDPT 0x3000ull
#define INSTAR_GPA_PD 0x4000ull         /* INSTAR_PD_PAGES page directories of 2 MiB pages */
#define INSTAR_PD_PAGES 4ull            /* 4 x 1 GiB: room for the largest allowed RAM */
#define INSTAR_GPA_PT_LOW 0x8000ull     /* 4 KiB pages for the first 2 MiB (guard pages) */
#define INSTAR_GPA_MAILBOX 0x9000ull    /* struct instar_hypercall */
#define INSTAR_GPA_BOOT_INFO 0xA000ull  /* struct instar_boot_info, written by the host */
#define INSTAR_GPA_TLS 0xB000ull        /* FS base: the stack-protector canary lives at fs:0x28 */
#define INSTAR_TLS_CANARY_OFFSET 0x28ull
#define INSTAR_GPA_IDT 0xC000ull        /* 32 exception gates, written by the host */
#define INSTAR_GPA_TSS 0xD000ull        /* 64-bit TSS: RSP0 = the exception stack */
#define INSTAR_GPA_EXCEPTION_STACK_TOP 0xF000ull /* exceptions run on [0xE000, 0xF000) */
#define INSTAR_GPA_STACK_GUARD 0xF000ull /* not present: a stack overflow faults */
#define INSTAR_GPA_STACK_BOTTOM 0x10000ull
#define INSTAR_GPA_STACK_TOP 0x100000ull /* 960 KiB of stack, grows down */
/* The runtime is linked to run here: past the first 2 MiB, which the page tables map with 4 KiB
 * pages (the null and stack-guard holes), so that the runtime and the modules share one 2 MiB
 * page, which the host backs with a huge page (one shadow-MMU fault instead of one per page
 * touched under kvm-pvm: docs/guest-abi.md, round 42). */
#define INSTAR_GPA_RUNTIME 0x200000ull
#define INSTAR_RUNTIME_MAX_SIZE 0x100000ull /* 1 MiB: runtime + zlib need ~150 KiB */
#define INSTAR_GPA_MODULES 0x300000ull   /* modules are loaded page-aligned from here; arena follows */
/* Page 0 (null) and INSTAR_GPA_STACK_GUARD are not present in the guest page tables, and nothing
 * past the end of RAM is mapped, so wild pointers raise #PF inside the guest.
 *
 * The guest runs at CPL 3 from its first instruction; only the exception stubs run at CPL 0,
 * entered through the host-written IDT and TSS. Under software
 * virtualization (e.g. kvm-pvm) supervisor code is emulated instruction by instruction while user
 * code runs natively, so keeping everything but the stubs in user mode is what makes SSE code
 * (zlib) run at all, and fast. */

/* ---- The process sandbox (docs/sandbox.md, "The process sandbox"): without /dev/kvm the same
 * runtime sources (built with INSTAR_GUEST_PROCESS) and modules run in a confined process. Guest
 * memory is one memfd laid out exactly as above, mapped at the same addresses from
 * INSTAR_GPA_STACK_BOTTOM up; the pages below that (64 KiB is Linux's default vm.mmap_min_addr)
 * are not mapped, so the mailbox, boot info and TLS move to the bottom of the stack region.
 * A hypercall is the 88-byte struct instar_hypercall written to INSTAR_PROC_CHANNEL_FD (a
 * SOCK_SEQPACKET socket), answered by the host with the same 88 bytes (ret, out_* filled in). ---- */
#define INSTAR_PROC_MAILBOX 0x10000ull     /* struct instar_hypercall (the guest's copy) */
#define INSTAR_PROC_BOOT_INFO 0x11000ull   /* struct instar_boot_info */
#define INSTAR_PROC_TLS 0x12000ull         /* FS base; the canary at INSTAR_TLS_CANARY_OFFSET */
#define INSTAR_PROC_STACK_GUARD 0x13000ull /* not mapped: a stack overflow faults */
#define INSTAR_PROC_STACK_BOTTOM 0x14000ull /* the stack: [0x14000, INSTAR_GPA_STACK_TOP) */
#define INSTAR_PROC_MAP_BASE INSTAR_GPA_STACK_BOTTOM /* lowest guest address mapped in the process */
#define INSTAR_PROC_CHANNEL_FD 3           /* the only descriptor the guest process holds */
/* The answer handshake (docs/sandbox.md, "Answers without a wake-up"): two words in the mailbox
 * page. The host writes INSTAR_PROC_SPIN (a budget of pause iterations, 0: do not spin) before the guest
 * starts. The guest stores INSTAR_PROC_TURN_POSTED in INSTAR_PROC_TURN before it writes a call,
 * spins while the word stays POSTED (at most the budget), and only then swaps POSTED for SLEEPING
 * (compare-and-exchange) and blocks in read(). The host, having placed the answer in
 * INSTAR_PROC_MAILBOX, exchanges the word for ANSWERED and sends the answer on the channel unless
 * the old value was POSTED (the guest is still spinning and sees ANSWERED). So exactly one of the
 * two ways delivers each answer, and a guest that never stores POSTED gets every answer as a
 * message, as before. Either side may skip its spin for a call (spin_backoff.h: spins that keep
 * missing back off); the handshake does not depend on it. A call the host knows will wait for its
 * other threads (the write-behind queue, the compress workers) makes it swap POSTED for WORKING
 * before it serves the call: the guest stops spinning and swaps WORKING for SLEEPING as it would
 * POSTED, and the host sends the answer only where the old value was SLEEPING (ABI 6). */
#define INSTAR_PROC_TURN 0x10800ull        /* uint32_t, shared by guest and host */
#define INSTAR_PROC_SPIN 0x10808ull        /* uint64_t pause iterations; written by the host only */
#define INSTAR_PROC_TURN_POSTED 1u         /* guest: a call is on its way; it spins for the answer */
#define INSTAR_PROC_TURN_SLEEPING 2u       /* guest: blocked in read(): send the answer */
#define INSTAR_PROC_TURN_ANSWERED 3u       /* host: the answer is in INSTAR_PROC_MAILBOX */
#define INSTAR_PROC_TURN_WORKING 4u        /* host: the answer will take a while: sleep for it */

/* The runtime image starts with this header (at INSTAR_GPA_RUNTIME) so the host can build the IDT. */
#define INSTAR_RUNTIME_MAGIC 0x4E555254u /* "TRUN" */
#define INSTAR_EXCEPTION_VECTORS 32u     /* the architectural exceptions; no IRQs are ever enabled */

struct instar_runtime_header {
    uint32_t magic;       /* INSTAR_RUNTIME_MAGIC */
    uint32_t abi_version; /* INSTAR_GUEST_ABI_VERSION */
    uint64_t entry;       /* CPL-3 entry: rdi = boot info, rsp = INSTAR_GPA_STACK_TOP */
    uint64_t exception_handlers[INSTAR_EXCEPTION_VECTORS]; /* CPL-0 stubs, one per vector */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_runtime_header) == 272, "runtime header layout");

/* Guest RAM bounds. RAM is a multiple of 2 MiB (one large page). */
#define INSTAR_LARGE_PAGE_SIZE 0x200000ull
#define INSTAR_MIN_GUEST_MEMORY (16ull << 20) /* runtime + modules + a useful arena */
#define INSTAR_MAX_GUEST_MEMORY (3ull << 30)  /* stays below KVM's TSS pages at 3.99 GiB */
#define INSTAR_DEFAULT_GUEST_MEMORY (256ull << 20)

/* ---- Hypercalls: fill the mailbox, then one 32-bit store of the call number to the doorbell.
 * The doorbell is a guest-physical page outside RAM, mapped in the page tables but backed by no
 * memory, so the store exits to the host (KVM_EXIT_MMIO). A store works at CPL 3, where port
 * I/O and software interrupts do not under software virtualization (kvm-pvm). ---- */
#define INSTAR_GPA_DOORBELL 0xE0000000ull /* 3.5 GiB: above the largest RAM, below KVM's pages */

enum instar_hypercall_nr {
    INSTAR_HC_READ = 1,        /* device, offset, gpa, len: device bytes -> guest RAM */
    INSTAR_HC_WRITE = 2,       /* device, offset, gpa, len, arg0 = flags (INSTAR_WRITE_*): guest RAM -> writable device */
    INSTAR_HC_FLUSH = 3,       /* device: make written data durable */
    INSTAR_HC_DEVICE_INFO = 4, /* device -> out_size, out_flags */
    INSTAR_HC_RECORD = 5,      /* arg0 = record type, gpa, len: one result record */
    INSTAR_HC_LOG = 6,         /* gpa, len: one log line (at most INSTAR_MAX_LOG_LINE bytes) */
    INSTAR_HC_EXIT = 7,        /* arg0 = exit status (an instar::guest::Status value) */
    INSTAR_HC_FAULT = 8,       /* arg0 = vector, arg1 = rip, arg2 = error code, arg3 = cr2 */
    INSTAR_HC_SET_LENGTH = 9,  /* device, arg0 = length, arg1 = enum instar_fill: size an output */
    INSTAR_HC_ADD_FILE = 10,   /* gpa, len = plain file name: a new output file -> ret = device */
    INSTAR_HC_ALLOCATION = 11, /* device, offset -> out_flags (1 data, 0 hole), out_size = run length */
    INSTAR_HC_PROGRESS = 12,   /* arg0 = work done, arg1 = total: the host's progress display */
    INSTAR_HC_DISCARD = 13,    /* device, offset, len: reads as zeros afterwards (punched or zeroed) */
    INSTAR_HC_COMPRESS = 14,   /* arg0 = enum instar_compress_kind, gpa = job table, len = job
                                  count: the jobs' opaque bytes compressed on host threads (added
                                  within ABI 3: runtime and host ship together; docs/guest-abi.md) */
    INSTAR_HC_SETTLE_READS = 15, /* -> ret: 0, or the first error of the read-ahead reads
                                    (INSTAR_READ_AHEAD) answered since the last settle; every one
                                    of them is complete when this returns (added within ABI 3) */
    INSTAR_HC_WRITE_SEGMENTS = 16, /* device, gpa = table of len struct instar_write_segment: each
                                      segment's bytes written in table order, as that many WRITEs
                                      would (added within ABI 5; docs/guest-abi.md) */
    INSTAR_HC_DISCARD_RANGES = 17, /* device, gpa = table of len struct instar_range: each range
                                      discarded in table order, as that many DISCARDs would (added
                                      within ABI 5; docs/guest-abi.md) */
    INSTAR_HC_NEXT_IMAGE = 18, /* arg0 = image: in an INSTAR_OP_INFO_FIRST run with
                                  INSTAR_INFO_FIRST_CHAINS, the backing file named by that image's
                                  last inspection -> ret = its device (read-only), out_flags = its
                                  module index | INSTAR_NEXT_IMAGE_*, out_size = its file's allocated
                                  bytes (st_blocks * 512); ret < 0: not opened in this run
                                  (added within ABI 5; docs/guest-abi.md) */
    INSTAR_HC_GROW_MEMORY = 19, /* arg0 = the RAM size the guest needs -> ret 0 and out_size = the
                                   RAM size now, at least arg0, the new RAM following the old
                                   (its page tables map it from the boot on); ret < 0: no more RAM
                                   for this run (ABI 10; docs/guest-abi.md) */
    INSTAR_HC_RECORDS = 20, /* gpa = table of len struct instar_record_entry (1 to
                               INSTAR_MAX_RECORD_BATCH): each a RECORD, in table order, under the same
                               limits (ABI 10, round 42; docs/guest-abi.md) */
};
/* INSTAR_HC_RECORDS: one record, as INSTAR_HC_RECORD's arg0 (type), gpa and len. */
struct instar_record_entry {
    uint32_t type;
    uint32_t len;
    uint64_t gpa;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_record_entry) == 16, "record entry layout");
/* Records one INSTAR_HC_RECORDS call carries at most: bounds the table the host copies out (256 bytes
 * on its stack). */
#define INSTAR_MAX_RECORD_BATCH 16u

/* INSTAR_HC_NEXT_IMAGE's out_flags above the module index (bits 0-15). */
#define INSTAR_NEXT_IMAGE_MODULE_MASK 0xFFFFu
#define INSTAR_NEXT_IMAGE_FORCE (1u << 16)  /* inspect without probing (the chain names the format) */
#define INSTAR_NEXT_IMAGE_NO_KEY (1u << 17) /* INSTAR_INFO_NO_KEY for its inspection */

/* INSTAR_HC_COMPRESS: what each job's bytes become. The host never interprets them. */
enum instar_compress_kind {
    INSTAR_COMPRESS_QCOW2_ZLIB = 1, /* raw deflate, level 6, inflatable in one call with window 12
                                       (qcow2; libdeflate, or zlib as qemu: window 12, memLevel 9) */
    INSTAR_COMPRESS_QCOW2_ZSTD = 2, /* one zstd frame, ZSTD_compressStream2 defaults (qcow2) */
    INSTAR_COMPRESS_ZLIB = 3,       /* zlib stream, level 6 (vmdk; libdeflate, or zlib's compress()) */
};

/* One job: [src_gpa, +src_len) -> [dst_gpa, +dst_cap); the host fills out_len and status. */
struct instar_compress_job {
    uint64_t src_gpa;
    uint64_t src_len;
    uint64_t dst_gpa;
    uint64_t dst_cap;
    uint64_t out_len; /* host: bytes written at dst_gpa when status is 0 */
    int64_t status;   /* host: 0 done, -INSTAR_ENOSPC the result does not fit in dst_cap, -INSTAR_EIO */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_compress_job) == 48, "compress job layout");
#define INSTAR_MAX_COMPRESS_JOBS 256u            /* one batch: 256 clusters is plenty for every core */
#define INSTAR_MAX_COMPRESS_BYTES (2u << 20)     /* one job's input: qcow2's largest cluster */
#define INSTAR_MAX_COMPRESS_BATCH_BYTES (64u << 20) /* one batch's input: bounds the time of one exit */

/* How INSTAR_HC_SET_LENGTH provides the bytes past the old end (instar::guest::Prealloc). */
enum instar_fill {
    INSTAR_FILL_HOLE = 0,   /* ftruncate: sparse */
    INSTAR_FILL_FALLOC = 2, /* fallocate: reserved, reads as zero */
    INSTAR_FILL_ZEROS = 3,  /* zeros written by the host */
};

#define INSTAR_DEVICE_WRITABLE 1u /* out_flags bit */
#define INSTAR_DEVICE_OUTPUT 2u   /* out_flags bit: a file being created; writes may extend it */
#define INSTAR_ALLOCATION_DATA 1u /* INSTAR_HC_ALLOCATION out_flags: the run holds data, else a hole */
/* INSTAR_HC_ALLOCATION's arg0 (added within ABI 5: an older guest never sets it, and a host that
 * ignores it answers ret 0). RUNS: [gpa, gpa + len) holds len / 16 struct instar_allocation_run;
 * for a read-only device the host fills them with the runs from `offset` on, each starting where
 * the one before ends, at most INSTAR_MAX_ALLOCATION_RUNS, stopping at the file's end, and returns
 * how many in ret (it may write none: ret 0). out_flags/out_size describe the first run either way.
 * One exit then answers a walk's next status queries on a raw file (an exit costs ~50 us under
 * nested KVM, a SEEK_DATA/SEEK_HOLE pair ~2 us). Other bits: 0. */
#define INSTAR_ALLOCATION_RUNS 1ull
struct instar_allocation_run {
    uint64_t length; /* > 0 */
    uint64_t flags;  /* INSTAR_ALLOCATION_DATA or 0 */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_allocation_run) == 16, "allocation run layout");
/* Runs one ALLOCATION call answers at most: bounds the host's work per call (two lseeks a run). */
#define INSTAR_MAX_ALLOCATION_RUNS 256u

/* INSTAR_HC_WRITE_SEGMENTS: one segment, [gpa, gpa + len) -> the device at offset. The host copies
 * the table out and checks every segment (inside the device, inside guest RAM) before it writes any,
 * then writes them in table order, so a later segment overlapping an earlier one wins, as with
 * separate WRITEs. It settles queued write-behind first and is never deferred itself. Why: a
 * convert to a raw target writes each data run of a fragmented source alone (the holes between
 * them stay holes, so the runs cannot be joined into one WRITE), and an exit costs ~50 us under
 * nested KVM; the runtime gathers such writes (devices.cpp) and sends them in one exit. */
struct instar_write_segment {
    uint64_t offset; /* byte offset on the device */
    uint64_t gpa;    /* guest buffer address */
    uint64_t len;    /* byte count */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_write_segment) == 24, "write segment layout");
/* Segments one INSTAR_HC_WRITE_SEGMENTS call carries at most: bounds the table the host copies out
 * (1.5 KiB on its stack) and the writes it makes in one exit. 64 covers a 2 MiB gather buffer of
 * 32 KiB runs; shorter runs cost one more exit per 64. */
#define INSTAR_MAX_WRITE_SEGMENTS 64u

/* INSTAR_HC_DISCARD_RANGES: one range of the device, made to read as zeros as INSTAR_HC_DISCARD makes
 * it. The host copies the table out and checks every range (inside the device) before it discards
 * any, then discards them in table order. Why: qemu's repair frees each leaked cluster with its own
 * discard (check -r leaks of 10000 leaked clusters: 10000 exits, ~0.4 s under nested KVM); the
 * runtime gathers a run's discards (devices.cpp) and sends them in one exit. */
struct instar_range {
    uint64_t offset; /* byte offset on the device */
    uint64_t len;    /* byte count */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_range) == 16, "range layout");
/* Ranges one INSTAR_HC_DISCARD_RANGES call carries at most: bounds the table the host copies out
 * (4 KiB on its stack) and the fallocate calls it makes in one exit. */
#define INSTAR_MAX_DISCARD_RANGES 256u

struct instar_hypercall {
    uint32_t nr;     /* enum instar_hypercall_nr */
    uint32_t device; /* device index */
    uint64_t offset; /* byte offset on the device */
    uint64_t gpa;    /* guest buffer address */
    uint64_t len;    /* byte count */
    uint64_t arg0;
    uint64_t arg1;
    uint64_t arg2;
    uint64_t arg3;
    int64_t ret;        /* host: 0 on success, negative INSTAR_E* otherwise */
    uint64_t out_size;  /* host: DEVICE_INFO size */
    uint64_t out_flags; /* host: DEVICE_INFO flags */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_hypercall) == 88, "mailbox layout");
INSTAR_ABI_ASSERT(offsetof(struct instar_hypercall, gpa) == 16, "mailbox layout");
INSTAR_ABI_ASSERT(offsetof(struct instar_hypercall, arg0) == 32, "mailbox layout");

/* INSTAR_HC_WRITE's arg0. DEFERRABLE: the guest leaves [gpa, gpa + len) unchanged until a later call
 * that settles (a zero-length WRITE, FLUSH, SET_LENGTH, ADD_FILE, ALLOCATION, DISCARD, EXIT) or a
 * later WRITE the host answers DEFERRED has returned, so a host with a writer thread (write-behind)
 * may answer at once and write the bytes while the guest reads on. A host may always write at once
 * instead; it waits for an earlier deferred write before it defers the next, so the promise covers
 * only the last one. Other WRITEs and READs do not settle (since ABI 5): the host may queue a small
 * write behind the deferred one, in order, and answer a READ that no queued write can change,
 * without waiting for it. A zero-length WRITE to a writable device settles and does nothing else.
 * Other bits: 0. */
#define INSTAR_WRITE_DEFERRABLE 1ull
/* INSTAR_HC_WRITE's out_flags: DEFERRED, the host took a deferrable write to finish it later (a host
 * without write-behind writes at once and leaves out_flags 0, so the guest need not fence). */
#define INSTAR_WRITE_DEFERRED 1ull
/* INSTAR_HC_READ's arg0. AHEAD: the guest leaves [gpa, gpa + len) alone until INSTAR_HC_SETTLE_READS
 * has returned, so a host that can (the process sandbox, whose serving thread is not the guest's
 * CPU, or the KVM sandbox's reader thread) may answer once the request is checked and read the
 * bytes afterwards, while the guest works on. A host may always read at once instead. Reads of a writable device are never deferred.
 * Other bits: 0. */
#define INSTAR_READ_AHEAD 1ull
/* INSTAR_HC_READ's out_flags: PENDING, the host answered an AHEAD read before reading it (its
 * result comes with the next INSTAR_HC_SETTLE_READS; without PENDING the read is done). */
#define INSTAR_READ_PENDING 1ull
INSTAR_ABI_ASSERT(offsetof(struct instar_hypercall, ret) == 64, "mailbox layout");
INSTAR_ABI_ASSERT(offsetof(struct instar_hypercall, out_flags) == 80, "mailbox layout");

/* Recoverable errors the host returns in `ret` (requests that break the rules end the guest). */
#define INSTAR_EIO 5 /* the host file failed (e.g. it shrank under us) */
#define INSTAR_ENOSPC 28 /* INSTAR_HC_COMPRESS: the result does not fit in the job's dst_cap */
#define INSTAR_ENOMEM 12 /* INSTAR_HC_GROW_MEMORY: the run's RAM cannot grow that far */

/* ---- Limits the host enforces on what the guest sends ---- */
#define INSTAR_MAX_LOG_LINE 512u            /* one line of diagnostics, not a data channel */
#define INSTAR_MAX_LOG_LINES 256u           /* later lines are dropped (counted) */
#define INSTAR_MAX_RECORD_SIZE (64u << 10)  /* the largest record type is far smaller */
#define INSTAR_MAX_RECORDS 65536u           /* e.g. one map extent each for a fragmented image */
#define INSTAR_MAX_RECORD_BYTES (16u << 20) /* bounds host memory spent on one guest's output */
#define INSTAR_MAX_ADDED_FILES 32768u       /* vmdk twoGbMaxExtent* at vmdk's 64 TiB limit: 2 GiB each */
#define INSTAR_MAX_OUTPUT_SIZE (1ull << 57) /* qcow2 host offsets have 56 bits: no format's file is larger */

/* ---- Boot information the host writes at INSTAR_GPA_BOOT_INFO before the first instruction ---- */
#define INSTAR_BOOT_MAGIC 0x52415453u /* "STAR" */
#define INSTAR_MAX_MODULES 8u         /* an overlay over a base needs 2; room to spare */
/* Devices of one guest: an image with every file it names (a vmdk that instar or qemu creates at
 * vmdk's 64 TiB limit has INSTAR_MAX_ADDED_FILES 2 GiB extents), plus room for a backing file and
 * outputs. The guest keeps its device table in the arena, so the bound costs nothing when unused. */
#define INSTAR_MAX_DEVICES (INSTAR_MAX_ADDED_FILES + 16u)
#define INSTAR_MAX_OP_ARG 2048u       /* operation arguments are small; data comes via devices */
/* The first devices are described in the boot info, as INSTAR_HC_DEVICE_INFO would answer, so a
 * run does not exit to ask (one exit per device, each ~0.1 ms under nested KVM); later ones (a
 * vmdk's many extents) are asked for. 64 x 16 bytes keeps the boot info in its page. */
#define INSTAR_BOOT_DEVICES 64u

struct instar_module_slot {
    uint64_t base;  /* load address */
    uint64_t size;  /* bytes occupied (page-aligned) */
    uint64_t entry; /* address of instar_module_entry */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_module_slot) == 24, "module slot layout");

struct instar_boot_info {
    uint32_t magic;       /* INSTAR_BOOT_MAGIC */
    uint32_t abi_version; /* INSTAR_GUEST_ABI_VERSION */
    uint64_t ram_size;
    uint64_t arena_base; /* the allocator's memory: from after the modules to the end of RAM */
    uint64_t arena_size;
    uint32_t device_count;
    uint32_t module_count;
    struct instar_module_slot modules[INSTAR_MAX_MODULES];
    uint32_t op;      /* enum instar_op */
    uint32_t arg_len; /* bytes used in arg */
    uint8_t arg[INSTAR_MAX_OP_ARG];
    /* Devices 0 .. min(device_count, INSTAR_BOOT_DEVICES) - 1: out_size and out_flags of
     * INSTAR_HC_DEVICE_INFO for each; entries past device_count are zero. */
    struct instar_boot_device {
        uint64_t size;
        uint64_t flags; /* INSTAR_DEVICE_* */
    } devices[INSTAR_BOOT_DEVICES];
};
INSTAR_ABI_ASSERT(offsetof(struct instar_boot_info, modules) == 40, "boot info layout");
INSTAR_ABI_ASSERT(offsetof(struct instar_boot_info, op) == 232, "boot info layout");
INSTAR_ABI_ASSERT(offsetof(struct instar_boot_info, devices) == 2288, "boot info layout");
INSTAR_ABI_ASSERT(sizeof(struct instar_boot_info) == 2288 + 16 * INSTAR_BOOT_DEVICES, "boot info layout");
INSTAR_ABI_ASSERT(sizeof(struct instar_boot_info) <= INSTAR_PAGE_SIZE, "boot info fits its page");

/* ---- Operations the runtime dispatches on ---- */
enum instar_op {
    INSTAR_OP_NOP = 0,        /* exit 0 at once: boot latency */
    INSTAR_OP_SELFTEST = 1,   /* struct instar_selftest_arg -> one INSTAR_REC_SELFTEST */
    INSTAR_OP_MODULE_RUN = 2, /* call module 0's run(arg): module-defined behaviour */
    INSTAR_OP_READ_BENCH = 3, /* struct instar_read_bench_arg: read a device range, no record */
    INSTAR_OP_INFO = 4,       /* struct instar_info_arg -> INSTAR_REC_INFO records (info_sink.h) */
    INSTAR_OP_CREATE = 5,     /* struct instar_create_arg + strings -> INSTAR_REC_CREATE (create_api.h) */
    INSTAR_OP_CONVERT = 6,    /* struct instar_convert_arg: the plan is a device (docs/convert.md) */
    INSTAR_OP_CHECK = 7,      /* struct instar_check_arg -> INSTAR_REC_CHECK records (docs/check.md) */
    INSTAR_OP_COMPARE = 9,    /* struct instar_compare_arg: the plan is a device (docs/compare.md) */
    INSTAR_OP_MAP = 8,        /* struct instar_map_arg: the plan is a device -> INSTAR_REC_MAP (docs/map.md) */
    INSTAR_OP_MEASURE = 10,   /* struct instar_measure_arg: the plan is a device (docs/measure.md) */
    INSTAR_OP_EDIT = 11,      /* struct instar_edit_arg + command bytes: an in-place change (docs/edit.md) */
    INSTAR_OP_REBASE = 12,    /* struct instar_rebase_arg: the plan is a device (docs/rebase.md) */
    INSTAR_OP_COMMIT = 13,    /* struct instar_commit_arg: the plan is a device (docs/commit.md) */
    /* 14 is reserved for dd's data path (dd uses convert's plan today). */
    INSTAR_OP_INFO_FIRST = 15, /* struct instar_info_first_arg + the operation's argument (below) */
};

/* INSTAR_OP_INFO_FIRST: one sandbox start instead of several for a read-only command on images that
 * stand alone (docs/architecture.md). Image i is device i (i < image_count). The guest inspects each
 * with module modules[i] as INSTAR_OP_INFO would (probing it, unless bit i of flags says the user
 * named the format), sending the same INSTAR_REC_INFO records and then one empty INSTAR_REC_INFO_END;
 * a failed inspection ends the run with its status. Only when every image names no other file, is
 * not encrypted and has a virtual size of at most max_virtual_size (the size the host's wall-clock
 * budget was computed for) does it send one empty INSTAR_REC_STARTED and run `op` with the bytes
 * after this struct as its argument; the exit status is then op's. Without INSTAR_REC_STARTED the
 * exit status is the inspections' (Ok: they succeeded, and the host reuses the info it was sent).
 * `op` is INSTAR_OP_CHECK of one image (without INSTAR_CHECK_FIX_*: nothing is written), INSTAR_OP_MAP
 * of one (a plan of the image alone with INSTAR_MAP_PLAN_CLUSTER_FROM_INFO), INSTAR_OP_MEASURE of
 * one (a plan of the image alone with INSTAR_MEASURE_PLAN_FROM_INFO) or INSTAR_OP_COMPARE of two (a
 * plan of the two alone with INSTAR_COMPARE_CLUSTER_FROM_INFO); since round 28 also INSTAR_OP_CONVERT
 * of one source into a new image (a plan of the source alone with INSTAR_CONVERT_PLAN_FROM_INFO), the
 * one operation that writes: only its new target, an output device the host gave. */
#define INSTAR_INFO_FIRST_MAX_IMAGES 2u
#define INSTAR_INFO_FIRST_NO_KEY_SHIFT 8u
/* flags: the operation may run over backing chains (INSTAR_OP_CHECK, whose check reads the image alone
 * but which opens the chain as qemu does; INSTAR_OP_INFO; INSTAR_OP_MAP and INSTAR_OP_COMPARE with
 * their plans' *_CHAIN_FROM_INFO; INSTAR_OP_CONVERT). An image whose only reference is a backing file
 * is not refused for it: the guest asks for that file (INSTAR_HC_NEXT_IMAGE) and inspects it as the
 * next image of the chain (its INSTAR_REC_INFO records and INSTAR_REC_INFO_END after the ones
 * before), until an image names no other file; it goes on only when every chain ends so. */
#define INSTAR_INFO_FIRST_CHAINS (1u << 16)
struct instar_info_first_arg {
    uint32_t op;               /* the operation to run when the images stand alone */
    uint32_t flags;            /* bit i: image i's format was named (no probe); bit
                                  INSTAR_INFO_FIRST_NO_KEY_SHIFT + i: image i has no key-secret
                                  (INSTAR_INFO_NO_KEY for its inspection) */
    uint32_t qemu_version;     /* the profile, for the inspections */
    uint32_t image_count;      /* 1..INSTAR_INFO_FIRST_MAX_IMAGES */
    uint32_t modules[INSTAR_INFO_FIRST_MAX_IMAGES]; /* image i's module index */
    uint32_t reserved;         /* 0 */
    uint32_t reserved2;        /* 0 */
    uint64_t max_virtual_size; /* a larger image takes the host's ordinary path */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_info_first_arg) == 40, "info-first arg layout");

/* INSTAR_OP_INFO: device 0 is the image, devices 1..file_count the files it referenced in an earlier
 * run (in reference order). Modules 0..module_count-1 are tried in order: the first whose probe
 * matches reports; the exit status is its info() Status (NeedFiles: run again with the files).
 * With INSTAR_INFO_FORCE, module 0 reports without probing (the user named the format). When no
 * module matches, modules with detect_other() may name an unsupported format in the reason. */
#define INSTAR_INFO_FORCE 1u
/* The command opens the image for I/O and no key-secret was given for it: passed to the module as
 * InfoRequest::flags INFO_REQUEST_NO_KEY (a luks image's info then refuses, as qemu's open does,
 * before it reads the header). */
#define INSTAR_INFO_NO_KEY 2u
struct instar_info_arg {
    uint32_t module_count;
    uint32_t file_count;
    uint32_t flags;        /* INSTAR_INFO_* */
    uint32_t qemu_version; /* the profile, major*10000 + minor*100 + micro */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_info_arg) == 16, "info arg layout");

/* INSTAR_OP_CREATE: device 0 is the new image (an output), device 1 the backing file (read-only)
 * when INSTAR_CREATE_BACKING_DEVICE is set; files the module adds get the next indices. Module 0
 * creates. The header is followed by strings_len bytes of NUL-terminated strings: the file name,
 * the backing file name, the backing format (both may be empty), then option_count key/value pairs. */
#define INSTAR_CREATE_BACKING_DEVICE 1u
#define INSTAR_CREATE_HAS_BACKING 2u     /* a backing file name was given (it may be empty text) */
#define INSTAR_CREATE_HAS_BACKING_FMT 4u
/* An external data file (qcow2 data_file), made by the host, is the device after the backing file
 * (or after the image without one); the module writes it and sets its length. */
#define INSTAR_CREATE_DATA_FILE_DEVICE 8u
struct instar_create_arg {
    uint64_t size;
    uint64_t backing_size;
    int64_t unix_time;
    uint32_t qemu_version;
    uint32_t flags;        /* INSTAR_CREATE_* */
    uint32_t option_count;
    uint32_t strings_len;
    uint8_t random[32];
};
INSTAR_ABI_ASSERT(sizeof(struct instar_create_arg) == 72, "create arg layout");

/* INSTAR_OP_CONVERT: the argument names a read-only device holding the plan the host wrote (chains
 * can be longer than INSTAR_MAX_OP_ARG allows). The plan is a struct instar_convert_plan, then
 * image_count struct instar_convert_image entries, then create_len bytes of the target's
 * instar_create_arg and its strings (as INSTAR_OP_CREATE), then snapshot_len bytes of -l's name.
 * Images 0..source_count-1 are the SRC arguments in order; an image's backing is another entry.
 * The target device is an output; the target module's create_writer makes and fills it. With
 * INSTAR_CONVERT_EXISTING_TARGET (-n) the target module's open_writer opens the
 * existing image on the target device (writable; an output when the format may grow its file);
 * create_len is then 8 times the number of the target's other files (vmdk extents, in the order
 * info reported them), which are the devices after the target device (outputs), and the bytes hold
 * each file's length (uint64). */
#define INSTAR_CONVERT_PLAN_MAGIC 0x4E4C5043u /* "CPLN" */
#define INSTAR_CONVERT_COMPRESS 1u            /* -c */
#define INSTAR_CONVERT_TARGET_HAS_BACKING 2u  /* -B or -o backing_file */
#define INSTAR_CONVERT_TARGET_IS_ZERO 4u      /* --target-is-zero */
#define INSTAR_CONVERT_EXISTING_TARGET 8u     /* -n */
#define INSTAR_CONVERT_OUT_OF_ORDER 16u       /* -W */
#define INSTAR_CONVERT_PROGRESS 32u           /* send INSTAR_HC_PROGRESS */
#define INSTAR_CONVERT_SALVAGE 64u            /* --salvage: read errors become zeros (INSTAR_REC_CONVERT_SALVAGE) */
#define INSTAR_CONVERT_WINDOW 128u            /* dd: copy only window_offset/window_length of the one source */
#define INSTAR_CONVERT_ONE_COROUTINE 256u     /* -m 1: no second request in flight when a read fails */
/* -l was given: the snapshot bytes (snapshot_len, perhaps 0: `-l ''`) name it. Without this flag a
 * non-empty name still means a plain -l (older hosts). */
#define INSTAR_CONVERT_SNAPSHOT 512u
/* -l snapshot.id=ID,snapshot.name=NAME (qemu's bdrv_snapshot_load_tmp with either or both, each
 * matched exactly): the snapshot bytes are one selector byte (INSTAR_SNAPSHOT_HAS_ID |
 * INSTAR_SNAPSHOT_HAS_NAME), the id, a NUL, the name. Without it they are a plain -l: an id, else a
 * name (bdrv_snapshot_load_tmp_by_id_or_name). */
#define INSTAR_CONVERT_SNAPSHOT_EXACT 1024u
/* The host planned before it had the one source's info (INSTAR_OP_INFO_FIRST of INSTAR_OP_CONVERT,
 * round 28): the guest takes the source's cluster size and backing files from the inspections that
 * started the run (as map's INSTAR_MAP_PLAN_CLUSTER_FROM_INFO | INSTAR_MAP_PLAN_CHAIN_FROM_INFO) and
 * the target's size, the create argument's `size`, from its virtual size rounded up to a sector.
 * Only for one source that names no other file, into a new target without a backing file, data
 * file or secret; not with -n or -l. With INSTAR_CONVERT_WINDOW (dd) the plan ends with a struct
 * instar_dd_window_spec after the snapshot bytes, and the guest computes the window (window_offset,
 * window_length) from the source's size as img_dd does (instar/guest/dd_window.h); the target's size
 * is then the window's length. Invalid outside such a run. */
#define INSTAR_CONVERT_PLAN_FROM_INFO 2048u
#define INSTAR_DD_HAS_COUNT 1u
#define INSTAR_DD_HAS_SKIP 2u
struct instar_dd_window_spec {
    uint64_t block_size; /* bs= (1..INT64_MAX) */
    uint64_t count;      /* count=, in blocks (with INSTAR_DD_HAS_COUNT) */
    uint64_t skip;       /* skip=, in blocks (with INSTAR_DD_HAS_SKIP) */
    uint32_t flags;      /* INSTAR_DD_HAS_* */
    uint32_t reserved;   /* 0 */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_dd_window_spec) == 32, "dd window spec layout");
#define INSTAR_SNAPSHOT_HAS_ID 1u
#define INSTAR_SNAPSHOT_HAS_NAME 2u
#define INSTAR_CONVERT_NO_BACKING 0xFFFFFFFFu /* instar_convert_image.backing: none */
#define INSTAR_CONVERT_MAX_IMAGES 4096u       /* 64 sources x a 64-deep chain: more than any sane plan */

struct instar_convert_arg {
    uint32_t plan_device;
    uint32_t secrets_device; /* 1 + the device holding the images' secrets (INSTAR_SECRETS_MAGIC); 0: none */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_convert_arg) == 8, "convert arg layout");

/* The secrets of encrypted images (--object secret: a LUKS passphrase, a qcow2 AES key), for the
 * data operations that read them (convert, compare, map, measure, rebase, commit: `secrets_device`
 * of their argument; formerly a reserved zero, so 0 still means none). A sealed read-only device: struct instar_secret_table, then `count` struct
 * instar_secret_entry (ascending image index, each image at most once), then the entries' bytes in
 * order. `image` is an index into the plan's image table; the guest hands the bytes to that image's
 * format in OpenRequest::secret. The bytes never appear in records or logs. */
#define INSTAR_SECRETS_MAGIC 0x52434553u   /* "SECR" */
#define INSTAR_MAX_SECRET_BYTES 65536u     /* one secret: far above any passphrase or key */
struct instar_secret_table {
    uint32_t magic;
    uint32_t count;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_secret_table) == 8, "secret table layout");
struct instar_secret_entry {
    uint32_t image;
    uint32_t length;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_secret_entry) == 8, "secret entry layout");

struct instar_convert_plan {
    uint32_t magic;         /* INSTAR_CONVERT_PLAN_MAGIC */
    uint32_t image_count;   /* entries in the image table */
    uint32_t source_count;  /* the first source_count entries are the SRC arguments */
    uint32_t target_module; /* module index of the target format */
    uint32_t target_device; /* device index of the target (an output) */
    uint32_t flags;         /* INSTAR_CONVERT_* */
    uint64_t min_sparse;    /* -S in bytes; 0 writes everything */
    uint64_t target_backing_size; /* -B: the backing file's virtual size; UINT64_MAX when unknown.
                                     With INSTAR_CONVERT_EXISTING_TARGET: the target file's length */
    uint32_t create_len;    /* bytes of instar_create_arg + strings after the table */
    uint32_t snapshot_len;  /* bytes of -l's name after those (0: none) */
    uint32_t qemu_version;  /* the output profile */
    uint32_t target_backing; /* -B: table index of the target's backing image, or INSTAR_CONVERT_NO_BACKING */
    /* INSTAR_CONVERT_WINDOW (dd, one source): the bytes [window_offset, window_offset + window_length)
       of the source's composed disk are the disk converted; any byte offset and length. 0 otherwise. */
    uint64_t window_offset;
    uint64_t window_length;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_convert_plan) == 72, "convert plan layout");

struct instar_convert_image {
    uint32_t module;     /* module index that reads it */
    uint32_t device;     /* its device */
    uint32_t first_file; /* device index of its first other file (extents, data file) */
    uint32_t file_count;
    uint32_t backing;    /* table index of its backing image, or INSTAR_CONVERT_NO_BACKING */
    uint32_t cluster_size; /* qemu's bdrv_get_info cluster size as info reported it (0: none) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_convert_image) == 24, "convert image layout");

/* INSTAR_OP_CHECK: device 0 is the image, devices 1..file_count the files info found it names
 * (vmdk extents), in reference order; module 0 (the format info detected) checks it. The guest
 * sends INSTAR_REC_CHECK records: any number of INSTAR_CHECK_TEXT (the lines qemu prints on stderr
 * while it checks, in order) and then exactly one INSTAR_CHECK_RESULT. A module without a check
 * sends a result whose error is -ENOTSUP (qemu's "does not support checks"). With fix, device
 * file_count + 1 is the same image as an output (writes may extend it): the runtime shows the module
 * one device whose size follows the writes, so a repair can grow the file as qemu's does. */
#define INSTAR_CHECK_FIX_LEAKS 1u  /* -r leaks (qemu's BDRV_FIX_LEAKS) */
#define INSTAR_CHECK_FIX_ERRORS 2u /* -r all adds this (BDRV_FIX_ERRORS) */
struct instar_check_arg {
    uint32_t fix;          /* INSTAR_CHECK_FIX_* */
    uint32_t qemu_version; /* the profile, major*10000 + minor*100 + micro */
    uint32_t file_count;
    uint32_t reserved;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_check_arg) == 16, "check arg layout");

#define INSTAR_CHECK_TEXT 1u   /* record payload: struct instar_check_record_head, then stderr bytes */
#define INSTAR_CHECK_RESULT 2u /* record payload: struct instar_check_record_head, then instar_check_result */
#define INSTAR_CHECK_TEXT_TRUNCATED 1u /* instar_check_result.flags: the guest stopped sending lines */
struct instar_check_record_head {
    uint32_t kind; /* INSTAR_CHECK_TEXT or INSTAR_CHECK_RESULT */
    uint32_t reserved;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_check_record_head) == 8, "check record head layout");
/* qemu's BdrvCheckResult plus the return value of its bdrv_check. */
struct instar_check_result {
    uint64_t corruptions;
    uint64_t leaks;
    uint64_t check_errors;
    uint64_t corruptions_fixed;
    uint64_t leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters;
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
    int32_t error;  /* 0, or a negative Linux errno: the check stopped (qemu's "Check failed: %s") */
    uint32_t flags; /* INSTAR_CHECK_TEXT_TRUNCATED */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_check_result) == 88, "check result layout");
/* INSTAR_OP_EDIT: one change to an existing image, in place (resize, snapshot, amend, bitmap, the
 * backing-file switch of rebase and commit's emptying of the top; instar/guest/edit_api.h). Device 0
 * is the image, devices 1..file_count the files it names (vmdk extents, a data file), in info's
 * reference order; they are output devices (writable, may grow) when INSTAR_EDIT_WRITE is set,
 * read-only otherwise. Devices file_count+1 .. file_count+extra_count are further read-only files
 * the command names (bitmap --merge's -b). The argument is this struct; device plan_device (the last,
 * a sealed read-only memfd) holds file_count + 1 uint64 lengths (each file's length when opened: an
 * output device's size is only its limit), then args_len bytes the command defines (a device, not
 * the argument: 500 vmdk extents' lengths or a long snapshot name outgrow INSTAR_MAX_OP_ARG). Module 0 (the image's format) does the work; the guest sends
 * INSTAR_REC_EDIT records and exits with the module's Status. */
#define INSTAR_EDIT_WRITE 1u /* instar_edit_arg.flags: the image and its files are writable */
/* INSTAR_EDIT_INFO_FIRST: one sandbox start instead of two (docs/edit.md). The guest first inspects
 * the image as INSTAR_OP_INFO would with module 0 alone (probing it, or with INSTAR_EDIT_INFO_FORCE
 * not), sending INSTAR_REC_INFO records; only when that succeeds and the image names no other file,
 * is not encrypted and (resize) the size checks pass, does it send INSTAR_EDIT_STARTED and run the
 * edit. Without INSTAR_EDIT_STARTED nothing was written: the host takes its ordinary path. */
#define INSTAR_EDIT_INFO_FIRST 2u
#define INSTAR_EDIT_INFO_FORCE 4u
/* INSTAR_EDIT_INFO_FIRST: no key-secret names a key for the image (INSTAR_INFO_NO_KEY's meaning). */
#define INSTAR_EDIT_INFO_NO_KEY 32u
/* INSTAR_EDIT_INFO_FIRST for a command that opens the backing chain (resize, snapshot): each
 * inspection's records are closed by INSTAR_REC_INFO_END, and an image whose only reference is a
 * backing file does not stop the run: its backing files are asked for and inspected as
 * INSTAR_INFO_FIRST_CHAINS does (INSTAR_HC_NEXT_IMAGE), the edit starting when the chain ends. */
#define INSTAR_EDIT_INFO_CHAINS 64u
/* INSTAR_EDIT_INFO_FIRST for a command that opens the image without its backing chain (bitmap, as
 * qemu-img does): a backing file among the image's references does not stop the run. */
#define INSTAR_EDIT_INFO_NO_BACKING 128u
/* INSTAR_EDIT_PLAN_INLINE (round 42): the plan's bytes (the lengths, then the command's argument)
 * follow this struct in the operation's argument instead of being a device; plan_device is the index
 * that device would have had, and no device is there (a secrets device is at plan_device). The host
 * inlines a plan that fits INSTAR_MAX_OP_ARG: one exit and one sealed file fewer. */
#define INSTAR_EDIT_PLAN_INLINE 256u
/* INSTAR_EDIT_SECRETS: device plan_device + 1 (plan_device with INSTAR_EDIT_PLAN_INLINE) is a secrets device (struct instar_secret_table, as
 * convert's), whose entry indices are the command's (instar/guest/edit_api.h EDIT_SECRET_*: the image's
 * key and amend's new and old key-slot passphrases). Absent: no secrets (the flag keeps the
 * argument's layout unchanged). */
#define INSTAR_EDIT_SECRETS 8u
struct instar_edit_arg {
    uint32_t command;      /* instar::guest::EditCommand */
    uint32_t qemu_version; /* the profile, major*10000 + minor*100 + micro */
    uint32_t file_count;
    uint32_t extra_count;
    uint32_t flags;        /* INSTAR_EDIT_* */
    uint32_t args_len;
    int64_t unix_time;     /* the host's clock: seconds since 1970 ... */
    uint32_t unix_nsec;    /* ... and nanoseconds (snapshot dates) */
    uint32_t plan_device;  /* the device holding the lengths and the command's argument bytes */
    uint8_t random[32];    /* from the host's CSPRNG (vmdk CIDs, vhdx GUIDs) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_edit_arg) == 72, "edit arg layout");
/* INSTAR_REC_EDIT kinds: text for the host's stdout or stderr, the reason a command was refused,
 * or a command's own data (kinds from INSTAR_EDIT_COMMAND_DATA up, defined by the command). */
#define INSTAR_EDIT_STDOUT 1u
#define INSTAR_EDIT_STDERR 2u
#define INSTAR_EDIT_REASON 3u
#define INSTAR_EDIT_STARTED 4u /* INSTAR_EDIT_INFO_FIRST: the edit itself begins (no bytes) */
#define INSTAR_EDIT_COMMAND_DATA 16u
struct instar_edit_record_head {
    uint32_t kind;
    uint32_t reserved;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_edit_record_head) == 8, "edit record head layout");

/* INSTAR_OP_REBASE (rebase's safe mode): the argument names a read-only device holding a struct
 * instar_rebase_plan, then image_count struct instar_convert_image entries: entry 0 is the image
 * (read through its read-only device, written through write_device), its old backing chain follows
 * through `backing`; new_backing is the top of the
 * new backing chain (or INSTAR_CONVERT_NO_BACKING: zeros). Wherever the image allocates nothing and
 * the old and new chains read differently, the guest writes the old chain's bytes into the image
 * (whole clusters of the image), flushes it, and answers with one INSTAR_REC_REBASE (after an
 * INSTAR_REC_REASON when something failed). */
#define INSTAR_REBASE_PLAN_MAGIC 0x4E4C5052u /* "RPLN" */
#define INSTAR_REBASE_PROGRESS 1u            /* send INSTAR_HC_PROGRESS in bytes of the image */
#define INSTAR_REBASE_COMPRESS 2u            /* -c: copied clusters stored compressed */
/* The image names other files (a qcow2 data file, vmdk extents): the image table is followed by a
 * uint64 count and that many uint64 file lengths, in the order info reported the files; the files
 * are the devices after write_device (writable outputs), as commit's base's (guest ABI 9). */
#define INSTAR_REBASE_IMAGE_FILES 4u

struct instar_rebase_arg {
    uint32_t plan_device;
    uint32_t secrets_device; /* as instar_convert_arg's (formerly a reserved zero: 0 still means none) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_rebase_arg) == 8, "rebase arg layout");

struct instar_rebase_plan {
    uint32_t magic;        /* INSTAR_REBASE_PLAN_MAGIC */
    uint32_t image_count;  /* entries after the head, at least 1 */
    uint32_t flags;        /* INSTAR_REBASE_* */
    uint32_t qemu_version;
    uint32_t new_backing;  /* table index of the new backing chain's top, or INSTAR_CONVERT_NO_BACKING */
    uint32_t write_device; /* the image's file again, writable (entry 0's device is read-only) */
    uint64_t image_length; /* that file's length when the host opened it */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_rebase_plan) == 32, "rebase plan layout");

/* What went wrong, in qemu-img's categories (its message for each is the host's). */
enum instar_rebase_outcome {
    INSTAR_REBASE_DONE = 0,
    INSTAR_REBASE_OPEN_FAILED = 1,  /* opening image `image` (its reason sent) */
    INSTAR_REBASE_STATUS_FAILED = 2, /* "error while reading image metadata" */
    INSTAR_REBASE_READ_OLD = 3,     /* "error while reading from old backing file" */
    INSTAR_REBASE_READ_NEW = 4,     /* "error while reading from new backing file" */
    INSTAR_REBASE_WRITE = 5,        /* "Error while writing to COW image" (reason sent) */
};

struct instar_rebase_record {
    uint32_t outcome;  /* enum instar_rebase_outcome */
    uint32_t image;    /* OPEN_FAILED: the table index */
    uint64_t copied;   /* bytes written into the image */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_rebase_record) == 16, "rebase record layout");

/* INSTAR_OP_COMPARE: the argument names a read-only device holding a struct instar_compare_plan, then
 * image_count struct instar_convert_image entries (entries 0 and 1 are FILE1 and FILE2, the rest their
 * backing chains), then image_count uint32_t INSTAR_COMPARE_IMAGE_* flags, one per entry, then
 * image_count struct instar_image_facts (the same order; qcow2's metadata-preallocation check runs in
 * the guest, as map's and measure's). The guest answers with one INSTAR_REC_COMPARE (after an
 * INSTAR_REC_REASON when opening failed). */
#define INSTAR_COMPARE_PLAN_MAGIC 0x4E4C504Bu /* "KPLN" (map's is "MPLN") */
#define INSTAR_COMPARE_STRICT 1u              /* -s */
#define INSTAR_COMPARE_PROGRESS 2u            /* send INSTAR_HC_PROGRESS in bytes of the larger image */
/* Images 0 and 1 (the two tops) take their cluster_size from the inspections before them (valid only
 * in an INSTAR_OP_INFO_FIRST run, whose host plans before it has the info). */
#define INSTAR_COMPARE_CLUSTER_FROM_INFO 4u
/* With CLUSTER_FROM_INFO, in an INSTAR_INFO_FIRST_CHAINS run: both tops' backing files appended to
 * the table as map's INSTAR_MAP_PLAN_CHAIN_FROM_INFO appends image 0's. */
#define INSTAR_COMPARE_CHAIN_FROM_INFO 8u
#define INSTAR_COMPARE_IMAGE_BACKING 1u       /* the format can have a backing file (qemu's supports_backing) */
#define INSTAR_COMPARE_IMAGE_NO_STATUS 2u     /* qemu has no block status for the format: all data */
#define INSTAR_COMPARE_IMAGE_HOLE_DATA 4u     /* BDRV_BLOCK_RECURSE formats (vmdk flat, vpc fixed): a Zero
                                               * extent with an offset is a host hole: DATA|ZERO to qemu */
#define INSTAR_COMPARE_IMAGE_RECURSE 8u       /* qcow2 qemu deems metadata-preallocated: data clusters over
                                               * host holes read ZERO as well (the image's own file); set
                                               * by the guest from INSTAR_IMAGE_DETECT_PREALLOC */
#define INSTAR_COMPARE_IMAGE_ALL 15u

struct instar_compare_arg {
    uint32_t plan_device;
    uint32_t secrets_device; /* as instar_convert_arg's */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_compare_arg) == 8, "compare arg layout");

struct instar_compare_plan {
    uint32_t magic;        /* INSTAR_COMPARE_PLAN_MAGIC */
    uint32_t image_count;  /* entries in the image table (>= 2) */
    uint32_t flags;        /* INSTAR_COMPARE_* */
    uint32_t qemu_version; /* the output profile */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_compare_plan) == 16, "compare plan layout");
/* What the host knows of each image's own file (trusted host metadata, not image content), for
 * map's, measure's and compare's plans: qemu's qcow2 driver sets BDRV_BLOCK_RECURSE on data clusters of an
 * image it takes for metadata-preallocated (qcow2_detect_metadata_preallocation compares the
 * clusters in use with the file's allocated size), and the block layer then asks the file whether
 * the cluster's bytes are a hole. */
#define INSTAR_IMAGE_DETECT_PREALLOC 1u /* qcow2 without a data file: qemu's metadata-preallocation check */
struct instar_image_facts {
    uint64_t allocated; /* the image file's allocated bytes (st_blocks * 512) */
    uint32_t flags;     /* INSTAR_IMAGE_* */
    uint32_t reserved;  /* 0 */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_image_facts) == 16, "image facts layout");

/* INSTAR_OP_MAP: the argument names a read-only device holding the plan: a struct instar_map_plan,
 * then image_count struct instar_convert_image entries (image 0 is the FILE argument, its backing
 * chain follows through `backing`), then image_count uint32_t INSTAR_MAP_STYLE_* values, then
 * image_count struct instar_image_facts (the same order). The guest walks [start, min(end, virtual
 * size)) as qemu-img map's get_block_status does and sends the runs as INSTAR_REC_MAP records of whole struct instar_map_entry
 * items (consecutive runs that qemu's entry_mergeable would join already joined). A failure while
 * opening sends INSTAR_REC_CONVERT_FAILURE (PHASE_OPEN, image) and a reason; one while walking sends
 * PHASE_COPY (with the failing layer's image) and a reason, after the records of the runs before it.
 * When the records would outgrow the host's bounds, the guest stops after whole runs with TooLarge and
 * PHASE_COPY naming INSTAR_CONVERT_NO_BACKING: the host continues from the last run's end. */
#define INSTAR_MAP_PLAN_MAGIC 0x4E4C504Du /* "MPLN" */
/* After the image table: image_count uint32_t styles, how each image's format driver answers qemu's
 * block status (what the reader's Extent cannot say by itself). */
#define INSTAR_MAP_STYLE_HOLE_IS_DATA 1u    /* BDRV_BLOCK_RECURSE: a Zero run with an offset is DATA|ZERO */
#define INSTAR_MAP_STYLE_UNALLOCATED_ZERO 2u /* the driver says ZERO for its unallocated blocks (vpc) */
#define INSTAR_MAP_STYLE_NO_STATUS 4u       /* no block status: the whole disk is DATA, no offset (vhdx) */
#define INSTAR_MAP_STYLE_NO_BACKING 8u      /* no backing support: unallocated is neither DATA nor ZERO */
#define INSTAR_MAP_STYLE_SPLIT_EOF 16u      /* raw: the file's partial last sector is ZERO past the file's end */
#define INSTAR_MAP_STYLE_ALL 31u
struct instar_map_arg {
    uint32_t plan_device;
    uint32_t secrets_device; /* as instar_convert_arg's (formerly a reserved zero: 0 still means none) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_map_arg) == 8, "map arg layout");

struct instar_map_plan {
    uint32_t magic;        /* INSTAR_MAP_PLAN_MAGIC */
    uint32_t image_count;  /* entries in the image table */
    uint64_t start;        /* --start-offset */
    uint64_t end;          /* start + --max-length, or UINT64_MAX: the walk stops at min(end, size) */
    uint32_t qemu_version; /* the output profile */
    uint32_t flags;        /* INSTAR_MAP_PLAN_* (formerly reserved: 0) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_map_plan) == 32, "map plan layout");
/* Image 0's cluster_size is the one the inspection before it reported (valid only in an
 * INSTAR_OP_INFO_FIRST run, whose host plans before it has the info). */
#define INSTAR_MAP_PLAN_CLUSTER_FROM_INFO 1u
/* With CLUSTER_FROM_INFO, in an INSTAR_INFO_FIRST_CHAINS run: image 0's backing files as the guest
 * inspected them are appended to the table (each with image 0's style and facts flags, its
 * allocated bytes from INSTAR_HC_NEXT_IMAGE), image 0 naming no backing in the plan itself. */
#define INSTAR_MAP_PLAN_CHAIN_FROM_INFO 2u

/* instar_map_entry.flags: qemu's BDRV_BLOCK_* as map prints them */
#define INSTAR_MAP_DATA 1u
#define INSTAR_MAP_ZERO 2u
#define INSTAR_MAP_PRESENT 4u      /* BDRV_BLOCK_ALLOCATED in the layer that answered */
#define INSTAR_MAP_OFFSET_VALID 8u /* offset and file say where the run's bytes lie */
#define INSTAR_MAP_COMPRESSED 16u
#define INSTAR_MAP_FLAGS_ALL 31u
#define INSTAR_MAP_MAX_BATCH 1024u /* entries per record: 40 KiB, under INSTAR_MAX_RECORD_SIZE */
struct instar_map_entry {
    uint64_t start;
    uint64_t length;
    uint64_t offset; /* with INSTAR_MAP_OFFSET_VALID */
    uint32_t depth;  /* the chain layer that answered (0: the image itself) */
    uint32_t flags;  /* INSTAR_MAP_* */
    uint32_t file;   /* with OFFSET_VALID: 0 the layer's image file, 1 + i its files[i] */
    uint32_t reserved;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_map_entry) == 40, "map entry layout");
/* INSTAR_OP_MEASURE: qemu-img measure's allocation walk over one source (qcow2_measure's loop). The
 * plan device holds a struct instar_measure_plan, then image_count struct instar_convert_image
 * entries (image 0 is the source; the rest its backing chain), then image_count struct
 * instar_image_facts entries (the same order), then snapshot_len bytes of -l's name.
 * The guest walks block status over the whole chain (a data extent backed by a hole of its file
 * counts as zeros, as qemu's file-layer status does) and sends one INSTAR_REC_MEASURE. A failure
 * to open image i sends INSTAR_REC_CONVERT_FAILURE {INSTAR_CONVERT_PHASE_OPEN, i} and a REASON. */
#define INSTAR_MEASURE_PLAN_MAGIC 0x534D4C50u /* "PLMS" */
#define INSTAR_MEASURE_MIN_CLUSTER 512u       /* qcow2's smallest cluster (MIN_CLUSTER_BITS 9) */
#define INSTAR_MEASURE_MAX_CLUSTER (256u << 20) /* vhdx's largest block (qcow2's largest cluster: 2 MiB) */
struct instar_measure_arg {
    uint32_t plan_device;
    uint32_t secrets_device; /* as instar_convert_arg's (formerly a reserved zero: 0 still means none) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_measure_arg) == 8, "measure arg layout");

struct instar_measure_plan {
    uint32_t magic;        /* INSTAR_MEASURE_PLAN_MAGIC */
    uint32_t image_count;  /* entries in the image table; image 0 is the source */
    uint32_t cluster_size; /* the target's allocation unit: a power of two in [MIN, MAX]_CLUSTER */
    uint32_t snapshot_len; /* bytes of -l's name after the table (0: none) */
    uint32_t qemu_version; /* the output profile */
    uint32_t flags;        /* INSTAR_MEASURE_PLAN_* (formerly reserved: 0) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_measure_plan) == 24, "measure plan layout");
/* In an INSTAR_OP_INFO_FIRST run with INSTAR_INFO_FIRST_CHAINS (whose host plans before it has the
 * info): image 0's cluster size is the one its inspection reported and its backing files, as the
 * guest inspected them, are appended to the table (image 0's facts flags, each level's allocated
 * bytes from INSTAR_HC_NEXT_IMAGE), as INSTAR_MAP_PLAN_CLUSTER_FROM_INFO | _CHAIN_FROM_INFO do. */
#define INSTAR_MEASURE_PLAN_FROM_INFO 1u

/* The walk's result: `required` is cluster_size times the number of target clusters that hold any
 * byte the chain reports as data (neither zero nor unallocated all the way down). */
struct instar_measure_record {
    uint64_t virtual_size; /* the source's virtual size as its reader reports it */
    uint64_t required;     /* <= virtual_size rounded up to cluster_size */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_measure_record) == 16, "measure record layout");

/* INSTAR_OP_COMMIT: the argument names a read-only device holding a struct instar_commit_plan, then
 * image_count struct instar_convert_image entries: the top image's whole chain, top first (entry i's
 * backing is entry i + 1). Every range allocated in entries [0, base) (qemu's bdrv_is_allocated_above)
 * is read through the chain and written into entry `base` through its format's open_writer, on
 * target_device (the base's file opened for writing; an output unless the format is raw). A failure
 * sends INSTAR_REC_CONVERT_FAILURE (PHASE_OPEN with the table index, or PHASE_COPY / PHASE_FINISH
 * naming INSTAR_CONVERT_NO_BACKING) and a REASON. INSTAR_REC_COMMIT (13) is reserved; unused. */
#define INSTAR_COMMIT_PLAN_MAGIC 0x4E4C504Fu /* "OPLN" */
#define INSTAR_COMMIT_PROGRESS 1u            /* send INSTAR_HC_PROGRESS: bytes done of bytes to copy */
/* The base names other files (vmdk extents): the image table is followed by a uint64 count and
 * that many uint64 file lengths, in the order info reported the files; the files are the devices
 * after target_device (writable outputs), as convert -n's target's (guest ABI 8). */
#define INSTAR_COMMIT_BASE_FILES 2u
struct instar_commit_arg {
    uint32_t plan_device;
    uint32_t secrets_device; /* as instar_convert_arg's (formerly a reserved zero: 0 still means none) */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_commit_arg) == 8, "commit arg layout");

struct instar_commit_plan {
    uint32_t magic;         /* INSTAR_COMMIT_PLAN_MAGIC */
    uint32_t image_count;   /* entries in the image table (>= 2) */
    uint32_t base;          /* table index of the base (1 .. image_count-1) */
    uint32_t target_device; /* the base's file, writable */
    uint64_t base_length;   /* that file's length when the host opened it */
    uint32_t flags;         /* INSTAR_COMMIT_* */
    uint32_t qemu_version;  /* the output profile */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_commit_plan) == 32, "commit plan layout");

struct instar_selftest_arg {
    uint64_t crc_limit; /* crc32 covers min(device size, crc_limit) bytes from offset 0 */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_selftest_arg) == 8, "selftest arg layout");

struct instar_read_bench_arg {
    uint32_t device;
    uint32_t reserved;
    uint64_t length; /* total bytes, from offset 0 */
    uint64_t chunk;  /* bytes per hypercall */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_read_bench_arg) == 24, "read bench arg layout");

/* ---- Result records ---- */
enum instar_record_type {
    INSTAR_REC_SELFTEST = 1, /* struct instar_selftest_record */
    INSTAR_REC_INFO = 2,     /* a chunk of the info token stream (instar/guest/info_sink.h) */
    INSTAR_REC_CREATE = 3,   /* struct instar_create_record, once, when creation succeeded */
    INSTAR_REC_REASON = 4,   /* why an operation was refused: text, at most CREATE_MAX_REASON bytes */
    INSTAR_REC_CONVERT_FAILURE = 5, /* struct instar_convert_failure: which step failed (a REASON follows) */
    INSTAR_REC_CHECK = 6,    /* INSTAR_OP_CHECK's output (struct instar_check_record_head first) */
    INSTAR_REC_CONVERT_SALVAGE = 10, /* struct instar_convert_salvage: --salvage zeroed a failed range */
    INSTAR_REC_COMPARE = 8,  /* struct instar_compare_record, once, at the end of INSTAR_OP_COMPARE */
    INSTAR_REC_MAP = 7,      /* 1..INSTAR_MAP_MAX_BATCH struct instar_map_entry, in disk order */
    INSTAR_REC_MEASURE = 9,  /* struct instar_measure_record, once, when the walk succeeded */
    INSTAR_REC_EDIT = 11,    /* INSTAR_OP_EDIT's output: struct instar_edit_record_head, then bytes */
    INSTAR_REC_REBASE = 12,  /* struct instar_rebase_record, once, at the end of INSTAR_OP_REBASE */
    INSTAR_REC_STARTED = 14, /* INSTAR_OP_INFO_FIRST: empty; the operation began after the inspections */
    INSTAR_REC_INFO_END = 15, /* INSTAR_OP_INFO_FIRST: empty; one image's INSTAR_REC_INFO records end */
    INSTAR_REC_TEST = 0x7F00, /* free-form bytes, for tests of the sandbox itself */
};

struct instar_create_record {
    uint64_t resolved_unit_size;
};
INSTAR_ABI_ASSERT(sizeof(struct instar_create_record) == 8, "create record layout");

/* What failed in a convert, so the host can word it as qemu-img does. */
enum instar_convert_phase {
    INSTAR_CONVERT_PHASE_OPEN = 1,   /* opening image `image` of the plan's table */
    INSTAR_CONVERT_PHASE_CREATE = 2, /* creating the target */
    INSTAR_CONVERT_PHASE_COPY = 3,   /* moving data */
    INSTAR_CONVERT_PHASE_FINISH = 4, /* writing the target's last metadata */
};
struct instar_convert_failure {
    uint32_t phase; /* enum instar_convert_phase */
    uint32_t image; /* for PHASE_OPEN: the table index; else INSTAR_CONVERT_NO_BACKING */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_convert_failure) == 8, "convert failure layout");

/* --salvage: `sectors` consecutive 512-byte sectors from source byte `offset` on, each of which qemu-img
 * warns about once ("error while reading [block status at ]offset N: ERRNO-TEXT"). */
enum instar_salvage_kind {
    INSTAR_SALVAGE_READ = 1,   /* a data read failed: the sector reads as zeros */
    INSTAR_SALVAGE_STATUS = 2, /* block status failed: the sector is taken as data */
    INSTAR_SALVAGE_BOTH = 3,   /* per sector: block status failed, then its read failed (both warnings) */
};
struct instar_convert_salvage {
    uint32_t kind;    /* enum instar_salvage_kind */
    uint32_t status;  /* the instar::guest::Status of the failure */
    uint64_t offset;  /* byte offset in the source image of the first sector */
    uint64_t sectors; /* count of consecutive sectors */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_convert_salvage) == 24, "convert salvage layout");
/* How a compare ended (instar_compare_record.outcome), as qemu-img compare words it. */
enum instar_compare_outcome {
    INSTAR_COMPARE_IDENTICAL = 0,     /* "Images are identical." */
    INSTAR_COMPARE_MISMATCH = 1,      /* "Content mismatch at offset N!" */
    INSTAR_COMPARE_SIZE_STRICT = 2,   /* -s: "Strict mode: Image size mismatch!" */
    INSTAR_COMPARE_STATUS_STRICT = 3, /* -s: "Strict mode: Offset N block status mismatch!" */
    INSTAR_COMPARE_OPEN_FAILED = 4,   /* entry `image` could not be opened (a REASON came first) */
    INSTAR_COMPARE_STATUS_FAILED = 5, /* "Sector allocation test failed for FILE<image+1>" */
    INSTAR_COMPARE_READ_FAILED = 6,   /* "Error while reading offset N of FILE<image+1>: ..." */
};
struct instar_compare_record {
    uint32_t outcome;       /* enum instar_compare_outcome */
    uint32_t image;         /* OPEN_FAILED: table index; STATUS/READ_FAILED: 0 FILE1, 1 FILE2 */
    uint64_t offset;        /* MISMATCH, STATUS_STRICT, READ_FAILED: the byte offset */
    uint32_t size_mismatch; /* 1: the sizes differ and "Warning: Image size mismatch!" was reached */
    uint32_t status;        /* READ_FAILED: the read's guest Status, for the errno text (0, as before
                               round 10: "Input/output error"); 0 otherwise */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_compare_record) == 24, "compare record layout");

#define INSTAR_SELFTEST_MODULE_MATCH 1u /* module 0's probe recognised device 0 */

struct instar_selftest_record {
    uint64_t device_size;
    uint64_t bytes_read;
    uint32_t crc32;
    uint32_t flags; /* INSTAR_SELFTEST_* */
};
INSTAR_ABI_ASSERT(sizeof(struct instar_selftest_record) == 24, "selftest record layout");

#endif /* INSTAR_GUEST_ABI_H */
