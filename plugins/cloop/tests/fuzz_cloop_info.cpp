// Fuzz target: cloop probe and info on arbitrary bytes, with a bounded allocator.
#include "cloop_format.h"
#include "hosted_support.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::cloop::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::cloop::info, dev, {}, 1 << 20);
    return 0;
}
