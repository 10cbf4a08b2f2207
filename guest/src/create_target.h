// The create operation's pieces that convert (and commit) share: unpacking an instar_create_arg (and its
// strings) into a CreateRequest, and a CreateTarget whose files are host devices.
#pragma once

#include "runtime.h"

namespace instar::guest {

// Every format's -o table has fewer than 32 keys; the host sends each set key once.
inline constexpr uint32_t MAX_CREATE_OPTIONS = 64;

// A CreateRequest unpacked from the host's argument, with the storage its pointers point into.
struct UnpackedCreate {
    instar_create_arg arg{};
    const char* strings[3 + 2 * MAX_CREATE_OPTIONS] = {};
    CreateOption options[MAX_CREATE_OPTIONS] = {};
    CreateRequest req{};
};

// Fills `out` from `data` (an instar_create_arg and its strings, exactly `len` bytes); the strings
// stay in `data`. False when the bytes do not add up.
bool unpack_create(const uint8_t* data, uint32_t len, UnpackedCreate& out);

class HypercallTarget final : public CreateTarget {
public:
    explicit HypercallTarget(uint32_t image_device) : image_device_(image_device) {}
    BlockDevice& image() override { return *device(image_device_); }
    Status set_length(BlockDevice& file, uint64_t length, Prealloc mode) override;
    Status add_file(const char* name, BlockDevice** out) override;
    void reason(const char* text, size_t len) override;
    void resolved_unit_size(uint64_t bytes) override { unit_ = bytes; }
    uint64_t unit() const { return unit_; }

private:
    uint32_t image_device_;
    uint64_t unit_ = 0;
};

// An existing image written in place (convert -n's target, commit's base) as its format sees it:
// an output device is addressable far past the file, so its length is the host's figure, growing as
// writes extend it.
class ExistingTarget final : public BlockDevice {
public:
    ExistingTarget(BlockDevice& dev, uint64_t length) : dev_(dev), length_(length < dev.size() ? length : dev.size()) {}
    uint64_t size() const override { return length_; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > length_ || len > length_ - offset) return Status::IoError;
        return dev_.read(offset, buf, len);
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        const Status st = dev_.write(offset, buf, len);
        if (st == Status::Ok && offset + len > length_) length_ = offset + len; // dev_ bounds-checked it
        return st;
    }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        return dev_.allocation(offset, data, length);
    }
    Status discard(uint64_t offset, uint64_t len) override { return dev_.discard(offset, len); }

private:
    BlockDevice& dev_;
    uint64_t length_;
};

} // namespace instar::guest
