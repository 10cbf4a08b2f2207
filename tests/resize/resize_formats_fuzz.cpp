// Fuzz target: a format's guest resize (vmdk, vpc or vhdx, chosen at build time with RF_EDIT_HEADER
// and RF_NS) on arbitrary image bytes, in memory: the last 9 input bytes pick the new size (grow or
// shrink around the input's length) and --shrink. Whatever the bytes, the code must refuse or
// finish without touching memory it does not own and without writing past the output budget.
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <instar/guest/edit_resize.h>

#include RF_EDIT_HEADER

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace {

using instar::guest::Status;

class MemoryHost final : public instar::guest::EditHost {
public:
    explicit MemoryHost(instar::hosted::MemoryOutput& image) : image_(image) {}
    Status set_length(instar::guest::BlockDevice& file, std::uint64_t length, instar::guest::Prealloc) override {
        if (&file != &image_ || length > (1ull << 40))
            return Status::Invalid;
        image_.set_length(length);
        return Status::Ok;
    }
    Status flush(instar::guest::BlockDevice&) override { return Status::Ok; }
    Status add_file(const char*, instar::guest::BlockDevice**) override { return Status::Unsupported; }
    Status out(const char*, std::size_t) override { return Status::Ok; }
    Status err(const char*, std::size_t) override { return Status::Ok; }
    void reason(const char*, std::size_t) override {}
    Status data(std::uint32_t, const void*, std::size_t) override { return Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}

private:
    instar::hosted::MemoryOutput& image_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 9)
        return 0;
    const std::size_t image_len = size - 9;
    std::uint64_t pick;
    std::memcpy(&pick, data + image_len, sizeof pick);
    // Bytes written are budgeted (64 MiB); lengths may be far larger (holes cost nothing).
    instar::hosted::MemoryOutput image(64u << 20);
    if (image_len > 0 && image.write(0, data, image_len) != Status::Ok)
        return 0;
    instar::guest::ResizeArgs args{};
    // New sizes from a few sectors up to 4 TiB, in 512-byte steps (odd values too).
    args.new_size = pick % (4ull << 40);
    args.old_size = image_len;
    args.flags = (data[size - 1] & 1) ? instar::guest::RESIZE_SHRINK : 0;
    // A backing image up to 4 TiB long (a differencing disk's grown area is zeroed where it reaches).
    if ((data[size - 1] & 2) != 0) {
        args.flags |= instar::guest::RESIZE_HAS_BACKING;
        args.backing_size = (pick * 0x9E3779B97F4A7C15ull) % (4ull << 40);
    }
    instar::hosted::BudgetAllocator alloc(64u << 20);
    static const std::uint8_t random[instar::guest::CREATE_RANDOM_BYTES] = {};
    instar::guest::EditRequest req{};
    req.command = instar::guest::EditCommand::Resize;
    req.image = &image;
    req.image_length = image_len;
    req.writable = true;
    req.args = reinterpret_cast<const std::uint8_t*>(&args);
    req.args_len = sizeof args;
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &instar::hosted::host_codecs(); // vmdk: a compressed grain deflated again on a grow
    MemoryHost host(image);
    (void)instar::RF_NS::edit(req, host);
    return 0;
}
