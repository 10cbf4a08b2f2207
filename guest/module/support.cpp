// Linked into every guest module: the memory primitives compilers emit calls to. Hidden, so a
// module stays self-contained (only R_X86_64_RELATIVE relocations, no symbol lookup).
#include <stddef.h>

#define INSTAR_HIDDEN __attribute__((visibility("hidden")))

extern "C" {

INSTAR_HIDDEN void* memcpy(void* dst, const void* src, size_t n) {
    void* d = dst;
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

INSTAR_HIDDEN void* memmove(void* dst, const void* src, size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    auto* s = static_cast<const unsigned char*>(src);
    if (d <= s || d >= s + n) return memcpy(dst, src, n);
    unsigned char* de = d + n - 1;
    const unsigned char* se = s + n - 1;
    asm volatile("std\n\trep movsb\n\tcld" : "+D"(de), "+S"(se), "+c"(n) : : "memory");
    return dst;
}

INSTAR_HIDDEN void* memset(void* dst, int c, size_t n) {
    void* d = dst;
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

INSTAR_HIDDEN int memcmp(const void* a, const void* b, size_t n) {
    auto* x = static_cast<const unsigned char*>(a);
    auto* y = static_cast<const unsigned char*>(b);
    for (size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

// A pure virtual call in a module is a bug: make it a clean fault (ud2 -> #UD reported to the host).
INSTAR_HIDDEN void __cxa_pure_virtual() { __builtin_trap(); }

} // extern "C"
