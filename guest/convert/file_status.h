// qemu's file-layer block status under a format (BDRV_BLOCK_RECURSE) and the qcow2 check that
// turns it on (qcow2_detect_metadata_preallocation): shared by map's walk and measure's. A data
// cluster of an image qemu takes for metadata-preallocated is DATA and, where the image file has a
// hole (or ends) under it, also ZERO. Header-only and freestanding-clean (the runtime, the hosted
// tests and the fuzz targets include it from guest/convert and guest/measure).
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::convert {

// bdrv_co_block_status of the image file at [offset, offset + length) (length > 0), as qemu's
// block layer folds it into the format's answer (block/io.c): past the file's end, or a hole that
// reaches it, is ZERO for the whole run; a hole inside the file is ZERO up to the next data; data
// limits the run to its end. Sets *zero and *run (0 < *run <= length). qemu ignores errors here
// ("just providing extra information"): so does this (the run stays DATA, whole).
inline void file_layer_status(guest::BlockDevice& file, uint64_t offset, uint64_t length, bool* zero, uint64_t* run) {
    *zero = false;
    *run = length;
    const uint64_t size = file.size();
    if (offset >= size) {
        *zero = true;
        return;
    }
    bool data = true;
    uint64_t n = 0;
    if (file.allocation(offset, &data, &n) != guest::Status::Ok || n == 0)
        return;
    *zero = !data;
    if (!data && n >= size - offset) // a trailing hole: BDRV_BLOCK_EOF with ZERO keeps the format's run
        return;
    if (n < length)
        *run = n;
}

// qcow2_detect_metadata_preallocation, from what a reader shows: qemu counts the clusters of the
// file with a non-zero refcount against MAX(real * 10 / 9, real + 2), real being the file's
// allocated clusters (`allocated`: st_blocks * 512, from the host). The clusters this image's own
// data and allocated-zero extents use are a subset of those (metadata is not counted), so a yes
// here is a yes for qemu; a preallocated image is far past the threshold. Counting stops at the
// threshold. A reader failure is returned (qemu then takes the image as not preallocated).
inline guest::Status detect_metadata_preallocation(guest::ImageReader& reader, guest::BlockDevice& image,
                                                   uint64_t allocated, uint64_t cluster, bool* preallocated) {
    *preallocated = false;
    if (cluster == 0)
        return guest::Status::Ok;
    const uint64_t real = allocated / cluster;
    const uint64_t threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
    const uint64_t file_length = image.size();
    const uint64_t size = reader.virtual_size();
    uint64_t count = 1; // the header cluster
    for (uint64_t offset = 0; offset < size && count < threshold;) {
        guest::Extent e{};
        if (const guest::Status st = reader.status(offset, size - offset, &e); st != guest::Status::Ok)
            return st;
        if (e.length == 0 || e.length > size - offset)
            return guest::Status::Corrupt;
        if (e.allocation != guest::Allocation::Unallocated && (e.flags & guest::EXTENT_OFFSET_VALID) != 0 &&
            e.device == 0 && e.offset < file_length) {
            // Host clusters the extent covers (contiguous in the file), inside the file.
            const uint64_t first = e.offset / cluster;
            const uint64_t end = e.length > file_length - e.offset ? file_length : e.offset + e.length;
            count += (end + cluster - 1) / cluster - first;
        }
        offset += e.length;
    }
    *preallocated = count >= threshold;
    return guest::Status::Ok;
}

} // namespace instar::convert
