// Fuzz target: convert -n's existing-image writer (vhdx_existing_write.h's open_writer) over a hostile VHDX (fixed, dynamic).
// The shared body is tests/formats/fuzz_existing_writer.h.
#include "fuzz_existing_writer.h"
#include "vhdx_existing_write.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return instar::hosted::existing_fuzz::fuzz_existing_writer(data, size, instar::vhdx::open_writer);
}
