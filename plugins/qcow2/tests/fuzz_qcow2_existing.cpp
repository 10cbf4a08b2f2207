// Fuzz target: convert -n's existing-image writer (qcow2_existing_write.h) over a hostile image.
// The shared body is tests/formats/fuzz_existing_writer.h; requests stay inside the header's virtual
// size (open_writer checked it), as op_convert keeps them.
#include "fuzz_existing_writer.h"
#include "qcow2_existing_write.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace instar::hosted::existing_fuzz;
    std::uint64_t disk = 0; // big-endian size at byte 24
    for (std::size_t i = 24; i < 32 && size >= 32; ++i)
        disk = disk << 8 | data[i];
    // An empty data file beside it: an image with the data-file bit writes its data there.
    return fuzz_existing_writer(data, size, instar::qcow2::open_writer, Requests{true, disk, 32u << 20, true});
}
