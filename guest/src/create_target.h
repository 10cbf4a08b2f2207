// The create operation's pieces that convert (and commit) share: unpacking an instar_create_arg (and its
// strings) into a CreateRequest, and a CreateTarget whose files are host devices.
#pragma once

#include "runtime.h"

#include <instar/guest/edit_device.h>

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

// An existing image written in place (convert -n's target, commit's base, rebase's overlay) as its
// format sees it: the file's real length, growing as writes extend it (edit_device.h).
using ExistingTarget = SizedDevice;

// The other files of an existing image (vmdk extents, a qcow2 data file) as a plan lists them: the
// `count` devices after `image_device`, each an ExistingTarget of the length at lengths + 8 * i (a
// uint64). *out is an arena array, nullptr when `count` is 0. Invalid for a device that is not there.
Status existing_files(uint32_t image_device, const uint8_t* lengths, uint32_t count, BlockDevice*** out);

} // namespace instar::guest
