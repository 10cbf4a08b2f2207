/* What the process-sandbox loader tells the host before it runs guest code (shared by
 * process_loader.c and vmm/process_sandbox.cpp). */
#ifndef INSTAR_PROCESS_LOADER_H
#define INSTAR_PROCESS_LOADER_H

#include <stdint.h>

#define LOADER_HELLO_MAGIC 0x434f5250u /* "PROC" */
/* Address space beyond guest RAM the loader may hold: its image, stack, signal stack, vDSO. */
#define LOADER_AS_SLACK (64ull << 20)

/* loader_hello.applied: what the loader managed to apply (namespaces may be refused). */
#define LOADER_FDS_CLOSED 0x1u
#define LOADER_NO_NEW_PRIVS 0x2u
#define LOADER_NS_USER 0x4u
#define LOADER_NS_MOUNT 0x8u
#define LOADER_NS_NET 0x10u
#define LOADER_NS_IPC 0x20u
#define LOADER_NS_PID 0x40u
#define LOADER_RLIMITS 0x80u
#define LOADER_SECCOMP_STRICT 0x100u

struct loader_hello {
    uint32_t magic;
    uint32_t applied;
};

#endif
