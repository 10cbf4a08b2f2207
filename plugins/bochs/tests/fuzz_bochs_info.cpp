// Fuzz target: bochs probe and info on arbitrary bytes, with a bounded allocator.
#include "bochs_format.h"
#include "hosted_support.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::bochs::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::bochs::info, dev, {}, 1 << 20);
    return 0;
}
