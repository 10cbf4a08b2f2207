// Fuzz target: the bochs reader on arbitrary bytes: open, then status() and read() over the whole
// disk with a bounded number of calls and a bounded allocator (hosted_read.h: fuzz_read_walk).
#include "bochs_read.h"
#include "hosted_read.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return instar::hosted::fuzz_read_walk(instar::bochs::open, data, size);
}
