// What Debian's libnettle.a imports besides memcpy/memset/memcmp (the module support library has
// those), for the guest module (checked with `nm -u`): its x86-64 "fat" dispatch reads an
// environment variable and may print when NETTLE_FAT_VERBOSE is set (never, here: no environment);
// assertions and the stack protector end the run.
#include <stddef.h>

extern "C" {
void* stderr = nullptr;
char* getenv(const char*) { return nullptr; }
char* secure_getenv(const char*) { return nullptr; }
size_t fwrite(const void*, size_t, size_t, void*) { return 0; }
int __fprintf_chk(void*, int, const char*, ...) { return 0; }
size_t strlen(const char* s) {
    size_t n = 0;
    while (s[n])
        ++n;
    return n;
}
char* strchr(const char* s, int c) {
    for (;; ++s) {
        if (*s == static_cast<char>(c))
            return const_cast<char*>(s);
        if (*s == 0)
            return nullptr;
    }
}
[[noreturn]] void __assert_fail(const char*, const char*, unsigned, const char*) { __builtin_trap(); }
[[noreturn]] void __stack_chk_fail() { __builtin_trap(); }
}
