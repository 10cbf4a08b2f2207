// Backing-chain composition (chain_reader.h).
#include "chain_reader.h"

namespace instar::convert {

using guest::Allocation;
using guest::Extent;
using guest::Status;

Status ChainReader::status(uint64_t offset, uint64_t length, bool top_only, ChainClass* cls, uint64_t* run) const {
    if (depth_ == 0 || length == 0)
        return Status::Invalid;
    for (uint32_t k = 0; k < depth_; ++k) {
        guest::ImageReader& r = *chain_[k];
        const uint64_t vs = r.virtual_size();
        if (offset >= vs) // a short backing image: zeros synthesized past its end (qemu's *pnum == 0 case)
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
            *cls = ChainClass::Data;
            *run = length;
            return Status::Ok;
        }
        if (e.allocation == Allocation::Zero) {
            *cls = ChainClass::Zero;
            *run = length;
            return Status::Ok;
        }
        // Unallocated here: no backing -> zero; a backing shorter than offset -> zero (both as
        // bdrv_co_do_block_status says); stopping at the top -> the target's backing shows through.
        if (k + 1 == depth_)
            break;
        if (offset >= chain_[k + 1]->virtual_size())
            break;
        if (top_only) {
            *cls = ChainClass::Backing;
            *run = length;
            return Status::Ok;
        }
    }
    *cls = ChainClass::Zero;
    *run = length;
    return Status::Ok;
}

Status ChainReader::read_layer(uint32_t layer, uint64_t offset, uint8_t* buf, uint64_t len) const {
    guest::ImageReader& r = *chain_[layer];
    const uint64_t vs = r.virtual_size();
    // The last layer has nothing below it: its read() already gives zeros for its Zero and
    // Unallocated ranges (read_api.h), so no status query is needed. Asking costs two hypercalls per
    // chunk, and on tmpfs a SEEK_HOLE that scans the rest of the file each time (O(n^2) per copy).
    if (layer + 1 >= depth_) {
        const uint64_t in = offset >= vs ? 0 : (vs - offset < len ? vs - offset : len);
        if (in > 0)
            if (const Status st = r.read(offset, buf, in); st != Status::Ok)
                return st;
        __builtin_memset(buf + in, 0, len - in);
        return Status::Ok;
    }
    while (len > 0) {
        if (offset >= vs) {
            __builtin_memset(buf, 0, len);
            return Status::Ok;
        }
        uint64_t n = vs - offset < len ? vs - offset : len;
        Extent e{};
        if (const Status st = r.status(offset, n, &e); st != Status::Ok)
            return st;
        if (e.length == 0 || e.length > n)
            return Status::Corrupt;
        n = e.length;
        if (e.allocation == Allocation::Data) {
            if (const Status st = r.read(offset, buf, n); st != Status::Ok)
                return st;
        } else if (e.allocation == Allocation::Unallocated && layer + 1 < depth_) {
            // The format may refuse reads through to this backing image (vmdk's parentCID check:
            // qemu fails them with -EINVAL, whether or not the backing image has data there).
            if (!r.backing_valid(*chain_[layer + 1])) {
                refused_ = layer;
                return Status::Invalid;
            }
            if (const Status st = read_layer(layer + 1, offset, buf, n); st != Status::Ok)
                return st;
        } else {
            __builtin_memset(buf, 0, n);
        }
        offset += n;
        buf += n;
        len -= n;
    }
    return Status::Ok;
}

Status ChainReader::read(uint64_t offset, void* buf, size_t len) const {
    if (depth_ == 0)
        return Status::Invalid;
    return read_layer(0, offset, static_cast<uint8_t*>(buf), len);
}

Status ChainImageReader::status(uint64_t offset, uint64_t length, Extent* out) {
    ChainClass cls = ChainClass::Data;
    uint64_t run = 0;
    if (const Status st = chain_.status(offset, length, false, &cls, &run); st != Status::Ok)
        return st;
    *out = Extent{};
    out->length = run;
    out->allocation = cls == ChainClass::Data ? Allocation::Data : Allocation::Zero;
    return Status::Ok;
}

} // namespace instar::convert
