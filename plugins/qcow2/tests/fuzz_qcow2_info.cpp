// Fuzz target: qcow2 info on arbitrary bytes, through the real encoder and host decoder, with a
// bounded allocator. It must never crash, hang or exceed its budget.
#include "hosted_support.h"
#include "qcow2_format.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::qcow2::probe(dev, &match);
    (void)instar::hosted::run_info(instar::qcow2::info, dev, {}, 8u << 20);
    return 0;
}
