// qcow2_measure's loop and qemu's metadata-preallocation check (measure_walk.h).
#include "measure_walk.h"

#include "../convert/file_status.h"

namespace instar::measure {

using guest::Allocation;
using guest::Extent;
using guest::Status;

namespace {

// qemu's sizes are int64_t: no image it opens is larger, and below this rounding up cannot overflow.
constexpr uint64_t MAX_VIRTUAL_SIZE = 0x7FFFFFFFFFFFFFFFull;

// bdrv_block_status_above(bs, NULL) at offset: *data for DATA|ALLOCATED without ZERO; *run > 0.
Status chain_status(const Layer* layers, const bool* refine, uint32_t depth, uint64_t offset, uint64_t length,
                    bool* data, uint64_t* run) {
    *data = false;
    for (uint32_t k = 0; k < depth; ++k) {
        guest::ImageReader& r = *layers[k].reader;
        const uint64_t vs = r.virtual_size();
        if (offset >= vs) // a short backing image: zeros past its end
            break;
        if (length > vs - offset)
            length = vs - offset;
        Extent e{};
        if (const Status st = r.status(offset, length, &e); st != Status::Ok)
            return st;
        if (e.length == 0 || e.length > length)
            return Status::Corrupt; // a reader broke its contract; never loop on it
        length = e.length;
        if (e.allocation == Allocation::Data) {
            *data = true;
            *run = length;
            if (refine[k] && (e.flags & guest::EXTENT_OFFSET_VALID) != 0 && e.device == 0 &&
                layers[k].image != nullptr) {
                // The file's status: a hole (or past its end) reads as zeros; data limits the run.
                bool zero = false;
                convert::file_layer_status(*layers[k].image, e.offset, length, &zero, run);
                *data = !zero;
            }
            return Status::Ok;
        }
        if (e.allocation == Allocation::Zero)
            break;
        // Unallocated: no backing, or a backing shorter than offset, reads as zeros.
        if (k + 1 == depth || offset >= layers[k + 1].reader->virtual_size())
            break;
    }
    *run = length;
    return Status::Ok;
}

} // namespace

Status detect_metadata_preallocation(const Layer& layer, bool* preallocated) {
    *preallocated = false;
    if (!layer.detect_prealloc || layer.image == nullptr)
        return Status::Ok;
    return convert::detect_metadata_preallocation(*layer.reader, *layer.image, layer.allocated, layer.cluster_size,
                                                  preallocated);
}

Status required_bytes(const Layer* layers, const bool* refine, uint32_t depth, uint32_t cluster_size,
                      uint64_t* required) {
    if (depth == 0 || cluster_size == 0 || (cluster_size & (cluster_size - 1)) != 0)
        return Status::Invalid;
    const uint64_t size = layers[0].reader->virtual_size();
    if (size > MAX_VIRTUAL_SIZE)
        return Status::Invalid;
    const uint64_t mask = static_cast<uint64_t>(cluster_size) - 1;
    uint64_t total = 0;
    uint64_t offset = 0;
    while (offset < size) {
        bool data = false;
        uint64_t run = 0;
        if (const Status st = chain_status(layers, refine, depth, offset, size - offset, &data, &run);
            st != Status::Ok)
            return st;
        if (run == 0 || run > size - offset)
            return Status::Corrupt;
        if (data) {
            // qemu: pnum = ROUND_UP(offset + pnum, cluster_size) - offset; required += offset % cs + pnum,
            // i.e. every cluster the run touches, once (the next run starts on a cluster boundary).
            // offset + run <= size <= MAX_VIRTUAL_SIZE, so rounding up cannot overflow.
            const uint64_t end = (offset + run + mask) & ~mask;
            total += end - (offset & ~mask);
            offset = end;
        } else {
            offset += run;
        }
    }
    *required = total;
    return Status::Ok;
}

} // namespace instar::measure
