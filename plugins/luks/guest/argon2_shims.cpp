// What Debian's libargon2.a imports from libc besides memcpy/memset/strlen (nettle_shims.cpp and
// the module support library have those), for the guest module (checked with `nm -u`). instar
// calls argon2_ctx only, with threads = 1 and its own allocate/free callbacks (luks2_unlock.cpp), so
// argon2 never starts a thread, never mallocs and never encodes a hash string: these refuse.
#include <stddef.h>

extern "C" {
void* malloc(size_t) { return nullptr; }
void* calloc(size_t, size_t) { return nullptr; }
void free(void*) {}
int pthread_create(void*, const void*, void* (*)(void*), void*) { return 1; }
int pthread_join(unsigned long, void**) { return 1; }
[[noreturn]] void pthread_exit(void*) { __builtin_trap(); }
int __sprintf_chk(char*, int, size_t, const char*, ...) { return -1; }
int strncmp(const char* a, const char* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
        if (x != y)
            return x < y ? -1 : 1;
        if (x == 0)
            return 0;
    }
    return 0;
}
}
