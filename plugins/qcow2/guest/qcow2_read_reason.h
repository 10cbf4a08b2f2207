// One line of text for a ReasonSink, built without libc: literal pieces and hexadecimal numbers.
#pragma once

#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// Longest reason kept: read_api.h's one-line bound (CREATE_MAX_REASON); longer text is cut.
inline constexpr size_t QCOW2_READ_MAX_REASON = 512;

class ReasonText {
public:
    ReasonText& add(const char* s) {
        while (*s != 0 && len_ < QCOW2_READ_MAX_REASON)
            buf_[len_++] = *s++;
        return *this;
    }
    // qemu's "%#" PRIx64: 0 prints as "0", anything else as 0x...
    ReasonText& hex(uint64_t v) {
        if (v == 0)
            return add("0");
        char digits[16];
        int n = 0;
        while (v != 0) {
            digits[n++] = "0123456789abcdef"[v & 15];
            v >>= 4;
        }
        add("0x");
        while (n > 0 && len_ < QCOW2_READ_MAX_REASON)
            buf_[len_++] = digits[--n];
        return *this;
    }
    ReasonText& dec(uint64_t v) {
        char digits[20];
        int n = 0;
        do {
            digits[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n > 0 && len_ < QCOW2_READ_MAX_REASON)
            buf_[len_++] = digits[--n];
        return *this;
    }
    // Hexadecimal without the 0x prefix (qemu's plain PRIx64).
    ReasonText& hex_bare(uint64_t v) {
        const size_t start = len_;
        hex(v);
        if (v != 0 && len_ - start >= 2) { // drop the "0x"
            for (size_t i = start; i + 2 < len_; ++i)
                buf_[i] = buf_[i + 2];
            len_ -= 2;
        }
        return *this;
    }
    void send(guest::ReasonSink* sink) const {
        if (sink != nullptr)
            sink->reason(buf_, len_);
    }
    const char* data() const { return buf_; }
    size_t size() const { return len_; }

private:
    char buf_[QCOW2_READ_MAX_REASON];
    size_t len_ = 0;
};

// Sends `text` to `sink` (when there is one) and returns `st`, for one-line error exits.
inline guest::Status fail(guest::ReasonSink* sink, guest::Status st, const char* text) {
    ReasonText r;
    r.add(text).send(sink);
    return st;
}

} // namespace instar::qcow2
