// Freestanding helpers format code shares: UTF-16 to UTF-8 (VHD and VHDX parent paths), reads
// padded with zeros past a device's end, message text, and a scoped arena buffer. Header-only, so a plugin's guest half needs nothing but the SDK headers.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

inline uint32_t utf16_unit_at(const uint8_t* src, size_t i, bool big_endian) {
    const uint8_t a = src[2 * i];
    const uint8_t b = src[2 * i + 1];
    return big_endian ? (static_cast<uint32_t>(a) << 8) | b : (static_cast<uint32_t>(b) << 8) | a;
}

// Converts `units` UTF-16 code units at `src` (stopping at the first NUL) into `dst`. Unpaired
// surrogates become U+FFFD, as Windows would display them. Returns false if `dst_cap` is too small.
inline bool utf16_to_utf8(const uint8_t* src, size_t units, bool big_endian, char* dst, size_t dst_cap,
                          size_t* dst_len) {
    size_t n = 0;
    for (size_t i = 0; i < units; ++i) {
        uint32_t c = utf16_unit_at(src, i, big_endian);
        if (c == 0)
            break;
        if (c >= 0xD800 && c < 0xDC00 && i + 1 < units) {
            const uint32_t lo = utf16_unit_at(src, i + 1, big_endian);
            if (lo >= 0xDC00 && lo < 0xE000) {
                c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                ++i;
            } else {
                c = 0xFFFD;
            }
        } else if (c >= 0xD800 && c < 0xE000) {
            c = 0xFFFD;
        }
        uint8_t out[4];
        size_t k;
        if (c < 0x80) {
            out[0] = static_cast<uint8_t>(c);
            k = 1;
        } else if (c < 0x800) {
            out[0] = static_cast<uint8_t>(0xC0 | (c >> 6));
            out[1] = static_cast<uint8_t>(0x80 | (c & 0x3F));
            k = 2;
        } else if (c < 0x10000) {
            out[0] = static_cast<uint8_t>(0xE0 | (c >> 12));
            out[1] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
            out[2] = static_cast<uint8_t>(0x80 | (c & 0x3F));
            k = 3;
        } else {
            out[0] = static_cast<uint8_t>(0xF0 | (c >> 18));
            out[1] = static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F));
            out[2] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
            out[3] = static_cast<uint8_t>(0x80 | (c & 0x3F));
            k = 4;
        }
        if (dst_cap - n < k)
            return false;
        for (size_t j = 0; j < k; ++j)
            dst[n + j] = static_cast<char>(out[j]);
        n += k;
    }
    *dst_len = n;
    return true;
}

// Appends NUL-terminated `text` to the NUL-terminated string in dst[cap] (cut at the end).
inline void append_text(char* dst, size_t cap, const char* text) {
    size_t n = 0;
    while (n + 1 < cap && dst[n] != 0)
        ++n;
    for (size_t i = 0; text[i] != 0 && n + 1 < cap; ++i)
        dst[n++] = text[i];
    if (cap != 0)
        dst[n] = 0;
}

// Writes `v` in `base` (10 or 16, lower case, no leading zeros: printf's %llu / %llx) to out[20]
// without a NUL; returns the digit count.
inline size_t format_unsigned(char* out, uint64_t v, unsigned base) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0);
    for (size_t i = 0; i < n; ++i)
        out[i] = digits[n - 1 - i];
    return n;
}

// Appends `v` in decimal (a message's number: qemu's PRIu64 / PRId64 of a non-negative value).
inline void append_decimal(char* dst, size_t cap, uint64_t v) {
    char out[21];
    out[format_unsigned(out, v, 10)] = 0;
    append_text(dst, cap, out);
}

// Appends `v` in lower-case hex without leading zeros (qemu's PRIx64).
inline void append_hex(char* dst, size_t cap, uint64_t v) {
    char out[21];
    out[format_unsigned(out, v, 16)] = 0;
    append_text(dst, cap, out);
}

// qemu's BDRV_MAX_LENGTH (INT64_MAX aligned down to 1 GiB): the block layer fails a request that
// ends past it (bdrv_check_request: EIO), and a disk larger is "File too large".
inline constexpr uint64_t QEMU_BDRV_MAX_LENGTH = 0x7fffffffc0000000ull;

// Whether qemu's block layer accepts a request of `len` bytes at `offset` (an int64 in qemu: an
// offset of 2^63 or more is negative there and fails too).
inline bool qemu_request_ok(uint64_t offset, uint64_t len) {
    return len <= QEMU_BDRV_MAX_LENGTH && offset <= QEMU_BDRV_MAX_LENGTH - len;
}

// Reads what exists of [offset, offset + len) of `dev` and zeros for the rest, as qemu's block layer
// reads past the end of a file (BlockDevice::read itself refuses such a range).
inline Status read_padded(BlockDevice& dev, uint64_t offset, void* buf, size_t len) {
    auto* dst = static_cast<uint8_t*>(buf);
    const uint64_t size = dev.size();
    size_t in = 0;
    if (offset < size)
        in = size - offset < len ? static_cast<size_t>(size - offset) : len;
    if (in > 0)
        if (const Status st = dev.read(offset, dst, in); st != Status::Ok)
            return st;
    if (in < len)
        __builtin_memset(dst + in, 0, len - in);
    return Status::Ok;
}

// Owns one allocation from a guest Allocator for the scope of a call (p is nullptr when the
// allocator is exhausted: check it).
struct ScopedBuffer {
    Allocator& alloc;
    size_t size;
    uint8_t* p;
    ScopedBuffer(Allocator& a, size_t n) : alloc(a), size(n), p(static_cast<uint8_t*>(a.allocate(n, 8))) {}
    ~ScopedBuffer() {
        if (p)
            alloc.deallocate(p, size);
    }
    ScopedBuffer(const ScopedBuffer&) = delete;
    ScopedBuffer& operator=(const ScopedBuffer&) = delete;
};

} // namespace instar::guest
