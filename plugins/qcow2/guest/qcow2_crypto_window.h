// The LUKS header of an encrypted qcow2 as qemu reads it (qcow2_crypto_hdr_read_func): only the
// crypto header extension's bytes. A LUKS header or key material reaching past them is refused by
// qemu with "Request for data outside of extension header" when the image is opened with its key,
// whatever the LUKS code would have said. unlock_in_extension is the one way the reader and the
// existing-image writer unlock. Freestanding-clean.
#pragma once

#include "qcow2_extensions.h"

#include "luks_format.h"

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

// luks_unlock of the LUKS header in the crypto header extension, read through the window (header
// offset 0); on failure `reasons` gets qemu's bound first, else what the LUKS code said.
inline guest::Status unlock_in_extension(guest::BlockDevice& dev, const Qcow2Extensions& ext, guest::Allocator& alloc,
                                         const uint8_t* secret, size_t secret_len, luks::LuksHeader* header,
                                         luks::SectorCipher* cipher, guest::ReasonSink* reasons, uint8_t* master_key,
                                         uint32_t qemu_version) {
    CryptoHeaderWindow window(dev, ext.crypto_header_offset, ext.crypto_header_length);
    HeldReason held;
    const guest::Status st =
        luks::luks_unlock(window, 0, alloc, secret, secret_len, header, cipher, &held, master_key, qemu_version);
    if (st != guest::Status::Ok) {
        if (window.outside())
            guest::say_reason(reasons, OUTSIDE_CRYPTO_HEADER);
        else
            held.forward(reasons);
    }
    return st;
}

} // namespace instar::qcow2
