// Fuzz target: QED probe and info on arbitrary bytes, with a bounded allocator.
#include "hosted_support.h"
#include "qed_format.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::qed::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::qed::info, dev, {}, 1 << 20);
    return 0;
}
