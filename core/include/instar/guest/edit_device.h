// An edit's view of an output device with its current length: an output device's size() is only its
// limit (edit_api.h, EditRequest::image_length), while format readers (probe, load, bounds checks)
// need the file's real length. Writes pass through and extend the tracked length; set_length goes
// through the EditHost and updates it. Also convert -n's and commit's target and rebase's overlay
// (guest/src/create_target.h's ExistingTarget). Freestanding-clean.
#pragma once

#include <instar/guest/edit_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

class SizedDevice final : public BlockDevice {
public:
    SizedDevice(BlockDevice& dev, uint64_t length) : dev_(dev), length_(length < dev.size() ? length : dev.size()) {}
    uint64_t size() const override { return length_; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > length_ || len > length_ - offset)
            return Status::IoError;
        return dev_.read(offset, buf, len);
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        const Status st = dev_.write(offset, buf, len);
        if (st == Status::Ok && offset + len > length_)
            length_ = offset + len; // the device's limit bounds offset + len
        return st;
    }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        if (offset >= length_)
            return Status::IoError;
        const Status st = dev_.allocation(offset, data, length);
        if (st == Status::Ok && *length > length_ - offset)
            *length = length_ - offset;
        return st;
    }
    Status discard(uint64_t offset, uint64_t len) override { return dev_.discard(offset, len); }
    // Sets the file's length through the host, an EditHost or a CreateTarget (growing adds zeros as
    // `mode` says).
    template <typename Host>
    Status set_length(Host& host, uint64_t length, Prealloc mode) {
        const Status st = host.set_length(dev_, length, mode);
        if (st == Status::Ok)
            length_ = length;
        return st;
    }
    Status flush(EditHost& host) { return host.flush(dev_); }
    BlockDevice& raw() { return dev_; }

private:
    BlockDevice& dev_;
    uint64_t length_;
};

} // namespace instar::guest
