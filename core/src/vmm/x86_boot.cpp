// Long-mode boot state: GDT, identity page tables, registers.
#include "vmm/x86_boot.h"

#include <cstring>

namespace instar::vmm::x86 {

namespace {
constexpr std::uint64_t ENTRIES_PER_TABLE = 512;
constexpr std::uint64_t FCW_DEFAULT = 0x37f;    // x87 reset: all exceptions masked, 64-bit precision
constexpr std::uint32_t MXCSR_DEFAULT = 0x1f80; // SSE reset: all exceptions masked
constexpr std::uint64_t RFLAGS_RESERVED = 0x2;  // bit 1 is always set; IF clear: no interrupts
constexpr std::uint64_t TSS_RSP0_OFFSET = 4;
constexpr std::uint64_t TSS_IOMAP_OFFSET = 102;

void put64(std::span<std::uint8_t> ram, std::uint64_t gpa, std::uint64_t value) {
    std::memcpy(ram.data() + gpa, &value, sizeof(value));
}
} // namespace

void write_boot_tables(std::span<std::uint8_t> ram,
                       std::span<const std::uint64_t, INSTAR_EXCEPTION_VECTORS> handlers, std::uint64_t limit) {
    // Mapped up to the limit RAM may grow to (INSTAR_HC_GROW_MEMORY); a page past the RAM there is
    // now faults into the host as an unbacked address, which ends the run.
    const std::uint64_t size = limit > ram.size() ? limit : ram.size();
    for (std::size_t i = 0; i < GDT.size(); ++i) put64(ram, INSTAR_GPA_GDT + i * 8, GDT[i]);
    // 64-bit TSS: only RSP0 matters (the stack exceptions from CPL 3 switch to).
    put64(ram, INSTAR_GPA_TSS + TSS_RSP0_OFFSET, INSTAR_GPA_EXCEPTION_STACK_TOP);
    const std::uint16_t iomap = TSS_NO_IO_BITMAP;
    std::memcpy(ram.data() + INSTAR_GPA_TSS + TSS_IOMAP_OFFSET, &iomap, sizeof iomap);
    for (std::size_t v = 0; v < handlers.size(); ++v) {
        const auto gate = idt_gate(handlers[v]);
        put64(ram, INSTAR_GPA_IDT + v * 16, gate[0]);
        put64(ram, INSTAR_GPA_IDT + v * 16 + 8, gate[1]);
    }

    const std::uint64_t flags = PTE_PRESENT | PTE_WRITABLE | PTE_USER;
    put64(ram, INSTAR_GPA_PML4, INSTAR_GPA_PDPT | flags);
    const std::uint64_t gib = 1ull << 30;
    const std::uint64_t pd_pages = (size + gib - 1) / gib;
    for (std::uint64_t i = 0; i < pd_pages; ++i) {
        put64(ram, INSTAR_GPA_PDPT + i * 8, (INSTAR_GPA_PD + i * INSTAR_PAGE_SIZE) | flags);
    }
    // The first 2 MiB use 4 KiB pages so single pages can be left out; the rest are 2 MiB pages.
    put64(ram, INSTAR_GPA_PD, INSTAR_GPA_PT_LOW | flags);
    for (std::uint64_t j = 1; j < size / INSTAR_LARGE_PAGE_SIZE; ++j) {
        put64(ram, INSTAR_GPA_PD + j * 8, (j * INSTAR_LARGE_PAGE_SIZE) | flags | PTE_LARGE);
    }
    // The doorbell: one 2 MiB page with no memory behind it, in the fourth page directory.
    const std::uint64_t doorbell_pd = INSTAR_GPA_DOORBELL / gib;
    static_assert(INSTAR_GPA_DOORBELL / (1ull << 30) < INSTAR_PD_PAGES);
    static_assert(INSTAR_GPA_DOORBELL >= INSTAR_MAX_GUEST_MEMORY);
    put64(ram, INSTAR_GPA_PDPT + doorbell_pd * 8, (INSTAR_GPA_PD + doorbell_pd * INSTAR_PAGE_SIZE) | flags);
    put64(ram, INSTAR_GPA_PD + (INSTAR_GPA_DOORBELL / INSTAR_LARGE_PAGE_SIZE) * 8,
          INSTAR_GPA_DOORBELL | flags | PTE_LARGE);
    for (std::uint64_t k = 0; k < ENTRIES_PER_TABLE; ++k) {
        const std::uint64_t page = k * INSTAR_PAGE_SIZE;
        if (page == 0 || page == INSTAR_GPA_STACK_GUARD) continue; // null and stack-overflow guards
        put64(ram, INSTAR_GPA_PT_LOW + k * 8, page | flags);
    }
}

kvm_segment segment_from_gdt(std::uint64_t entry, std::uint16_t index) {
    kvm_segment s{};
    s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
    std::uint32_t limit = static_cast<std::uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
    s.g = (entry >> 55) & 1;
    s.limit = s.g ? (limit << 12) | 0xfff : limit;
    s.dpl = (entry >> 45) & 3;
    s.selector = static_cast<std::uint16_t>(index * 8 | s.dpl); // RPL = DPL
    s.type = (entry >> 40) & 0xf;
    s.present = (entry >> 47) & 1;
    s.db = (entry >> 54) & 1;
    s.s = (entry >> 44) & 1;
    s.l = (entry >> 53) & 1;
    s.avl = (entry >> 52) & 1;
    s.unusable = s.present ? 0 : 1;
    return s;
}

void set_boot_sregs(kvm_sregs& sregs) {
    sregs.gdt.base = INSTAR_GPA_GDT;
    sregs.gdt.limit = static_cast<std::uint16_t>(GDT.size() * 8 - 1);
    sregs.idt.base = INSTAR_GPA_IDT;
    sregs.idt.limit = static_cast<std::uint16_t>(INSTAR_EXCEPTION_VECTORS * 16 - 1);
    sregs.cs = segment_from_gdt(GDT[GDT_USER_CODE_INDEX], GDT_USER_CODE_INDEX);
    const kvm_segment data = segment_from_gdt(GDT[GDT_USER_DATA_INDEX], GDT_USER_DATA_INDEX);
    sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs = data;
    sregs.fs.base = INSTAR_GPA_TLS; // fs:0x28 is the stack-protector canary Debian's libz.a reads
    sregs.tr = segment_from_gdt(GDT[GDT_TSS_INDEX], GDT_TSS_INDEX);
    sregs.cr0 = BOOT_CR0;
    sregs.cr3 = INSTAR_GPA_PML4;
    sregs.cr4 = BOOT_CR4;
    sregs.efer = BOOT_EFER;
}

kvm_regs boot_regs(std::uint64_t entry) {
    kvm_regs r{};
    r.rip = entry;
    r.rsp = INSTAR_GPA_STACK_TOP;
    r.rdi = INSTAR_GPA_BOOT_INFO;
    r.rflags = RFLAGS_RESERVED;
    return r;
}

kvm_fpu boot_fpu() {
    kvm_fpu f{};
    f.fcw = FCW_DEFAULT;
    f.mxcsr = MXCSR_DEFAULT;
    return f;
}

} // namespace instar::vmm::x86
