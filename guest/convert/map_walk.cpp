// qemu-img map's walk (map_walk.h).
#include "map_walk.h"

#include "file_status.h"

namespace instar::convert {

using guest::Allocation;
using guest::Extent;
using guest::Status;

Status map_block_status(const MapLayer* chain, uint32_t depth, uint64_t offset, uint64_t bytes,
                        instar_map_entry* out, uint32_t* failed_layer) {
    if (depth == 0 || bytes == 0)
        return Status::Invalid;
    *out = instar_map_entry{};
    out->start = offset;
    for (uint32_t k = 0; k < depth; ++k) {
        guest::ImageReader& r = *chain[k].reader;
        const uint32_t style = chain[k].style;
        const uint64_t vs = r.virtual_size();
        if (offset >= vs) // qemu stops above a shorter backing (ZERO there); never reached from the top
            return Status::Corrupt;
        if (bytes > vs - offset) // bdrv_co_do_block_status clips to the layer's length
            bytes = vs - offset;
        out->depth = k;
        if (style & INSTAR_MAP_STYLE_NO_STATUS) {
            // No bdrv_co_block_status: the block layer says DATA | ALLOCATED for the whole request.
            out->length = bytes;
            out->flags = INSTAR_MAP_DATA | INSTAR_MAP_PRESENT;
            return Status::Ok;
        }
        Extent e{};
        *failed_layer = k;
        if (const Status st = r.status(offset, bytes, &e); st != Status::Ok)
            return st;
        if (e.length == 0 || e.length > bytes)
            return Status::Corrupt; // a reader broke its contract; never loop on it
        bytes = e.length;
        out->length = bytes;
        uint32_t flags = 0;
        if (e.allocation == Allocation::Data) {
            flags = INSTAR_MAP_DATA | INSTAR_MAP_PRESENT;
            if (chain[k].recurse && chain[k].image != nullptr && (e.flags & guest::EXTENT_OFFSET_VALID) &&
                e.device == 0) {
                bool zero = false;
                file_layer_status(*chain[k].image, e.offset, bytes, &zero, &bytes);
                out->length = bytes;
                if (zero)
                    flags |= INSTAR_MAP_ZERO;
            }
        }
        else if (e.allocation == Allocation::Zero)
            flags = INSTAR_MAP_ZERO | INSTAR_MAP_PRESENT |
                    ((style & INSTAR_MAP_STYLE_HOLE_IS_DATA) && (e.flags & guest::EXTENT_OFFSET_VALID)
                         ? INSTAR_MAP_DATA
                         : 0u);
        else if (style & INSTAR_MAP_STYLE_UNALLOCATED_ZERO)
            flags = INSTAR_MAP_ZERO | INSTAR_MAP_PRESENT;
        if (flags != 0) {
            // A raw file's last, partial sector: qemu's file protocol says DATA up to the file's end
            // and ZERO for the rest (the reader joins them; its run reaches the file's end).
            if ((style & INSTAR_MAP_STYLE_SPLIT_EOF) && (e.flags & guest::EXTENT_OFFSET_VALID) && e.device == 0 &&
                e.offset < chain[k].file_size && bytes > chain[k].file_size - e.offset) {
                if (e.allocation == Allocation::Data) {
                    bytes = chain[k].file_size - e.offset;
                    out->length = bytes;
                }
            } else if ((style & INSTAR_MAP_STYLE_SPLIT_EOF) && (e.flags & guest::EXTENT_OFFSET_VALID) &&
                       e.device == 0 && e.offset >= chain[k].file_size && e.allocation == Allocation::Data) {
                flags = INSTAR_MAP_ZERO | INSTAR_MAP_PRESENT;
            }
            if (e.flags & guest::EXTENT_COMPRESSED)
                flags |= INSTAR_MAP_COMPRESSED;
            if (e.flags & guest::EXTENT_OFFSET_VALID) {
                flags |= INSTAR_MAP_OFFSET_VALID;
                out->offset = e.offset;
                out->file = e.device;
            }
            out->flags = flags;
            return Status::Ok;
        }
        // Unallocated: qemu's block layer says ZERO (not ALLOCATED) when there is no backing or the
        // backing is shorter than offset, and the walk stops at this depth; else it asks the backing.
        // The offset the layer reported stays (qcow2's allocated but unallocated subclusters).
        if ((style & INSTAR_MAP_STYLE_NO_BACKING) || k + 1 == depth || offset >= chain[k + 1].reader->virtual_size()) {
            out->flags = (style & INSTAR_MAP_STYLE_NO_BACKING) ? 0u : INSTAR_MAP_ZERO;
            if (e.flags & guest::EXTENT_OFFSET_VALID) {
                out->flags |= INSTAR_MAP_OFFSET_VALID;
                out->offset = e.offset;
                out->file = e.device;
            }
            return Status::Ok;
        }
    }
    return Status::Corrupt; // unreachable: the last layer always answers
}

bool map_mergeable(const instar_map_entry& curr, const instar_map_entry& next) {
    if (curr.length == 0)
        return false;
    if (curr.flags != next.flags || curr.depth != next.depth)
        return false;
    if (curr.flags & INSTAR_MAP_OFFSET_VALID)
        return curr.file == next.file && curr.offset + curr.length == next.offset;
    return true;
}

Status map_walk(const MapLayer* chain, uint32_t depth, uint64_t start, uint64_t end, instar_map_entry* batch,
                uint64_t max_entries, MapSink& sink, uint32_t* failed_layer) {
    uint32_t queued = 0;
    uint64_t sent = 0;
    auto push = [&](const instar_map_entry& e) -> Status {
        if (sent + queued >= max_entries) {
            // Whole runs only: the caller continues from the end of the last one sent.
            if (queued > 0)
                if (const Status st = sink.emit(batch, queued); st != Status::Ok)
                    return st;
            queued = 0;
            *failed_layer = UINT32_MAX; // the bound, not a reader
            return Status::TooLarge;
        }
        batch[queued++] = e;
        if (queued == INSTAR_MAP_MAX_BATCH) {
            const Status st = sink.emit(batch, queued);
            sent += queued;
            queued = 0;
            return st;
        }
        return Status::Ok;
    };
    auto flush = [&]() -> Status {
        if (queued == 0)
            return Status::Ok;
        const Status st = sink.emit(batch, queued);
        sent += queued;
        queued = 0;
        return st;
    };
    instar_map_entry curr{};
    Status result = Status::Ok;
    for (uint64_t offset = start; offset < end;) {
        instar_map_entry next{};
        if (const Status st = map_block_status(chain, depth, offset, end - offset, &next, failed_layer);
            st != Status::Ok) {
            result = st;
            break;
        }
        offset += next.length;
        if (map_mergeable(curr, next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0)
            if (const Status st = push(curr); st != Status::Ok)
                return st;
        curr = next;
    }
    if (curr.length > 0)
        if (const Status st = push(curr); st != Status::Ok)
            return st;
    if (const Status st = flush(); st != Status::Ok)
        return st;
    return result;
}

} // namespace instar::convert
