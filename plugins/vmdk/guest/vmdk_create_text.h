// A bounded text writer for create: printf's %s, %x, %PRId64 and %u as qemu's descriptor template
// uses them, into a fixed buffer that is either flushed to a device (the descriptor) or truncated
// (an error message).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/format_api.h>
#include <instar/guest/format_util.h>

namespace instar::vmdk {

class TextWriter {
public:
    // Flushes to `dev` starting at `offset` whenever `cap` bytes are pending (dev may be nullptr:
    // then text past `cap` is dropped, as for a reason line).
    TextWriter(char* buf, size_t cap, guest::BlockDevice* dev, uint64_t offset)
        : buf_(buf), cap_(cap), dev_(dev), offset_(offset) {}

    void put(const char* s, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            if (n_ == cap_) {
                if (dev_ == nullptr)
                    return; // a reason line: the rest is dropped
                flush();
            }
            buf_[n_++] = s[i];
        }
    }
    void put(const char* s) { put(s, length(s)); }
    void put_u64(uint64_t v) {
        char out[20];
        put(out, guest::format_unsigned(out, v, 10));
    }
    void put_i64(int64_t v) {
        if (v < 0) {
            put("-", 1);
            put_u64(0 - static_cast<uint64_t>(v));
        } else {
            put_u64(static_cast<uint64_t>(v));
        }
    }
    void put_hex32(uint32_t v) { // "%x": lower case, no leading zeros
        char out[20];
        put(out, guest::format_unsigned(out, v, 16));
    }
    // Writes what is pending; the first failure sticks and is returned from then on.
    guest::Status flush() {
        if (dev_ != nullptr && n_ != 0 && status_ == guest::Status::Ok)
            status_ = dev_->write(offset_, buf_, n_);
        offset_ += n_;
        written_ += n_;
        n_ = 0;
        return status_;
    }
    // Bytes produced so far (flushed or pending).
    uint64_t total() const { return written_ + n_; }
    const char* data() const { return buf_; }
    size_t pending() const { return n_; }

    static size_t length(const char* s) {
        size_t n = 0;
        while (s[n] != 0)
            ++n;
        return n;
    }

private:
    char* buf_;
    size_t cap_;
    guest::BlockDevice* dev_;
    uint64_t offset_;
    size_t n_ = 0;
    uint64_t written_ = 0;
    guest::Status status_ = guest::Status::Ok;
};

} // namespace instar::vmdk
