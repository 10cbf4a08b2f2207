// Test support for the read side (read_api.h): run a format's open() hosted, dump the virtual disk
// and its extents, so differential tests can compare with `qemu-img convert -O raw` and `qemu-img
// map`. Never used by the instar binary itself.
#pragma once

#include "instar/guest/read_api.h"

#include <cstdint>
#include <string>
#include <vector>

namespace instar::hosted {

// zlib and zstd on the host, behaving as the guest runtime's Codecs do (TooLarge past dst_cap).
const guest::Codecs& host_codecs();

struct DumpedExtent {
    std::uint64_t start = 0;
    guest::Extent extent{};
};

struct ReadDump {
    guest::Status status = guest::Status::Ok;
    std::string reason;                // the format's ReasonSink text, if any
    std::uint64_t virtual_size = 0;
    std::vector<DumpedExtent> extents; // status() over the whole disk, merged where equal
    std::size_t peak_memory = 0;       // the reader's peak allocation
};

// Opens `image` (with `files` as the request's files) through `open`, walks status() over the whole
// disk and, when out_path is not empty, writes the image's own bytes (read(): Unallocated and Zero
// as zeros) to out_path as a sparse file of virtual_size bytes. `chunk` bounds each read().
ReadDump dump_image(guest::OpenFn open, const std::string& image, const std::vector<std::string>& files,
                    const std::string& out_path, const char* snapshot = nullptr,
                    std::size_t memory_budget = 256u << 20, std::size_t chunk = 2u << 20);

// The body of a `fuzz_<fmt>_read` target: opens `data` as a single-file image through `open` with a
// 1 MiB budget, then walks status() and read() over the whole disk (at most 4096 status() calls,
// 256 KiB per read), trapping when a reader breaks read_api.h's contract (a run of 0 or past the end,
// non-zero bytes in a Zero or Unallocated run). Always returns 0 (libFuzzer's convention).
int fuzz_read_walk(guest::OpenFn open, const std::uint8_t* data, std::size_t size);

// A ReasonSink that keeps the last reason given (unit tests).
struct ReasonText final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

// A unit test's view of a reader over an in-memory image: opened through `open` (an arena of
// `memory_budget` bytes, the host codecs), status() walked over the whole disk (it stops at the
// first failure, or with Invalid at a run of length 0), then, if that went well, every byte read in
// reads of at most `chunk` bytes. `status` is the first failure; `reason` the reader's last reason.
struct MemoryWalk {
    guest::Status status = guest::Status::Ok;
    std::string reason;
    std::vector<guest::Extent> extents; // status() runs in order, not merged
    std::vector<std::uint8_t> data;     // the disk, virtual_size bytes once the walk passed
};
MemoryWalk walk_memory_image(guest::OpenFn open, const std::vector<std::uint8_t>& image, std::size_t memory_budget,
                             std::size_t chunk);

// main() of a `<fmt>_hosted_read` tool:
//   TOOL [--file F]... [-l SNAPSHOT] [--chunk BYTES] IMAGE [OUT.raw]
// prints {"status": N, "reason": "...", "virtual-size": N, "peak-memory": N, "map": [{"start", "length",
// "allocation": "data"|"zero"|"unallocated", "compressed", "offset"?, "device"?}]} and writes OUT.raw.
int hosted_read_main(guest::OpenFn open, int argc, char** argv);

} // namespace instar::hosted
