// The walks' byte scans (convert's zero detection, compare's equality and zero checks), in SSE2
// registers (x86-64's baseline) through the vector extension GCC and clang share (no header: the
// guest is freestanding; the fuzz targets build these with clang). GCC does not vectorise a byte
// loop with an early exit (that loop cost ~0.5 s per GiB in the guest), and a word-wise version
// spilled its eight words to the stack each step.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::convert {

typedef uint64_t ScanVector __attribute__((vector_size(16)));

// qemu's buffer_is_zero: four unaligned 16-byte loads OR-ed per 64 bytes, both halves tested at
// once, then a byte tail.
inline bool buffer_is_zero(const uint8_t* p, size_t len) {
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        ScanVector a, b, c, d;
        __builtin_memcpy(&a, p + i, 16); // movdqu: any alignment
        __builtin_memcpy(&b, p + i + 16, 16);
        __builtin_memcpy(&c, p + i + 32, 16);
        __builtin_memcpy(&d, p + i + 48, 16);
        const ScanVector any = (a | b) | (c | d);
        if ((any[0] | any[1]) != 0)
            return false;
    }
    for (; i < len; ++i)
        if (p[i] != 0)
            return false;
    return true;
}

// Whether a and b differ in their first n bytes: 128 bytes per step as eight vectors XOR-ed and
// OR-ed, one early exit per step, then a byte tail.
inline bool buffers_differ(const uint8_t* a, const uint8_t* b, size_t n) {
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        ScanVector x[8], y[8];
        __builtin_memcpy(x, a + i, sizeof x);
        __builtin_memcpy(y, b + i, sizeof y);
        const ScanVector d = ((x[0] ^ y[0]) | (x[1] ^ y[1])) | ((x[2] ^ y[2]) | (x[3] ^ y[3])) |
                             ((x[4] ^ y[4]) | (x[5] ^ y[5])) | ((x[6] ^ y[6]) | (x[7] ^ y[7]));
        if ((d[0] | d[1]) != 0)
            return true;
    }
    for (; i < n; ++i)
        if (a[i] != b[i])
            return true;
    return false;
}

} // namespace instar::convert
