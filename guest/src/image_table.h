// The image table of a data operation's plan (convert, map, compare, measure): reading the plan
// device, checking every entry against the devices and modules the host gave, opening one reader
// per image, and composing each image's backing chain. The host writes it (core/src/ops/image_table).
#pragma once

#include "runtime.h"

#include <instar/guest/read_api.h>

namespace instar::guest {

// A plan is at most this large: 4096 images x 24 bytes, a create argument and a snapshot name.
inline constexpr uint32_t MAX_PLAN_BYTES = 1u << 20;
// The files an image written in place (convert -n's target, commit's base) may name besides its
// own (vmdk extents, a qcow2 data file), as a plan lists them: a vmdk names at most
// VMDK_MAX_EXTENTS (32768) and the host attaches every one of them.
inline constexpr uint32_t MAX_EXISTING_FILES = 32768;

// Reasons from format code go to the host once (the first one explains the failure).
class RecordReasons final : public ReasonSink {
public:
    void reason(const char* text, size_t len) override;
    bool sent() const { return sent_; }
    // While quiet, reasons are dropped (a walk's reads ahead and early status queries: the work done
    // again in its place gives them).
    void quiet(bool q) { quiet_ = q; }

private:
    bool sent_ = false;
    bool quiet_ = false;
};

// The whole plan device in arena memory, with one spare zero byte after it (for NUL-terminating a
// trailing name). Invalid when the device is missing, shorter than min_size or over MAX_PLAN_BYTES.
Status read_plan_device(uint32_t plan_device, size_t min_size, uint8_t** bytes, size_t* size);

// Every entry's module, device, files and backing index inside what the host gave.
Status check_image_table(const instar_convert_image* images, uint32_t count);

// The secrets device (instar_secret_table; `device_plus_one` 0: none) checked against the image
// table: secrets[i] / lengths[i] for image i, nullptr where the image has none.
struct Secrets {
    const uint8_t** bytes = nullptr;
    size_t* lengths = nullptr;
};
Status read_secrets(uint32_t device_plus_one, uint32_t image_count, Secrets* out);

// -l snapshot.id=ID,snapshot.name=NAME: either or both, matched exactly (OpenRequest::snapshot_exact).
struct ExactSnapshot {
    const char* id = nullptr;
    const char* name = nullptr;
};

// One reader per entry, in table order; `snapshot` (or nullptr) is read instead of image 0's
// current state, as `exact` says when given. On failure *opened is the index that failed (its
// reason already sent).
Status open_images(const instar_convert_image* images, uint32_t count, const char* snapshot, uint32_t qemu_version,
                   ReasonSink& reasons, ImageReader** readers, uint32_t* opened, const Secrets* secrets = nullptr,
                   const ExactSnapshot* exact = nullptr);

// Closes readers[0..opened).
void close_images(ImageReader** readers, uint32_t opened);

// The chain from entry `top` down, as readers top first, written to out[0..*depth); out holds
// out_cap entries, which also bounds a loop in the table.
Status chain_of(const instar_convert_image* images, uint32_t count, uint32_t top, ImageReader* const* readers,
                ImageReader** out, uint32_t out_cap, uint32_t* depth);

} // namespace instar::guest
