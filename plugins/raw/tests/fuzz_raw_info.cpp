// Fuzz target: raw probe, info and detect_other on arbitrary bytes.
#include "hosted_support.h"
#include "raw_format.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::raw::probe(dev, &match);
    const char* name = nullptr;
    (void)instar::raw::detect_other(dev, &name);
    (void)instar::hosted::run_info(&instar::raw::info, dev, {}, 1 << 20);
    return 0;
}
