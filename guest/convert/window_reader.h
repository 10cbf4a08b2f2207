// A byte window of a disk read as a disk of its own: what `dd` copies (qemu-img dd's
// [skip * bs, min(size, count * bs)) of its input, docs/dd.md). The window may start and end at any
// byte; the convert engine counts 512-byte sectors, so block status is shaped to be exact per
// sector of the window (see status()).
#pragma once

#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::convert {

class WindowReader final : public guest::ImageReader {
public:
    // `inner` is the whole composed disk (a ChainImageReader): Data or Zero, never Unallocated.
    // Bytes of the window past inner's virtual size read as zeros (qemu counts a raw input's size
    // in whole sectors, instar's raw reader in bytes).
    WindowReader(guest::ImageReader& inner, uint64_t offset, uint64_t length)
        : inner_(inner), offset_(offset), length_(length) {}

    uint64_t virtual_size() const override { return length_; }
    // inner's answer, shifted. When the window starts inside a sector of inner's, a Zero run that
    // ends inside one of the window's sectors is cut back to that sector's start (a caller rounding
    // it up to whole sectors would zero data); a run too short for that is reported as Data, which
    // is always safe (the bytes are read).
    guest::Status status(uint64_t offset, uint64_t length, guest::Extent* out) override;
    guest::Status read(uint64_t offset, void* buf, size_t len) override;
    void close() override {}

private:
    guest::ImageReader& inner_;
    uint64_t offset_;
    uint64_t length_;
};

} // namespace instar::convert
