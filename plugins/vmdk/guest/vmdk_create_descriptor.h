// The text descriptor and the extent list of a new VMDK image, as qemu's vmdk_co_do_create writes
// them: the extent sizes and file names (NAME-s001.vmdk, NAME-f001.vmdk, NAME-flat.vmdk) and the
// descriptor template with its geometry.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "vmdk_create_options.h"
#include "vmdk_create_text.h"

namespace instar::vmdk {

// VMDK's constant split size (twoGbMaxExtent*).
inline constexpr int64_t VMDK_SPLIT_BYTES = 0x80000000;
// qemu formats parentFileNameHint="NAME" into a BUF_SIZE (4096) buffer with snprintf.
inline constexpr size_t VMDK_PARENT_LINE_MAX = 4095;

// The extra extent files of split and flat subformats, in qemu's order (monolithicSparse and
// streamOptimized have none: the image is its own extent). Sizes use qemu's int64_t loop.
class ExtentPlan {
public:
    explicit ExtentPlan(const CreateSettings& s);
    uint64_t count() const { return count_; }
    // Size in bytes of extent `i` (0-based).
    int64_t size_of(uint64_t i) const;

private:
    int64_t size_;
    int64_t step_;
    uint64_t count_;
};

// qemu's filename_decompose on the image's base name: the stem ends at the last '.' after the last
// '\' (or, without one, ':'); extent i (1-based) is stem + "-s%03d"/"-f%03d"/"-flat" + the rest.
// Returns the name's length, or 0 when it does not fit `cap` - 1 bytes.
size_t extent_file_name(const char* image_name, const CreateSettings& s, uint64_t index, char* out, size_t cap);

struct DescriptorFields {
    uint32_t cid;
    uint32_t parent_cid;
    const char* image_name; // the extent of monolithicSparse/streamOptimized
};

// Emits the whole descriptor (flush is the caller's).
void emit_descriptor(TextWriter& w, const CreateSettings& s, const DescriptorFields& f, const ExtentPlan& plan);

} // namespace instar::vmdk
