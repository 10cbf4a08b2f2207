// CPU exception stubs: the only guest code that runs at CPL 0. The host builds the IDT from the
// runtime header's table; each stub reports (vector, rip, error code, cr2) through INSTAR_HC_FAULT,
// which ends the run. Plain general-register instructions only: under software virtualization
// CPL-0 code is emulated. The stubs never return, so no state needs restoring.
#include "runtime.h"

// The mailbox offsets used below are pinned by static_asserts in guest_abi.h.
static_assert(offsetof(instar_hypercall, arg0) == 32 && offsetof(instar_hypercall, arg1) == 40);
static_assert(offsetof(instar_hypercall, arg2) == 48 && offsetof(instar_hypercall, arg3) == 56);
static_assert(INSTAR_GPA_MAILBOX == 0x9000 && INSTAR_HC_FAULT == 8 && INSTAR_GPA_DOORBELL == 0xE0000000);

// Every stub leaves the same frame: [vector, error code, rip, cs, rflags, rsp, ss].
asm(R"(
    .text
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .align 16
    .globl instar_isr_\n
instar_isr_\n:
    .if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushq $0
    .endif
    pushq $\n
    jmp instar_isr_common
    .endr
instar_isr_common:
    movl $0x9000, %edi
    movl $8, (%rdi)
    popq %rax
    movq %rax, 32(%rdi)
    popq %rax
    movq %rax, 48(%rdi)
    movq (%rsp), %rax
    movq %rax, 40(%rdi)
    movq %cr2, %rax
    movq %rax, 56(%rdi)
    movl $8, %eax
    movl $0xE0000000, %edx
    movl %eax, (%rdx)
1:  hlt
    jmp 1b

)");
