// Fuzz target: qcow probe and info, the writer of convert -n (open_writer, a few writes into a
// bounded in-memory copy), then the reader (open, status() and read() over the whole disk with
// bounded calls and memory: hosted_read.h's fuzz_read_walk) on arbitrary bytes.
#include "fuzz_small_writer.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow_create.h"
#include "qcow_format.h"
#include "qcow_read.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::qcow::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::qcow::info, dev, {}, 1 << 20);
    // The first sectors of the disk (the writer checks its bounds against the virtual size).
    instar::hosted::small_writer_fuzz::fuzz_writes(data, size, &instar::qcow::open_writer,
                                                   {{0, 512, false}, {512, 1024, false}, {4096, 4096, true}});
    return instar::hosted::fuzz_read_walk(instar::qcow::open, data, size);
}
