// Fuzz target: the DMG reader on arbitrary bytes: open (koly trailer, resource fork or XML plist,
// mish blocks), then status() and read() over the whole disk with a bounded number of calls and a
// bounded allocator (hosted_read.h: fuzz_read_walk). Info shares dmg_load with open.
#include "dmg_read.h"
#include "hosted_read.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return instar::hosted::fuzz_read_walk(instar::dmg::open, data, size);
}
