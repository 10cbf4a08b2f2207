// Fuzz target: convert -n's existing-image writer (vpc_write.h's open_writer) over a hostile VHD (fixed, dynamic with any block size, differencing).
// The shared body is tests/formats/fuzz_existing_writer.h.
#include "fuzz_existing_writer.h"
#include "vpc_write.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return instar::hosted::existing_fuzz::fuzz_existing_writer(data, size, instar::vpc::open_writer);
}
