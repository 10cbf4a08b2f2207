// Guest runtime entry. The host starts the vCPU at header.entry in 64-bit mode at CPL 3, with
// rsp = INSTAR_GPA_STACK_TOP and rdi = the boot info; exceptions go to the stubs in idt.cpp.
#include "runtime.h"

asm(R"(
    .section .text.entry, "ax"
    .globl _start
    .type _start, @function
_start:
    andq $-16, %rsp
    xorl %ebp, %ebp
    call runtime_main
1:  jmp 1b
)");

// First bytes of the image (runtime.ld puts .instar_header first): struct instar_runtime_header,
// telling the host the entry and the exception stubs (idt.cpp) so it can build the IDT.
static_assert(INSTAR_RUNTIME_MAGIC == 0x4E555254u && INSTAR_GUEST_ABI_VERSION == 10u);
static_assert(offsetof(instar_runtime_header, exception_handlers) == 16 && INSTAR_EXCEPTION_VECTORS == 32);
asm(R"(
    .section .instar_header, "a"
    .long 0x4E555254, 10
    .quad _start
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad instar_isr_\n
    .endr
    .text
)");

using namespace instar::guest;

extern "C" [[noreturn]] void runtime_main(const instar_boot_info* boot) {
    if (boot->magic != INSTAR_BOOT_MAGIC || boot->abi_version != INSTAR_GUEST_ABI_VERSION) {
        log_str("runtime: boot info magic or ABI version mismatch");
        hc_exit(static_cast<int32_t>(Status::Invalid));
    }
    arena_init(boot->arena_base, boot->arena_size);
    devices_init(*boot);
    Status st = modules_init(*boot);
    if (st == Status::Ok) {
        uint32_t len = boot->arg_len <= INSTAR_MAX_OP_ARG ? boot->arg_len : INSTAR_MAX_OP_ARG;
        st = dispatch(boot->op, boot->arg, len);
    }
    hc_exit(static_cast<int32_t>(st));
}
