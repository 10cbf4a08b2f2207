// dd's byte window over a composed disk (window_reader.h).
#include "window_reader.h"

namespace instar::convert {

using guest::Allocation;
using guest::Extent;
using guest::Status;

namespace {
constexpr uint64_t SECTOR = 512;
} // namespace

Status WindowReader::status(uint64_t offset, uint64_t length, Extent* out) {
    if (offset >= length_ || length == 0 || length > length_ - offset)
        return Status::Invalid;
    const uint64_t inner_size = inner_.virtual_size();
    // offset_ + length_ cannot overflow: the host derives both from one disk's size (checked below
    // nonetheless, as everything from the plan is).
    if (offset_ > UINT64_MAX - offset)
        return Status::Invalid;
    const uint64_t at = offset_ + offset;
    *out = Extent{};
    if (at >= inner_size) { // the sub-sector tail past inner's end reads as zeros
        out->length = length;
        out->allocation = Allocation::Zero;
        return Status::Ok;
    }
    const uint64_t ask = length < inner_size - at ? length : inner_size - at;
    Extent e{};
    if (const Status st = inner_.status(at, ask, &e); st != Status::Ok)
        return st;
    if (e.length == 0 || e.length > ask)
        return Status::Invalid;
    out->length = e.length;
    out->allocation = e.allocation == Allocation::Data ? Allocation::Data : Allocation::Zero;
    // Data (of any length) is safe to round up: the engine reads it. Zero must end on one of the
    // window's sector boundaries unless it reaches the window's end.
    const uint64_t end = offset + out->length;
    if (out->allocation != Allocation::Data && end < length_ && end % SECTOR != 0) {
        const uint64_t cut = end % SECTOR;
        if (out->length > cut) {
            out->length -= cut;
        } else {
            out->allocation = Allocation::Data;
        }
    }
    return Status::Ok;
}

Status WindowReader::read(uint64_t offset, void* buf, size_t len) {
    if (offset > length_ || len > length_ - offset || offset_ > UINT64_MAX - offset)
        return Status::Invalid;
    const uint64_t inner_size = inner_.virtual_size();
    const uint64_t at = offset_ + offset;
    const uint64_t in = at >= inner_size ? 0 : (len < inner_size - at ? len : inner_size - at);
    if (in > 0)
        if (const Status st = inner_.read(at, buf, static_cast<size_t>(in)); st != Status::Ok)
            return st;
    __builtin_memset(static_cast<uint8_t*>(buf) + in, 0, len - in);
    return Status::Ok;
}

} // namespace instar::convert
