/* What the process-sandbox loader tells the host before it runs guest code (shared by
 * process_loader.c and vmm/process_sandbox.cpp). */
#ifndef INSTAR_PROCESS_LOADER_H
#define INSTAR_PROCESS_LOADER_H

#include <stdint.h>

#define LOADER_HELLO_MAGIC 0x434f5250u /* "PROC" */
/* Address space beyond guest RAM the loader may hold: its image, stack, signal stack, vDSO. */
#define LOADER_AS_SLACK (64ull << 20)

/* loader_hello.applied: what the loader managed to apply (the user namespace may be refused). */
#define LOADER_FDS_CLOSED 0x1u
#define LOADER_NO_NEW_PRIVS 0x2u
#define LOADER_NS_USER 0x4u
/* 0x8 to 0x40 named the mount, network, IPC and PID namespaces the loader no longer makes. */
#define LOADER_RLIMITS 0x80u
#define LOADER_SECCOMP_STRICT 0x100u

struct loader_hello {
    uint32_t magic;
    uint32_t applied;
};

#endif
