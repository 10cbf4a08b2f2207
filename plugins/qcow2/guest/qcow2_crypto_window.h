// The LUKS header of an encrypted qcow2 as qemu reads it (qcow2_crypto_hdr_read_func): only the
// crypto header extension's bytes. A LUKS header or key material reaching past them is refused by
// qemu with "Request for data outside of extension header" when the image is opened with its key,
// whatever the LUKS code would have said; the opener passes the window to luks_unlock (header
// offset 0) with a HeldReason, and reports qemu's text when the window refused a read.
// Freestanding-clean.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

inline constexpr char OUTSIDE_CRYPTO_HEADER[] = "Request for data outside of extension header";

class CryptoHeaderWindow final : public guest::BlockDevice {
public:
    CryptoHeaderWindow(guest::BlockDevice& dev, uint64_t offset, uint64_t length)
        : dev_(dev), offset_(offset), length_(length) {}
    // Unbounded, so that the LUKS code's own "past the end" checks never answer before qemu's
    // bound: every read is checked here.
    uint64_t size() const override { return UINT64_MAX / 2; }
    guest::Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > length_ || len > length_ - offset || offset_ > UINT64_MAX - offset) {
            outside_ = true;
            return guest::Status::IoError;
        }
        return dev_.read(offset_ + offset, buf, len);
    }
    guest::Status write(uint64_t, const void*, size_t) override { return guest::Status::Unsupported; }
    bool outside() const { return outside_; }

private:
    guest::BlockDevice& dev_;
    uint64_t offset_, length_;
    bool outside_ = false;
};

// Keeps the reason the LUKS code gave (one per failure), to be forwarded only when qemu would have
// said it. Its messages are instar's own and short.
class HeldReason final : public guest::ReasonSink {
    static constexpr size_t HELD_REASON_BYTES = 256;

public:
    void reason(const char* text, size_t len) override {
        len_ = len < sizeof text_ ? len : sizeof text_;
        __builtin_memcpy(text_, text, len_);
    }
    void forward(guest::ReasonSink* to) const {
        if (to != nullptr && len_ != 0)
            to->reason(text_, len_);
    }

private:
    char text_[HELD_REASON_BYTES] = {};
    size_t len_ = 0;
};

// luks_unlock's result through the window: qemu's bound first, else what the LUKS code said.
inline void report_unlock(const CryptoHeaderWindow& window, const HeldReason& held, guest::ReasonSink* reasons) {
    if (window.outside())
        guest::say_reason(reasons, OUTSIDE_CRYPTO_HEADER);
    else
        held.forward(reasons);
}

} // namespace instar::qcow2
