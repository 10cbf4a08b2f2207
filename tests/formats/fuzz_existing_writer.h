// The body of convert -n's existing-image writer fuzz targets for vpc and vhdx (fuzz_vpc_existing,
// fuzz_vhdx_existing): the input is the image; a few writes and zero writes at offsets derived from
// it follow. It must never crash, write past its budget or loop; requests past the virtual size are
// Invalid. (qcow2's and vmdk's targets bound their requests by the header's size instead.)
#pragma once

#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <instar/guest/write_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace instar::hosted::existing_fuzz {

using instar::guest::Status;

constexpr std::uint64_t OUTPUT_BUDGET = 64u << 20; // the image may grow to this much at most
constexpr std::size_t MEMORY_BUDGET = 8u << 20;    // the guest arena stand-in
constexpr std::uint64_t MAX_REQUEST = 128u << 10;  // bytes per fuzzed request
constexpr std::uint64_t SPAN = 64u << 20;          // requests start below this virtual offset
constexpr int OPS = 12;

class ExistingFile final : public instar::guest::BlockDevice {
public:
    ExistingFile(const std::uint8_t* d, std::size_t n) : out_(OUTPUT_BUDGET) {
        if (n > 0 && out_.write(0, d, n) != Status::Ok)
            std::abort();
    }
    std::uint64_t size() const override { return out_.length(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (offset > size() || len > size() - offset)
            return Status::IoError;
        return out_.read(offset, buf, len);
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override { return out_.write(offset, buf, len); }

private:
    instar::hosted::MemoryOutput out_;
};

// The whole target for a writer whose open_writer refuses what it cannot write and answers
// requests past the virtual size with Invalid (vpc, vhdx): the input is the image.
inline int fuzz_existing_writer(const std::uint8_t* data, std::size_t size, instar::guest::OpenWriterFn open_writer) {
    if (size > OUTPUT_BUDGET)
        return 0;
    ExistingFile file(data, size);
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    instar::guest::OpenRequest req{&file, nullptr, 0, &alloc, &instar::hosted::host_codecs(), nullptr, nullptr,
                                   100000};
    instar::guest::ImageWriter* w = nullptr;
    if (open_writer(req, &w) != Status::Ok)
        return 0;
    std::uint64_t seed = size;
    for (std::size_t i = 0; i < std::min<std::size_t>(size, 64); ++i)
        seed = seed * 1099511628211ull ^ data[size - 1 - i];
    std::vector<std::uint8_t> buf(MAX_REQUEST, 0x5a);
    bool ok = true;
    for (int op = 0; op < OPS && ok; ++op) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const std::uint64_t at = ((seed >> 16) % (SPAN / 512)) * 512;
        const std::uint64_t len = ((seed >> 40) % (MAX_REQUEST / 512) + 1) * 512;
        const Status st = (seed & 1) ? w->write(at, buf.data(), static_cast<std::size_t>(len))
                                     : w->write_zeroes(at, len, true);
        ok = st == Status::Ok || st == Status::Invalid;
    }
    if (ok && w->finish() != Status::Ok)
        ok = false;
    w->close();
    if (alloc.peak() > MEMORY_BUDGET)
        std::abort();
    return 0;
}

} // namespace instar::hosted::existing_fuzz
