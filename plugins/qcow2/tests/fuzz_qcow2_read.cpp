// Fuzz target: the qcow2 reader on arbitrary bytes. Opens the input (with itself as the data file,
// and as snapshot "1" when the input's length is odd) and walks status() and read() over the whole
// disk within a fixed budget of calls and bytes. It must never crash, hang or exceed its memory.
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_read.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

// Bounds on one input's walk: enough to reach every table of a seed image, small enough to keep
// the fuzzer fast on a disk of exabytes.
constexpr int MAX_STATUS_CALLS = 4096;
constexpr std::uint64_t MAX_READ_BYTES = 8u << 20;
constexpr std::size_t READ_CHUNK = 64u << 10;

struct NullReasons final : instar::guest::ReasonSink {
    void reason(const char*, std::size_t) override {}
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using instar::guest::Status;
    std::vector<std::uint8_t> bytes(data, data + size);
    instar::hosted::MemoryDevice image(bytes);
    instar::hosted::MemoryDevice data_file(bytes);
    instar::guest::BlockDevice* files[1] = {&data_file};
    instar::hosted::BudgetAllocator alloc(16u << 20);
    NullReasons reasons;
    instar::guest::OpenRequest req{&image, files, 1, &alloc, &instar::hosted::host_codecs(), &reasons,
                                   size % 2 ? "1" : nullptr, 100000};
    instar::guest::ImageReader* reader = nullptr;
    if (instar::qcow2::open(req, &reader) != Status::Ok)
        return 0;
    std::vector<std::uint8_t> buf(READ_CHUNK);
    const std::uint64_t vsize = reader->virtual_size();
    std::uint64_t read_left = MAX_READ_BYTES;
    std::uint64_t off = 0;
    for (int calls = 0; calls < MAX_STATUS_CALLS && off < vsize; ++calls) {
        instar::guest::Extent e{};
        if (reader->status(off, vsize - off, &e) != Status::Ok || e.length == 0 || e.length > vsize - off)
            break;
        const std::uint64_t n = std::min<std::uint64_t>({e.length, READ_CHUNK, read_left});
        if (n > 0 && reader->read(off, buf.data(), static_cast<std::size_t>(n)) == Status::Ok)
            read_left -= n;
        off += e.length;
    }
    reader->close();
    return 0;
}
