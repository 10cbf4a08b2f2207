// The interface format code (a plugin's guest half) is written against. Freestanding-clean: no libc,
// no exceptions, no RTTI. The guest runtime implements it over hypercalls; unit tests and fuzz targets
// implement it over memory buffers and files, so the same format sources compile in all three places.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// Errors cross every boundary as values.
enum class Status : int32_t {
    Ok = 0,
    IoError = 1,     // the device refused the request (e.g. past its end)
    Corrupt = 2,     // the image violates its format's rules
    Unsupported = 3, // valid, but uses a feature instar does not implement
    TooLarge = 4,    // a named limit on untrusted input was exceeded
    NoMemory = 5,    // the guest arena is exhausted
    Invalid = 6,     // bad arguments from the caller (not from the image)
    NeedFiles = 7,   // the image names other files (reported through the sink): run again with them
};

// The errno text (strerror's) qemu-img prints where a data request failed with `st`: the convert
// engine's messages, and the host's reading of a Status a guest sent back.
inline const char* status_strerror(Status st) {
    switch (st) {
    case Status::NoMemory: return "Cannot allocate memory";
    case Status::Unsupported: return "Operation not supported";
    case Status::TooLarge: return "File too large";
    case Status::Invalid: return "Invalid argument";
    default: return "Input/output error";
    }
}

// A read-only (or, for outputs, writable) device: an image file the host opened for us.
class BlockDevice {
public:
    virtual uint64_t size() const = 0;
    // Reads exactly len bytes at offset; a range past the end is IoError, never a short read.
    virtual Status read(uint64_t offset, void* buf, size_t len) = 0;
    virtual Status write(uint64_t offset, const void* buf, size_t len) = 0;
    // The file system's allocation at `offset` (< size()): *data says whether [offset, offset +
    // *length) holds data (true) or is a hole that reads as zeros (false). Host metadata
    // (SEEK_DATA/SEEK_HOLE), never image content; a device that cannot tell says "all data".
    virtual Status allocation(uint64_t offset, bool* data, uint64_t* length) {
        if (offset >= size())
            return Status::IoError;
        *data = true;
        *length = size() - offset;
        return Status::Ok;
    }

    // Makes [offset, offset + len) of a writable device read as zeros (a hole where the file system
    // can punch one). Unsupported on devices that cannot.
    virtual Status discard(uint64_t offset, uint64_t len) {
        (void)offset;
        (void)len;
        return Status::Unsupported;
    }

protected:
    ~BlockDevice() = default;
};

// Bounded allocation: returns nullptr when the arena (or a test's budget) is exhausted.
class Allocator {
public:
    virtual void* allocate(size_t size, size_t align) = 0;
    virtual void deallocate(void* p, size_t size) = 0;

protected:
    ~Allocator() = default;
};

} // namespace instar::guest
