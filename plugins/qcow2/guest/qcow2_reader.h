// Arena-backed buffers and a windowed reader for qcow2 metadata tables (snapshots, bitmaps).
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

using guest::Allocator;
using guest::BlockDevice;
using guest::Status;

// A buffer from the request's allocator, released when it goes out of scope.
class ArenaBuffer {
public:
    ArenaBuffer(Allocator& alloc, size_t size) : alloc_(alloc), size_(size) {
        data_ = size ? static_cast<uint8_t*>(alloc.allocate(size, 16)) : nullptr;
    }
    ~ArenaBuffer() {
        if (data_)
            alloc_.deallocate(data_, size_);
    }
    ArenaBuffer(const ArenaBuffer&) = delete;
    ArenaBuffer& operator=(const ArenaBuffer&) = delete;
    bool ok() const { return size_ == 0 || data_ != nullptr; }
    uint8_t* data() { return data_; }
    size_t size() const { return size_; }

private:
    Allocator& alloc_;
    uint8_t* data_ = nullptr;
    size_t size_;
};

// Reads [0, len) at offset, zero-filling whatever lies past the end of the device, as qemu's block
// layer does for a file shorter than its header cluster.
Status read_zero_padded(BlockDevice& dev, uint64_t offset, uint8_t* dst, size_t len);

// Sequential metadata reads through one window, so a table of many small entries costs one device
// read per window. Reads past the end of the device are Corrupt: a table must lie inside the file.
class MetadataReader {
public:
    MetadataReader(BlockDevice& dev, uint8_t* window, size_t window_size)
        : dev_(dev), window_(window), window_size_(window_size) {}
    Status read(uint64_t offset, void* dst, size_t len);

private:
    BlockDevice& dev_;
    uint8_t* window_;
    size_t window_size_;
    uint64_t window_offset_ = 0;
    size_t window_len_ = 0;
};

} // namespace instar::qcow2
