// The example format's guest half: a 512-byte header ("EXAMPLE!", then the virtual size as a
// little-endian u64) followed by the disk's bytes. Built against the installed guest SDK only
// (pkg-config instar-guest-module), freestanding like every guest half.
#include <instar/guest/arena_new.h>
#include <instar_guest/format_module.h>

namespace {

using instar::guest::BlockDevice;
using instar::guest::Status;

constexpr uint64_t HEADER = 512;
// The format's own bound: a virtual size no real disk reaches (also keeps offsets from overflowing).
constexpr uint64_t MAX_VIRTUAL_SIZE = 1ull << 50;

Status load(BlockDevice& dev, bool* match, uint64_t* size) {
    *match = false;
    if (dev.size() < 16)
        return Status::Ok;
    unsigned char h[16];
    if (const Status st = dev.read(0, h, sizeof h); st != Status::Ok)
        return st;
    static constexpr char MAGIC[] = "EXAMPLE!";
    for (int i = 0; i < 8; ++i)
        if (h[i] != static_cast<unsigned char>(MAGIC[i]))
            return Status::Ok;
    *match = true;
    *size = 0;
    for (int i = 7; i >= 0; --i)
        *size = (*size << 8) | h[8 + i];
    return Status::Ok;
}

Status probe(BlockDevice& dev, bool* match) {
    uint64_t size;
    return load(dev, match, &size);
}

Status info(const instar::guest::InfoRequest& req, instar::guest::InfoSink& sink) {
    bool match;
    uint64_t size;
    if (const Status st = load(*req.image, &match, &size); st != Status::Ok)
        return st;
    if (!match || size > MAX_VIRTUAL_SIZE) {
        static constexpr char WHY[] = "not a valid example image";
        sink.reason(WHY, sizeof WHY - 1);
        return Status::Corrupt;
    }
    sink.format("example");
    sink.virtual_size(size);
    return Status::Ok;
}

// The disk is the file after the header; bytes past the end of the file read as zeros.
class Reader final : public instar::guest::ImageReader {
public:
    Reader(BlockDevice& dev, instar::guest::Allocator& alloc, uint64_t size) : dev_(dev), alloc_(alloc), size_(size) {}
    uint64_t virtual_size() const override { return size_; }
    Status status(uint64_t offset, uint64_t length, instar::guest::Extent* out) override {
        const uint64_t stored = dev_.size() - HEADER;
        *out = {};
        if (offset < stored) {
            out->length = length < stored - offset ? length : stored - offset;
            out->allocation = instar::guest::Allocation::Data;
            out->flags = instar::guest::EXTENT_OFFSET_VALID;
            out->offset = HEADER + offset;
        } else {
            out->length = length;
            out->allocation = instar::guest::Allocation::Zero;
        }
        return Status::Ok;
    }
    Status read(uint64_t offset, void* buf, size_t len) override {
        const uint64_t stored = dev_.size() - HEADER;
        const size_t have = offset >= stored ? 0 : (len < stored - offset ? len : static_cast<size_t>(stored - offset));
        if (have > 0)
            if (const Status st = dev_.read(HEADER + offset, buf, have); st != Status::Ok)
                return st;
        __builtin_memset(static_cast<char*>(buf) + have, 0, len - have);
        return Status::Ok;
    }
    void close() override { instar::guest::arena_delete(alloc_, this); }

private:
    BlockDevice& dev_;
    instar::guest::Allocator& alloc_;
    uint64_t size_;
};

Status open(const instar::guest::OpenRequest& req, instar::guest::ImageReader** out) {
    bool match;
    uint64_t size;
    if (const Status st = load(*req.image, &match, &size); st != Status::Ok)
        return st;
    if (!match || size > MAX_VIRTUAL_SIZE || req.image->size() < HEADER)
        return Status::Corrupt;
    auto* r = instar::guest::arena_new<Reader>(*req.allocator, *req.image, *req.allocator, size);
    if (r == nullptr)
        return Status::NoMemory;
    *out = r;
    return Status::Ok;
}

} // namespace

INSTAR_FORMAT_MODULE("example", probe, info, nullptr, nullptr, open, nullptr)
