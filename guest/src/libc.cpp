// The few libc/ABI symbols the runtime and Debian's libz.a need: memory primitives and traps.
#include "runtime.h"

extern "C" {

// rep movsb/stosb: fast on every CPU with ERMS, and the compiler cannot turn them back into calls.
void* memcpy(void* dst, const void* src, size_t n) {
    void* d = dst;
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void* memmove(void* dst, const void* src, size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    auto* s = static_cast<const unsigned char*>(src);
    if (d <= s || d >= s + n) return memcpy(dst, src, n);
    // Overlapping with dst above src: copy backwards.
    unsigned char* de = d + n - 1;
    const unsigned char* se = s + n - 1;
    asm volatile("std\n\trep movsb\n\tcld" : "+D"(de), "+S"(se), "+c"(n) : : "memory");
    return dst;
}

void* memset(void* dst, int c, size_t n) {
    void* d = dst;
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
    auto* x = static_cast<const unsigned char*>(a);
    auto* y = static_cast<const unsigned char*>(b);
    for (size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

size_t strlen(const char* s) {
    size_t n = 0;
    while (s[n] != '\0') ++n;
    return n;
}

// Debian builds libz.a with -fstack-protector-strong; the host put a random canary at fs:0x28.
[[noreturn]] void __stack_chk_fail() {
    instar::guest::log_str("runtime: stack smashing detected");
    instar::guest::hc_exit(static_cast<int32_t>(instar::guest::Status::Corrupt));
}

[[noreturn]] void __cxa_pure_virtual() {
    instar::guest::log_str("runtime: pure virtual call");
    instar::guest::hc_exit(static_cast<int32_t>(instar::guest::Status::Invalid));
}

} // extern "C"
