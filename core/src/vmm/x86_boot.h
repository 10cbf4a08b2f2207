// Long-mode boot state written by the host: GDT, identity page tables, control registers, segments.
// Pure functions over a RAM buffer and KVM structs, so tests can assert exact words without KVM.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <span>

#include <instar/guest_abi.h>

namespace instar::vmm::x86 {

// A GDT descriptor from the 16 flag bits (access byte + flags nibble), base and 20-bit limit.
constexpr std::uint64_t gdt_entry(std::uint16_t flags, std::uint32_t base, std::uint32_t limit) {
    return ((std::uint64_t(base) & 0xff000000u) << (56 - 24)) | ((std::uint64_t(flags) & 0x0000f0ffu) << 40) |
           ((std::uint64_t(limit) & 0x000f0000u) << (48 - 16)) | ((std::uint64_t(base) & 0x00ffffffu) << 16) |
           (std::uint64_t(limit) & 0x0000ffffu);
}

inline constexpr std::uint16_t GDT_KERNEL_CODE_INDEX = 1; // exception stubs (CPL 0)
inline constexpr std::uint16_t GDT_KERNEL_DATA_INDEX = 2;
inline constexpr std::uint16_t GDT_USER_CODE_INDEX = 3;   // everything else (CPL 3)
inline constexpr std::uint16_t GDT_USER_DATA_INDEX = 4;
inline constexpr std::uint16_t GDT_TSS_INDEX = 5;         // 16 bytes: entries 5 and 6
inline constexpr std::uint32_t TSS_LIMIT = 103;           // a 64-bit TSS without I/O bitmap
inline constexpr std::uint16_t TSS_NO_IO_BITMAP = 104;    // I/O map base past the limit: none

// null; kernel code (L, P, DPL 0, exec/read, accessed); kernel data (G, D/B, P, read/write,
// accessed); the same two at DPL 3; a busy 64-bit TSS at INSTAR_GPA_TSS (low and high halves).
inline constexpr std::array<std::uint64_t, 7> GDT = {
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0xa0fb, 0, 0xfffff),
    gdt_entry(0xc0f3, 0, 0xfffff),
    gdt_entry(0x008b, static_cast<std::uint32_t>(INSTAR_GPA_TSS), TSS_LIMIT),
    INSTAR_GPA_TSS >> 32,
};

// A 64-bit interrupt gate (present, DPL 0, type 0xE) to `handler` in the kernel code segment:
// only CPU exceptions can use it (an `int n` from user mode is a #GP).
constexpr std::array<std::uint64_t, 2> idt_gate(std::uint64_t handler) {
    constexpr std::uint64_t selector = GDT_KERNEL_CODE_INDEX * 8;
    constexpr std::uint64_t type_attr = 0x8e;
    return {(handler & 0xffff) | (selector << 16) | (type_attr << 40) | (((handler >> 16) & 0xffff) << 48),
            handler >> 32};
}

// Control register and EFER bits used at boot.
inline constexpr std::uint64_t CR0_PE = 1ull << 0;  // protected mode
inline constexpr std::uint64_t CR0_MP = 1ull << 1;  // wait/fwait honour TS (x87/SSE)
inline constexpr std::uint64_t CR0_ET = 1ull << 4;
inline constexpr std::uint64_t CR0_NE = 1ull << 5;  // native FPU errors
inline constexpr std::uint64_t CR0_WP = 1ull << 16;
inline constexpr std::uint64_t CR0_PG = 1ull << 31;
inline constexpr std::uint64_t CR4_PAE = 1ull << 5;
inline constexpr std::uint64_t CR4_OSFXSR = 1ull << 9;     // SSE instructions allowed (zlib)
inline constexpr std::uint64_t CR4_OSXMMEXCPT = 1ull << 10; // SIMD exceptions as #XM
inline constexpr std::uint64_t EFER_LME = 1ull << 8;
inline constexpr std::uint64_t EFER_LMA = 1ull << 10;

inline constexpr std::uint64_t BOOT_CR0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
inline constexpr std::uint64_t BOOT_CR4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
inline constexpr std::uint64_t BOOT_EFER = EFER_LME | EFER_LMA;

// Page-table entry bits.
inline constexpr std::uint64_t PTE_PRESENT = 1ull << 0;
inline constexpr std::uint64_t PTE_WRITABLE = 1ull << 1;
inline constexpr std::uint64_t PTE_USER = 1ull << 2;  // the guest runs at CPL 3
inline constexpr std::uint64_t PTE_LARGE = 1ull << 7; // 2 MiB page in a page directory

// Writes the GDT, TSS, IDT (exception gates to `handlers`), the doorbell mapping and identity page tables for `ram` (its size a
// multiple of 2 MiB, at most INSTAR_MAX_GUEST_MEMORY) at the addresses in guest_abi.h. Page 0 and
// the stack guard page stay not-present; nothing past the end of RAM, or past `limit` when RAM may
// grow that far (a multiple of 2 MiB, at most INSTAR_MAX_GUEST_MEMORY), is mapped.
void write_boot_tables(std::span<std::uint8_t> ram,
                       std::span<const std::uint64_t, INSTAR_EXCEPTION_VECTORS> handlers, std::uint64_t limit = 0);

// A KVM segment from a GDT descriptor (as the CPU would load it).
kvm_segment segment_from_gdt(std::uint64_t entry, std::uint16_t index);

// Long mode, paging, SSE, flat CPL-3 segments, TSS, IDT, FS base at INSTAR_GPA_TLS; keeps
// unrelated fields.
void set_boot_sregs(kvm_sregs& sregs);

// rip = entry, rsp = INSTAR_GPA_STACK_TOP, rdi = INSTAR_GPA_BOOT_INFO, interrupts off.
kvm_regs boot_regs(std::uint64_t entry);

// x87/SSE reset state: FCW 0x37f, MXCSR 0x1f80 (all exceptions masked).
kvm_fpu boot_fpu();

} // namespace instar::vmm::x86
