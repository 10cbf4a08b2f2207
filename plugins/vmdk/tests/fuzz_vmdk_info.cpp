// Fuzz target: VMDK probe and info on arbitrary bytes, with a bounded allocator.
#include "hosted_support.h"
#include "vmdk_format.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::vmdk::probe(dev, &match);
    // First pass, then a second pass with the input itself standing in for every extent file.
    const auto r = instar::hosted::run_info(&instar::vmdk::info, dev, {}, 4 << 20);
    if (r.status == instar::guest::Status::NeedFiles) {
        std::vector<instar::guest::BlockDevice*> files(r.info.files.size(), &dev);
        (void)instar::hosted::run_info(&instar::vmdk::info, dev, files, 4 << 20);
    }
    return 0;
}
