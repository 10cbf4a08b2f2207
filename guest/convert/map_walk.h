// qemu-img map's walk over a backing chain (img_map, get_block_status, entry_mergeable), as runs of
// struct instar_map_entry. Freestanding-clean: the runtime's INSTAR_OP_MAP and the hosted tests
// (tests/formats hosted_convert) compile the same source. Documented in docs/map.md.
#pragma once

#include <instar/guest/read_api.h>
#include <instar/guest_abi.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::convert {

// How a layer's format driver answers qemu's block status (the host picks it from the format; the
// plan carries it as INSTAR_MAP_STYLE_* per image).
struct MapLayer {
    guest::ImageReader* reader;
    uint32_t style;     // INSTAR_MAP_STYLE_*
    uint64_t file_size; // the layer's image file's length (INSTAR_MAP_STYLE_SPLIT_EOF)
    // qemu's BDRV_BLOCK_RECURSE (a qcow2 image it takes for metadata-preallocated, file_status.h):
    // the layer's data extents in its own file (device 0) are ZERO as well where the file has a
    // hole, and end where the file's data ends. `image` is that file.
    guest::BlockDevice* image = nullptr;
    bool recurse = false;
};

// Where the walk's runs go: batches of 1..INSTAR_MAP_MAX_BATCH entries, in disk order.
class MapSink {
public:
    virtual guest::Status emit(const instar_map_entry* entries, uint32_t count) = 0;

protected:
    ~MapSink() = default;
};

// qemu's get_block_status for [offset, offset + bytes) of chain[0] (bytes > 0, inside the top's
// virtual size): the first run with one answer, and the layer that gave it.
// *failed_layer names the layer whose reader failed (unchanged on success).
guest::Status map_block_status(const MapLayer* chain, uint32_t depth, uint64_t offset, uint64_t bytes,
                               instar_map_entry* out, uint32_t* failed_layer);

// qemu's entry_mergeable, with (depth, file) standing for the file name (same layer and file: same
// name; the host merges again on the names themselves).
bool map_mergeable(const instar_map_entry& curr, const instar_map_entry& next);

// The whole walk over [start, end) (end already clipped to the virtual size): runs joined as
// entry_mergeable joins them, sent in batches through `batch` (INSTAR_MAP_MAX_BATCH entries).
// At most max_entries are sent: TooLarge beyond that, after sending them (all complete runs: the
// walk can continue from the end of the last one; *failed_layer is then UINT32_MAX). On a reader failure the runs before it have
// been sent, the Status is returned and *failed_layer names the layer whose reader failed.
guest::Status map_walk(const MapLayer* chain, uint32_t depth, uint64_t start, uint64_t end, instar_map_entry* batch,
                       uint64_t max_entries, MapSink& sink, uint32_t* failed_layer);

} // namespace instar::convert
