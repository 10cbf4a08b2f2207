// Exact GDT words, page-table entries and boot registers (no KVM needed).
#include <cpuid.h>
#include <cstring>
#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/kvm_system.h"
#include "vmm/x86_boot.h"
#include "vmm_test_support.h"

using namespace instar::vmm::x86;

namespace {
std::uint64_t word_at(std::span<const std::uint8_t> ram, std::uint64_t gpa) {
    std::uint64_t v = 0;
    std::memcpy(&v, ram.data() + gpa, 8);
    return v;
}
// Stand-in exception handlers: vector v at 0x100000 + 16 * v.
constexpr std::array<std::uint64_t, INSTAR_EXCEPTION_VECTORS> HANDLERS = [] {
    std::array<std::uint64_t, INSTAR_EXCEPTION_VECTORS> h{};
    for (std::size_t v = 0; v < h.size(); ++v) h[v] = 0x100000 + 16 * v;
    return h;
}();

} // namespace

TEST_SUITE("x86_boot") {

TEST_CASE("GDT descriptors are the exact long-mode words") {
    REQUIRE(GDT.size() == 7);
    CHECK(GDT[0] == 0x0000000000000000ull);
    CHECK(GDT[1] == 0x00af9b000000ffffull); // kernel code, 64-bit
    CHECK(GDT[2] == 0x00cf93000000ffffull); // kernel data
    CHECK(GDT[3] == 0x00affb000000ffffull); // user code, 64-bit, DPL 3
    CHECK(GDT[4] == 0x00cff3000000ffffull); // user data, DPL 3
    CHECK(GDT[5] == 0x00008b00d0000067ull); // busy 64-bit TSS at 0xd000, limit 103
    CHECK(GDT[6] == 0x0000000000000000ull); // TSS base bits 63:32
    CHECK(gdt_entry(0x8093, 0x12345678, 0xabcde) == 0x128a93345678bcdeull);
}

TEST_CASE("IDT gates are the exact interrupt-gate words") {
    const auto gate = idt_gate(0x0000123456789abcull);
    CHECK(gate[0] == 0x56788e0000089abcull);
    CHECK(gate[1] == 0x0000000000001234ull);
    CHECK(idt_gate(0x100e00)[0] == 0x00108e0000080e00ull);
}

TEST_CASE("segments decode from the GDT as the CPU loads them") {
    kvm_segment kcs = segment_from_gdt(GDT[1], 1);
    CHECK(kcs.selector == 0x08);
    CHECK(kcs.dpl == 0);
    CHECK(kcs.l == 1);
    kvm_segment cs = segment_from_gdt(GDT[3], 3);
    CHECK(cs.selector == 0x1b);
    CHECK(cs.base == 0);
    CHECK(cs.limit == 0xffffffffu);
    CHECK(cs.type == 0xb);
    CHECK(cs.present == 1);
    CHECK(cs.dpl == 3);
    CHECK(cs.db == 0);
    CHECK(cs.s == 1);
    CHECK(cs.l == 1);
    CHECK(cs.g == 1);
    kvm_segment ds = segment_from_gdt(GDT[4], 4);
    CHECK(ds.selector == 0x23);
    CHECK(ds.type == 0x3);
    CHECK(ds.dpl == 3);
    CHECK(ds.db == 1);
    CHECK(ds.l == 0);
    kvm_segment tr = segment_from_gdt(GDT[5], 5);
    CHECK(tr.selector == 0x28);
    CHECK(tr.base == INSTAR_GPA_TSS);
    CHECK(tr.limit == 103);
    CHECK(tr.g == 0);
    CHECK(tr.type == 0xb);
    CHECK(tr.s == 0);
    CHECK(segment_from_gdt(GDT[0], 0).unusable == 1);
}

TEST_CASE("identity page tables for 256 MiB") {
    std::vector<std::uint8_t> ram(256ull << 20);
    write_boot_tables(ram, HANDLERS);
    for (int i = 0; i < 7; ++i) CHECK(word_at(ram, INSTAR_GPA_GDT + 8 * i) == GDT[i]);
    CHECK(word_at(ram, INSTAR_GPA_TSS + 4) == INSTAR_GPA_EXCEPTION_STACK_TOP); // RSP0
    CHECK(ram[INSTAR_GPA_TSS + 102] == 104);                                  // no I/O bitmap
    CHECK(word_at(ram, INSTAR_GPA_IDT) == 0x00108e0000080000ull);             // vector 0 -> 0x100000
    CHECK(word_at(ram, INSTAR_GPA_IDT + 14 * 16) == 0x00108e00000800e0ull);   // #PF -> 0x1000e0
    CHECK(word_at(ram, INSTAR_GPA_IDT + 14 * 16 + 8) == 0);
    CHECK(word_at(ram, INSTAR_GPA_IDT + 32 * 16) == 0);                       // no other vectors
    CHECK(word_at(ram, INSTAR_GPA_PDPT + 3 * 8) == 0x7007);                   // doorbell directory
    CHECK(word_at(ram, INSTAR_GPA_PD + 3 * 4096 + 256 * 8) == 0xe0000087ull); // doorbell page
    CHECK(word_at(ram, INSTAR_GPA_PML4) == 0x3007);
    CHECK(word_at(ram, INSTAR_GPA_PML4 + 8) == 0);
    CHECK(word_at(ram, INSTAR_GPA_PDPT) == 0x4007);
    CHECK(word_at(ram, INSTAR_GPA_PDPT + 8) == 0); // 256 MiB needs one page directory
    CHECK(word_at(ram, INSTAR_GPA_PD) == 0x8007);  // first 2 MiB: 4 KiB pages
    CHECK(word_at(ram, INSTAR_GPA_PD + 8) == 0x200087);
    CHECK(word_at(ram, INSTAR_GPA_PD + 127 * 8) == 0xfe00087); // last 2 MiB page of RAM
    CHECK(word_at(ram, INSTAR_GPA_PD + 128 * 8) == 0);         // nothing past the end of RAM
    CHECK(word_at(ram, INSTAR_GPA_PT_LOW) == 0);               // null page not present
    CHECK(word_at(ram, INSTAR_GPA_PT_LOW + 8) == 0x1007);
    CHECK(word_at(ram, INSTAR_GPA_PT_LOW + 0xe * 8) == 0xe007);
    CHECK(word_at(ram, INSTAR_GPA_PT_LOW + 0xf * 8) == 0);     // stack guard page not present
    CHECK(word_at(ram, INSTAR_GPA_PT_LOW + 0x10 * 8) == 0x10007);
    CHECK(word_at(ram, INSTAR_GPA_PT_LOW + 511 * 8) == 0x1ff007);
}

TEST_CASE("page tables for 3 GiB use three page directories") {
    auto mem = instar::vmm::GuestMemory::create(INSTAR_MAX_GUEST_MEMORY); // lazily backed: cheap
    REQUIRE(mem.ok());
    std::span<std::uint8_t> ram(mem.value().host_base(), mem.value().size());
    write_boot_tables(ram, HANDLERS);
    CHECK(word_at(ram, INSTAR_GPA_PDPT + 8) == 0x5007);
    CHECK(word_at(ram, INSTAR_GPA_PDPT + 16) == 0x6007);
    CHECK(word_at(ram, INSTAR_GPA_PDPT + 24) == 0x7007); // only the doorbell in the 4th GiB
    CHECK(word_at(ram, INSTAR_GPA_PD + 512 * 8) == 0x40000087); // 1 GiB, in the second directory
    CHECK(word_at(ram, INSTAR_GPA_PD + (3 * 512 - 1) * 8) == 0xbfe00087);
}

TEST_CASE("RAM that may grow is mapped up to its limit from the boot") {
    std::vector<std::uint8_t> ram(16ull << 20);
    write_boot_tables(ram, HANDLERS, 64ull << 20); // 16 MiB now, up to 64 MiB later
    CHECK(word_at(ram, INSTAR_GPA_PD + 7 * 8) == 0xe00087);   // the last 2 MiB page there is now
    CHECK(word_at(ram, INSTAR_GPA_PD + 8 * 8) == 0x1000087);  // and the first it may grow into
    CHECK(word_at(ram, INSTAR_GPA_PD + 31 * 8) == 0x3e00087); // the last below the limit
    CHECK(word_at(ram, INSTAR_GPA_PD + 32 * 8) == 0);         // nothing past the limit
    std::vector<std::uint8_t> alone(16ull << 20);
    write_boot_tables(alone, HANDLERS); // no limit: RAM alone, as before
    CHECK(word_at(alone, INSTAR_GPA_PD + 8 * 8) == 0);
}

TEST_CASE("control registers and registers at boot") {
    CHECK(BOOT_CR0 == 0x80010033ull);
    CHECK(BOOT_CR4 == 0x620ull);
    CHECK(BOOT_EFER == 0x500ull);
    kvm_sregs s{};
    set_boot_sregs(s);
    CHECK(s.cr0 == BOOT_CR0);
    CHECK(s.cr3 == INSTAR_GPA_PML4);
    CHECK(s.cr4 == BOOT_CR4);
    CHECK(s.efer == BOOT_EFER);
    CHECK(s.gdt.base == INSTAR_GPA_GDT);
    CHECK(s.gdt.limit == 55);
    CHECK(s.idt.base == INSTAR_GPA_IDT);
    CHECK(s.idt.limit == 511); // 32 gates
    CHECK(s.cs.selector == 0x1b); // CPL 3 from the first instruction
    CHECK(s.ss.selector == 0x23);
    CHECK(s.ds.selector == 0x23);
    CHECK(s.fs.base == INSTAR_GPA_TLS);
    CHECK(s.tr.selector == 0x28);
    kvm_regs r = boot_regs(0x100000);
    CHECK(r.rip == 0x100000);
    CHECK(r.rsp == INSTAR_GPA_STACK_TOP);
    CHECK(r.rdi == INSTAR_GPA_BOOT_INFO);
    CHECK(r.rflags == 0x2); // IOPL 0, interrupts off
    kvm_fpu f = boot_fpu();
    CHECK(f.fcw == 0x37f);
    CHECK(f.mxcsr == 0x1f80);
}

} // TEST_SUITE

TEST_SUITE("x86_boot") {

// The guest's CPUID: baseline features plus what the guest's libraries pick by CPUID and needs no
// XSAVE state (nettle: AES-NI, SHA-NI; zstd: BMI2), each only where the host has it.
TEST_CASE("guest CPUID passes AES-NI, SHA-NI and BMI through, and nothing that needs XSAVE") {
    unsigned a = 0, b = 0, c = 0, d = 0;
    __cpuid_count(0, 0, a, b, c, d);
    const bool host7 = a >= 7;
    __cpuid_count(1, 0, a, b, c, d);
    const unsigned host1_ecx = c;
    unsigned host7_ebx = 0;
    if (host7) {
        __cpuid_count(7, 0, a, b, c, d);
        host7_ebx = b;
    }
    const auto entries = instar::vmm::guest_cpuid_entries();
    auto find = [&](std::uint32_t fn) -> const kvm_cpuid_entry2* {
        for (const auto& e : entries)
            if (e.function == fn)
                return &e;
        return nullptr;
    };
    const auto* l0 = find(0);
    REQUIRE(l0 != nullptr);
    CHECK(l0->eax == (host7 ? 7u : 1u));
    const auto* l1 = find(1);
    REQUIRE(l1 != nullptr);
    CHECK((l1->ecx & (1u << 25)) == (host1_ecx & (1u << 25)));           // AES
    CHECK((l1->ecx & (1u << 26 | 1u << 27 | 1u << 28)) == 0);             // XSAVE, OSXSAVE, AVX
    const auto* l7 = find(7);
    CHECK((l7 != nullptr) == host7);
    if (l7 != nullptr) {
        CHECK(l7->index == 0);
        CHECK(l7->flags == KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        CHECK(l7->eax == 0);
        CHECK(l7->ebx == (host7_ebx & (1u << 3 | 1u << 8 | 1u << 29)));   // BMI1, BMI2, SHA (no AVX2, AVX-512)
        CHECK(l7->ecx == 0);
        CHECK(l7->edx == 0);
    }
}

} // TEST_SUITE
