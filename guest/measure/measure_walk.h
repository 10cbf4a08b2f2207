// qemu-img measure's allocation walk (qcow2_measure's loop over bdrv_block_status_above) over a
// backing chain, composed as convert's ChainReader composes it (unallocated ranges fall through to
// the backing image; zeros past a short backing image and below the last one), plus the file-layer
// status qemu adds for qcow2 images it takes for metadata-preallocated (BDRV_BLOCK_RECURSE): there a
// data cluster whose bytes are a hole of the image file reads as zeros. Freestanding-clean: the same
// source runs in the guest runtime (INSTAR_OP_MEASURE) and hosted (tests/formats, measure-walk-unit).
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::measure {

struct Layer {
    guest::ImageReader* reader;
    guest::BlockDevice* image;  // the image's own file: Extent device 0
    uint64_t allocated;         // the host's count of that file's allocated bytes (st_blocks * 512)
    uint32_t cluster_size;      // the image's cluster size (what info reported)
    bool detect_prealloc;       // qcow2 without a data file: run qemu's metadata-preallocation check
};

// qcow2_detect_metadata_preallocation, from what a reader shows: qemu counts the clusters of the
// file with a non-zero refcount against MAX(real * 10 / 9, real + 2), real being the file's
// allocated clusters. The clusters this image's own data and allocated-zero extents use are a
// subset of those (metadata is not counted), so a yes here is a yes for qemu; a preallocated image
// is far past the threshold. Counting stops at the threshold.
guest::Status detect_metadata_preallocation(const Layer& layer, bool* preallocated);

// The bytes of target clusters (cluster_size, a power of two) that hold any byte the chain reports
// as data, over [0, the top's virtual size): qemu's `required` before metadata is added. Zero and
// unallocated ranges count nothing (safe: the target has no backing file). `refine[k]` says
// whether layer k's data extents are checked against its file's holes (detect_metadata_preallocation).
guest::Status required_bytes(const Layer* layers, const bool* refine, uint32_t depth, uint32_t cluster_size,
                             uint64_t* required);

} // namespace instar::measure
