// Fuzz target: the VMDK reader on arbitrary bytes (the input standing in for every extent file),
// walking status() and read() over the disk with a bounded budget and a bounded allocator.
#include "hosted_read.h"
#include "hosted_support.h"
#include "vmdk_format.h"
#include "vmdk_read.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

constexpr int MAX_STATUS_CALLS = 4096;          // keeps one input's walk short
constexpr std::uint64_t MAX_READ_BYTES = 8u << 20; // total bytes read() per input
constexpr std::size_t CHUNK = 256u << 10;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using instar::guest::Status;
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    // The extent count as info reports it on its first pass.
    std::vector<instar::guest::BlockDevice*> files;
    const auto first = instar::hosted::run_info(&instar::vmdk::info, dev, {}, 4 << 20);
    if (first.status == Status::NeedFiles)
        files.assign(first.info.files.size(), &dev);
    instar::hosted::BudgetAllocator alloc(8 << 20);
    instar::guest::OpenRequest req{&dev, files.data(), static_cast<std::uint32_t>(files.size()), &alloc,
                                   &instar::hosted::host_codecs(), nullptr, nullptr, 100000};
    instar::guest::ImageReader* r = nullptr;
    if (instar::vmdk::open(req, &r) != Status::Ok)
        return 0;
    static std::vector<std::uint8_t> buf(CHUNK);
    const std::uint64_t vs = r->virtual_size();
    std::uint64_t read_left = MAX_READ_BYTES;
    std::uint64_t off = 0;
    for (int calls = 0; off < vs && calls < MAX_STATUS_CALLS; ++calls) {
        instar::guest::Extent e{};
        if (r->status(off, vs - off, &e) != Status::Ok)
            break;
        if (e.length == 0 || e.length > vs - off)
            __builtin_trap(); // the contract: a run inside what was asked
        const std::uint64_t n = e.length < CHUNK ? e.length : CHUNK;
        if (n <= read_left) {
            read_left -= n;
            (void)r->read(off, buf.data(), static_cast<std::size_t>(n));
        }
        off += e.length;
    }
    r->close();
    return 0;
}
