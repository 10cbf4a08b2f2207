// Fuzz target: the existing-image writer (vmdk_existing_write.h: commit's base, convert -n) over a
// hostile monolithicSparse image. The shared body is tests/formats/fuzz_existing_writer.h; requests
// stay inside the header's capacity (open_writer checked it).
#include "fuzz_existing_writer.h"
#include "vmdk_existing_write.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace instar::hosted::existing_fuzz;
    std::uint64_t sectors = 0; // little-endian capacity in sectors at byte 12
    for (int i = 7; i >= 0 && size >= 20; --i)
        sectors = sectors << 8 | data[12 + i];
    // A capacity whose byte size overflows has no requests (open_writer refuses it anyway).
    const std::uint64_t disk = sectors > (~std::uint64_t{0} >> 9) ? 0 : sectors * 512;
    return fuzz_existing_writer(data, size, instar::vmdk::open_writer, Requests{true, disk, 32u << 20});
}
