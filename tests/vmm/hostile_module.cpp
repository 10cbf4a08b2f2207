// A deliberately hostile guest module: each `run` argument selects one way to break the sandbox's
// rules, so the tests can prove each limit ends the guest cleanly. Built as hostile.gmod.
#include <instar_guest/hypercall.h>
#include <instar_guest/module_abi.h>

#include "hostile_attacks.h"

namespace {

using namespace instar::guest;

constinit const Services* svc = nullptr;

int64_t raw_call(uint32_t nr, uint32_t device, uint64_t offset, uint64_t gpa, uint64_t len) {
    instar_hypercall* mb = mailbox();
    *mb = instar_hypercall{};
    mb->nr = nr;
    mb->device = device;
    mb->offset = offset;
    mb->gpa = gpa;
    mb->len = len;
    return hypercall_issue(mb);
}

uint64_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// One INSTAR_READ_AHEAD read of device 0; its ret, and whether it came back PENDING.
int64_t read_ahead(uint64_t offset, void* buf, uint64_t len, bool* pending) {
    instar_hypercall* mb = mailbox();
    *mb = instar_hypercall{};
    mb->nr = INSTAR_HC_READ;
    mb->offset = offset;
    mb->gpa = addr(buf);
    mb->len = len;
    mb->arg0 = INSTAR_READ_AHEAD;
    const int64_t ret = hypercall_issue(mb);
    *pending = (mb->out_flags & INSTAR_READ_PENDING) != 0;
    return ret;
}

Status exhaust_allocator() {
    constexpr size_t CHUNK = 1 << 20;
    uint64_t chunks = 0;
    while (svc->allocator->allocate(CHUNK, 16) != nullptr) ++chunks;
    // An absurd request must fail cleanly too, not wrap around.
    if (svc->allocator->allocate(~size_t{0} - 8, 4096) != nullptr) return Status::Invalid;
    svc->send_record(INSTAR_REC_TEST, &chunks, sizeof chunks);
    return Status::NoMemory;
}

Status touch_arena() {
    constexpr size_t CHUNK = 1 << 20;
    uint64_t chunks = 0;
    while (auto* p = static_cast<volatile uint8_t*>(svc->allocator->allocate(CHUNK, 16))) {
        for (size_t off = 0; off < CHUNK; off += 4096) p[off] = static_cast<uint8_t>(off >> 12);
        ++chunks;
    }
    svc->send_record(INSTAR_REC_TEST, &chunks, sizeof chunks);
    return Status::NoMemory;
}

Status inflate_arg(const uint8_t* data, size_t len, size_t cap) {
    void* out = svc->allocator->allocate(cap, 16);
    if (out == nullptr) return Status::NoMemory;
    size_t produced = 0;
    Status st = svc->inflate(data, len, out, cap, &produced, 15);
    if (st != Status::Ok) return st;
    return svc->send_record(INSTAR_REC_TEST, out, produced);
}

int64_t compress_call(uint64_t kind, uint64_t table, uint64_t count) {
    instar_hypercall* mb = mailbox();
    *mb = instar_hypercall{};
    mb->nr = INSTAR_HC_COMPRESS;
    mb->arg0 = kind;
    mb->gpa = table;
    mb->len = count;
    return hypercall_issue(mb);
}

Status compress_attack(Attack a, uint8_t kind) {
    constexpr uint32_t JOBS = 64;
    constexpr size_t IN = 16 << 10;
    constexpr size_t OUT = 20 << 10;
    auto* in = static_cast<uint8_t*>(svc->allocator->allocate(IN * JOBS + (3u << 20), 64));
    auto* out = static_cast<uint8_t*>(svc->allocator->allocate(OUT * JOBS, 64));
    auto* jobs = static_cast<instar_compress_job*>(svc->allocator->allocate(sizeof(instar_compress_job) * JOBS, 64));
    if (in == nullptr || out == nullptr || jobs == nullptr) return Status::NoMemory;
    for (size_t i = 0; i < IN * JOBS; ++i) in[i] = static_cast<uint8_t>((i / 7) % 13 + (i / IN));
    for (uint32_t j = 0; j < JOBS; ++j)
        jobs[j] = instar_compress_job{addr(in + j * IN), IN, addr(out + j * OUT), OUT, 0, 1};
    uint64_t table = addr(jobs);
    uint64_t count = JOBS;
    switch (a) {
    case Attack::CompressTableOutsideRam: table = 0xFFFFFFFFFFFFF000ull; break;
    case Attack::CompressBufferOutsideRam: jobs[5].dst_gpa = 1ull << 40; break;
    case Attack::CompressHugeCount: count = 1ull << 40; break;
    case Attack::CompressOverlap: jobs[7].dst_gpa = jobs[3].dst_gpa + 100; break;
    case Attack::CompressDstOverSrc: jobs[9].dst_gpa = jobs[2].src_gpa; break;
    case Attack::CompressTooBig: jobs[0].src_len = 3u << 20; break;
    case Attack::CompressBadKind: kind = 99; break;
    default: break;
    }
    if (compress_call(kind, table, count) != 0) return Status::IoError;
    for (uint32_t j = 0; j < JOBS; ++j) {
        // status, out_len, then the compressed bytes
        static uint8_t rec[16 + OUT]; // not on the small guest stack
        __builtin_memcpy(rec, &jobs[j].status, 8);
        __builtin_memcpy(rec + 8, &jobs[j].out_len, 8);
        const uint64_t n = jobs[j].out_len <= OUT ? jobs[j].out_len : 0;
        __builtin_memcpy(rec + 16, out + j * OUT, n);
        if (svc->send_record(INSTAR_REC_TEST, rec, 16 + n) != Status::Ok) return Status::Invalid;
    }
    return Status::Ok;
}

[[gnu::noinline]] uint64_t recurse(uint64_t depth) {
    volatile char pad[256];
    pad[0] = static_cast<char>(depth);
    if (depth == ~uint64_t{0}) return 0; // never: the stack runs out first
    return recurse(depth + 1) + pad[0];
}

// WriteSegments / DiscardRanges: sends call `nr` with the first `good` of `entries` (room for max + 1),
// spoiled as `which` says, to device 1 (device 0 for ReadOnly). The host either ends the guest or
// answers; the answer is not looked at.
template <class Entry>
void send_table(uint32_t nr, Entry* entries, uint64_t good, uint64_t max, TableCase which) {
    uint64_t count = good, table = addr(entries);
    uint32_t device = 1;
    switch (which) {
    case TableCase::Good: break;
    case TableCase::PastEnd: entries[1].offset = svc->device(1)->size() - 100; break;
    case TableCase::BufferOutsideRam:
        if constexpr (requires { entries[0].gpa; }) entries[good - 1].gpa = uint64_t{1} << 40;
        break;
    case TableCase::TooMany:
        for (uint64_t i = good; i <= max; ++i) entries[i] = entries[0];
        count = max + 1;
        break;
    case TableCase::TableOutsideRam: table = uint64_t{1} << 40; break;
    case TableCase::ReadOnly: device = 0; break;
    }
    (void)raw_call(nr, device, 0, table, count);
}

// Reads through an address the compiler cannot see is bogus.
uint64_t load(uint64_t address) {
    volatile uint64_t a = address;
    return *reinterpret_cast<volatile uint64_t*>(static_cast<uintptr_t>(a));
}

Status run(const void* arg, size_t arg_len) {
    if (arg_len < 1) return Status::Invalid;
    auto* a = static_cast<const uint8_t*>(arg);
    BlockDevice* dev0 = svc->device(0);
    static uint8_t page[4096];
    switch (static_cast<Attack>(a[0])) {
    case Attack::EndlessLoop:
        for (;;) asm volatile("" ::: "memory");
    case Attack::ReadPastEnd:
        raw_call(INSTAR_HC_READ, 0, dev0->size() - 10, addr(page), sizeof page);
        return Status::Ok;
    case Attack::WriteReadOnly:
        raw_call(INSTAR_HC_WRITE, 0, 0, addr(page), sizeof page);
        return Status::Ok;
    case Attack::BufferOutsideRam:
        raw_call(INSTAR_HC_READ, 0, 0, 0xFFFFFFFFFFFFF000ull, sizeof page);
        return Status::Ok;
    case Attack::BufferWrapsAround:
        raw_call(INSTAR_HC_READ, 0, 0, 0x1000, ~0ull - 0x800);
        return Status::Ok;
    case Attack::NoSuchDevice:
        raw_call(INSTAR_HC_READ, 7, 0, addr(page), 16);
        return Status::Ok;
    case Attack::UnknownHypercall:
        raw_call(99, 0, 0, 0, 0);
        return Status::Ok;
    case Attack::OversizedRecord: {
        svc->send_record(INSTAR_REC_TEST, "kept?", 5); // must be discarded with the rest
        void* big = svc->allocator->allocate(INSTAR_MAX_RECORD_SIZE + 1, 16);
        if (big == nullptr) return Status::NoMemory;
        svc->send_record(INSTAR_REC_TEST, big, INSTAR_MAX_RECORD_SIZE + 1);
        return Status::Ok;
    }
    case Attack::OversizedLogLine:
        raw_call(INSTAR_HC_LOG, 0, 0, addr(page), sizeof page);
        return Status::Ok;
    case Attack::LogFlood:
        for (int i = 0; i < 1000; ++i) svc->log("flood\x1b[31m", 10);
        return Status::Ok;
    case Attack::DivideByZero: {
        volatile uint64_t zero = 0;
        volatile uint64_t x = 42 / zero;
        return x == 0 ? Status::Ok : Status::Invalid;
    }
    case Attack::NullPointer:
        return load(8) == 0 ? Status::Ok : Status::Invalid;
    case Attack::PointerPastRam:
        return load(uint64_t{64} << 30) == 0 ? Status::Ok : Status::Invalid;
    case Attack::StackOverflow:
        return recurse(0) == 0 ? Status::Ok : Status::Invalid;
    case Attack::ForeignPort:
        asm volatile("outb %%al, $0x80" : : "a"(0));
        return Status::Ok;
    case Attack::Halt:
        asm volatile("hlt");
        return Status::Ok;
    case Attack::ExhaustAllocator:
        return exhaust_allocator();
    case Attack::Inflate:
        return inflate_arg(a + 1, arg_len - 1, 1 << 20);
    case Attack::InflateBomb:
        return inflate_arg(a + 1, arg_len - 1, 1024);
    case Attack::WriteOutput: {
        BlockDevice* out = svc->device(1);
        if (out == nullptr) return Status::Invalid;
        for (unsigned i = 0; i < sizeof page; ++i) page[i] = static_cast<uint8_t>(i * 7);
        Status st = out->write(0, page, sizeof page);
        if (st != Status::Ok) return st;
        // The runtime refuses writes to a read-only device by itself, without asking the host.
        return dev0->write(0, page, 16) == Status::IoError ? Status::Ok : Status::Invalid;
    }
    case Attack::WriteOutputDeferred: {
        static uint8_t second[4096];
        for (unsigned i = 0; i < sizeof page; ++i) page[i] = static_cast<uint8_t>(i * 7);
        for (unsigned i = 0; i < sizeof second; ++i) second[i] = static_cast<uint8_t>(i * 11);
        instar_hypercall* mb = mailbox();
        *mb = instar_hypercall{};
        mb->nr = INSTAR_HC_WRITE;
        mb->device = 1;
        mb->gpa = addr(page);
        mb->len = sizeof page;
        mb->arg0 = INSTAR_WRITE_DEFERRABLE;
        (void)hypercall_issue(mb);
        for (unsigned i = 0; i < sizeof page; ++i) page[i] = 0xee; // while the host may be writing it
        *mb = instar_hypercall{};
        mb->nr = INSTAR_HC_WRITE;
        mb->device = 1;
        mb->offset = 4096;
        mb->gpa = addr(second);
        mb->len = sizeof second;
        mb->arg0 = INSTAR_WRITE_DEFERRABLE;
        (void)hypercall_issue(mb);
        (void)raw_call(INSTAR_HC_WRITE, 1, 0, 0, 0);
        return Status::Ok; // whatever the writes answered: the host must judge the run itself
    }
    case Attack::CompressGood:
    case Attack::CompressTableOutsideRam:
    case Attack::CompressBufferOutsideRam:
    case Attack::CompressHugeCount:
    case Attack::CompressOverlap:
    case Attack::CompressDstOverSrc:
    case Attack::CompressTooBig:
    case Attack::CompressBadKind:
        return compress_attack(static_cast<Attack>(a[0]), arg_len > 1 ? a[1] : 1);
    case Attack::HypercallLoop:
        for (;;) dev0->read(0, page, 1);
    case Attack::SetLengthNotOutput: {
        instar_hypercall* mb = mailbox();
        *mb = instar_hypercall{};
        mb->nr = INSTAR_HC_SET_LENGTH;
        mb->arg0 = 1ull << 40;
        hypercall_issue(mb);
        return Status::Ok;
    }
    case Attack::AddFileNotAllowed:
        raw_call(INSTAR_HC_ADD_FILE, 0, 0, addr("extent.vmdk"), 11);
        return Status::Ok;
    case Attack::AddFileWithSlash:
        raw_call(INSTAR_HC_ADD_FILE, 0, 0, addr("../x"), 4);
        return Status::Ok;
    case Attack::NextImageNotAllowed:
    case Attack::NextImageBadImage:
    case Attack::NextImageThenWrite: {
        instar_hypercall* mb = mailbox();
        *mb = instar_hypercall{};
        mb->nr = INSTAR_HC_NEXT_IMAGE;
        mb->arg0 = static_cast<Attack>(a[0]) == Attack::NextImageBadImage ? 7 : 0;
        const int64_t index = hypercall_issue(mb);
        if (index < 0) return Status::IoError;
        raw_call(INSTAR_HC_WRITE, static_cast<uint32_t>(index), 0, addr(page), 4096);
        return Status::Ok;
    }
    case Attack::RawSyscall: {
        // open(path, O_WRONLY | O_CREAT, 0600) straight to the kernel, past the runtime: a KVM guest
        // has no kernel (syscall jumps to address 0 and faults); the process sandbox's seccomp
        // strict mode kills the process.
        if (arg_len < 2 || a[arg_len - 1] != 0) return Status::Invalid;
        long ret;
        asm volatile("syscall" : "=a"(ret) : "a"(2L), "D"(a + 1), "S"(0101L), "d"(0600L) : "rcx", "r11", "memory");
        return ret >= 0 ? Status::Ok : Status::IoError;
    }
    case Attack::ShortMessage:
#ifdef INSTAR_GUEST_PROCESS
        process_syscall3(1, INSTAR_PROC_CHANNEL_FD, reinterpret_cast<long>(page), 7); // write
        process_syscall3(0, INSTAR_PROC_CHANNEL_FD, reinterpret_cast<long>(page), 88); // read: never answered
#endif
        return Status::Invalid;
    case Attack::SleepForAnswers: {
#ifdef INSTAR_GUEST_PROCESS
        *reinterpret_cast<volatile uint64_t*>(uintptr_t{INSTAR_PROC_SPIN}) = 0;
#endif
        uint64_t x = 0;
        for (int i = 0; i < 64; ++i) {
            if (raw_call(INSTAR_HC_READ, 0, 0, addr(page), sizeof page) != 0)
                return Status::IoError;
            for (size_t w = 0; w < sizeof page / 8; ++w) x ^= reinterpret_cast<const uint64_t*>(page)[w] + i;
        }
        return svc->send_record(INSTAR_REC_TEST, &x, sizeof x);
    }
    case Attack::UnreadAnswers:
#ifdef INSTAR_GUEST_PROCESS
        for (;;) {
            *reinterpret_cast<volatile uint32_t*>(uintptr_t{INSTAR_PROC_TURN}) = INSTAR_PROC_TURN_SLEEPING;
            instar_hypercall* mb = mailbox();
            *mb = instar_hypercall{};
            mb->nr = INSTAR_HC_READ;
            mb->gpa = addr(page);
            mb->len = 8;
            if (process_syscall3(1, INSTAR_PROC_CHANNEL_FD, reinterpret_cast<long>(mb), sizeof *mb) != sizeof *mb)
                return Status::IoError;
        }
#endif
        return Status::Invalid;
    case Attack::ReadAhead: {
        static uint8_t buf[70 * 64];
        int64_t out[2] = {0, 0};
        for (uint64_t i = 0; i < 70; ++i) {
            bool pending = false;
            if (read_ahead(64 * i, buf + 64 * i, 64, &pending) != 0) return Status::IoError;
            if (pending) ++out[0];
        }
        out[1] = raw_call(INSTAR_HC_SETTLE_READS, 0, 0, 0, 0);
        svc->send_record(INSTAR_REC_TEST, out, sizeof out);
        return svc->send_record(INSTAR_REC_TEST, buf, sizeof buf);
    }
    case Attack::ReadAheadUnsettled: {
        static uint8_t buf[64 * 16384];
        for (uint64_t i = 0; i < 64; ++i) {
            bool pending = false;
            if (read_ahead(16384 * i, buf + 16384 * i, 16384, &pending) != 0) return Status::IoError;
        }
        return Status::Ok;
    }
    case Attack::AllocationRuns:
    case Attack::AllocationRunsOutsideRam: {
        static instar_allocation_run runs[8];
        for (auto& r : runs) r = {0xdead, 0xbeef};
        instar_hypercall* mb = mailbox();
        *mb = instar_hypercall{};
        mb->nr = INSTAR_HC_ALLOCATION;
        mb->offset = 4096;
        mb->arg0 = INSTAR_ALLOCATION_RUNS;
        mb->gpa = static_cast<Attack>(a[0]) == Attack::AllocationRuns ? addr(runs) : (uint64_t{1} << 40);
        mb->len = sizeof runs;
        const int64_t ret = hypercall_issue(mb);
        const uint64_t head[3] = {static_cast<uint64_t>(ret), mb->out_flags, mb->out_size};
        uint8_t out[sizeof head + sizeof runs];
        __builtin_memcpy(out, head, sizeof head);
        __builtin_memcpy(out + sizeof head, runs, sizeof runs);
        return svc->send_record(INSTAR_REC_TEST, out, sizeof out);
    }
    case Attack::WriteSegments: {
        static uint8_t bytes[512 + 256 + 128];
        for (unsigned i = 0; i < 512; ++i) bytes[i] = static_cast<uint8_t>(i * 3);
        for (unsigned i = 0; i < 256; ++i) bytes[512 + i] = static_cast<uint8_t>(i * 5);
        for (unsigned i = 0; i < 128; ++i) bytes[768 + i] = static_cast<uint8_t>(i * 9);
        static instar_write_segment segs[INSTAR_MAX_WRITE_SEGMENTS + 1];
        segs[0] = {4096, addr(bytes), 512};
        segs[1] = {0, addr(bytes + 512), 256};
        segs[2] = {4096 + 256, addr(bytes + 768), 128};
        send_table(INSTAR_HC_WRITE_SEGMENTS, segs, 3, INSTAR_MAX_WRITE_SEGMENTS, static_cast<TableCase>(arg_len > 1 ? a[1] : 0));
        return Status::Ok;
    }
    case Attack::DiscardRanges: {
        static instar_range ranges[INSTAR_MAX_DISCARD_RANGES + 1];
        ranges[0] = {0, 512};
        ranges[1] = {4096, 1024};
        send_table(INSTAR_HC_DISCARD_RANGES, ranges, 2, INSTAR_MAX_DISCARD_RANGES, static_cast<TableCase>(arg_len > 1 ? a[1] : 0));
        return Status::Ok;
    }
    case Attack::SmallReads: {
        static uint8_t got[8 + 112 + 100 + 50 + 3 + 8];
        BlockDevice* out = svc->device(1);
        if (out == nullptr) return Status::Invalid;
        const uint64_t size = dev0->size();
        const struct { uint64_t offset, len; } before[] = {{0, 8}, {4090, 100}, {4101, 50}, {size - 3, 3}, {0, 112}};
        uint8_t* at = got;
        for (const auto& r : before) {
            if (dev0->read(r.offset, at, r.len) != Status::Ok) return Status::IoError;
            at += r.len;
        }
        for (unsigned i = 0; i < 16; ++i) page[i] = static_cast<uint8_t>(i * 13);
        if (out->write(0, page, 16) != Status::Ok) return Status::IoError;
        if (dev0->read(0, at, 8) != Status::Ok) return Status::IoError;
        return svc->send_record(INSTAR_REC_TEST, got, sizeof got);
    }
    case Attack::TouchArena:
        return touch_arena();
    case Attack::OwnReads: {
        static uint8_t got[8 + 3 * 112];
        BlockDevice* one = svc->device(1);
        BlockDevice* two = svc->device(2);
        if (one == nullptr || two == nullptr) return Status::Invalid;
        uint8_t* at = got;
        auto read112 = [&] {
            const Status st = one->read(0, at, 112);
            at += 112;
            return st;
        };
        if (one->read(0, at, 8) != Status::Ok) return Status::IoError;
        at += 8;
        if (read112() != Status::Ok) return Status::IoError;
        for (unsigned i = 0; i < 16; ++i) page[i] = static_cast<uint8_t>(i * 13);
        if (one->write(4, page, 16) != Status::Ok) return Status::IoError;
        if (read112() != Status::Ok) return Status::IoError;
        for (unsigned i = 0; i < 8; ++i) page[i] = static_cast<uint8_t>(i * 17);
        if (two->write(100, page, 8) != Status::Ok) return Status::IoError;
        if (read112() != Status::Ok) return Status::IoError;
        return svc->send_record(INSTAR_REC_TEST, got, sizeof got);
    }
    case Attack::RunArenaCode: {
        auto* code = static_cast<uint8_t*>(svc->allocator->allocate(16, 16));
        if (code == nullptr) return Status::NoMemory;
        code[0] = 0xC3; // ret
        asm volatile("" ::: "memory");
        reinterpret_cast<void (*)()>(code)();
        return Status::Ok;
    }
    case Attack::WriteModuleCode:
    case Attack::WriteRuntimeCode: {
        // The process sandbox maps code read+execute (W^X): the store must fault there. (The VM
        // maps all RAM writable, so under KVM it lands and the guest returns Ok.)
        auto* target = static_cast<Attack>(a[0]) == Attack::WriteModuleCode ? reinterpret_cast<volatile uint8_t*>(&exhaust_allocator)
                                                    : reinterpret_cast<volatile uint8_t*>(uintptr_t{INSTAR_GPA_RUNTIME});
        *target = *target;
        return Status::Ok;
    }
    case Attack::SseMath: {
        volatile double x = 1.5;
        double y = x * x * 4.0; // SSE2 registers: works only with CR4.OSFXSR set
        uint64_t bits = static_cast<uint64_t>(y * 1000.0);
        return svc->send_record(INSTAR_REC_TEST, &bits, sizeof bits);
    }
    }
    return Status::Invalid;
}

constinit const ModuleOps ops = {MODULE_ABI_VERSION, sizeof(ModuleOps), "hostile", nullptr, run, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};

} // namespace

extern "C" const ModuleOps* instar_module_entry(const Services* services) {
    svc = services;
    return &ops;
}
