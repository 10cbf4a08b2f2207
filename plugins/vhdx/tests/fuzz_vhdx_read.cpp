// Fuzz target: the VHDX reader on arbitrary bytes: open, then status() and read() over the whole
// disk with a bounded number of calls and a bounded allocator.
#include "hosted_read.h"
#include "hosted_support.h"
#include "vhdx_read.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {
constexpr int MAX_CALLS = 4096;              // status() calls per input
constexpr std::size_t READ_CAP = 256 * 1024; // bytes per read() call
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace instar;
    hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    hosted::BudgetAllocator alloc(1 << 20);
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), nullptr, nullptr, 100000};
    guest::ImageReader* r = nullptr;
    if (vhdx::open(req, &r) != guest::Status::Ok)
        return 0;
    std::vector<std::uint8_t> buf(READ_CAP);
    const std::uint64_t vsize = r->virtual_size();
    std::uint64_t off = 0;
    for (int calls = 0; off < vsize && calls < MAX_CALLS; ++calls) {
        guest::Extent e{};
        if (r->status(off, vsize - off, &e) != guest::Status::Ok)
            break;
        if (e.length == 0 || e.length > vsize - off)
            __builtin_trap();
        const std::size_t n = e.length < READ_CAP ? static_cast<std::size_t>(e.length) : READ_CAP;
        if (r->read(off, buf.data(), n) != guest::Status::Ok)
            break;
        if (e.allocation != guest::Allocation::Data)
            for (std::size_t i = 0; i < n; ++i)
                if (buf[i] != 0)
                    __builtin_trap();
        off += e.length;
    }
    r->close();
    return 0;
}
