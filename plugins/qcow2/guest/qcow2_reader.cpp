// Zero-padded header reads and the windowed metadata reader.
#include "qcow2_reader.h"

namespace instar::qcow2 {

Status read_zero_padded(BlockDevice& dev, uint64_t offset, uint8_t* dst, size_t len) {
    const uint64_t size = dev.size();
    size_t have = 0;
    if (offset < size)
        have = size - offset < len ? static_cast<size_t>(size - offset) : len;
    if (have > 0) {
        const Status st = dev.read(offset, dst, have);
        if (st != Status::Ok)
            return st;
    }
    __builtin_memset(dst + have, 0, len - have);
    return Status::Ok;
}

Status MetadataReader::read(uint64_t offset, void* dst, size_t len) {
    const uint64_t size = dev_.size();
    if (offset > size || len > size - offset)
        return Status::Corrupt;
    auto* out = static_cast<uint8_t*>(dst);
    if (len == 0)
        return Status::Ok;
    // Served from the current window?
    if (offset >= window_offset_ && offset - window_offset_ <= window_len_ &&
        len <= window_len_ - (offset - window_offset_)) {
        __builtin_memcpy(out, window_ + (offset - window_offset_), len);
        return Status::Ok;
    }
    if (len > window_size_)
        return dev_.read(offset, out, len) == Status::Ok ? Status::Ok : Status::Corrupt;
    const uint64_t avail = size - offset;
    const size_t fill = avail < window_size_ ? static_cast<size_t>(avail) : window_size_;
    window_len_ = 0;
    if (dev_.read(offset, window_, fill) != Status::Ok)
        return Status::Corrupt;
    window_offset_ = offset;
    window_len_ = fill;
    __builtin_memcpy(out, window_, len);
    return Status::Ok;
}

} // namespace instar::qcow2
