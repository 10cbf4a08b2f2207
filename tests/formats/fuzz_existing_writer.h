// The body of convert -n's existing-image writer fuzz targets (fuzz_vpc_existing, fuzz_vhdx_existing,
// fuzz_qcow2_existing, fuzz_vmdk_existing): the input is the image; a few writes and zero writes at
// offsets derived from it follow. It must never crash, write past its budget or loop.
#pragma once

#include "hosted_create.h"
#include "hosted_existing.h"
#include "hosted_read.h"
#include "hosted_support.h"

#include <instar/guest/write_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace instar::hosted::existing_fuzz {

using instar::guest::Status;

constexpr std::uint64_t OUTPUT_BUDGET = 64u << 20; // the image may grow to this much at most
constexpr std::size_t MEMORY_BUDGET = 8u << 20;    // the guest arena stand-in
constexpr std::uint64_t MAX_REQUEST = 128u << 10;  // bytes per fuzzed request
constexpr std::uint64_t SPAN = 64u << 20;          // unbounded requests start below this virtual offset
constexpr int OPS = 12;

// Where the requests go. A writer that answers requests past the virtual size with Invalid (vpc,
// vhdx) gets requests anywhere below SPAN (the defaults). A writer whose caller keeps requests inside
// the header's virtual size (qcow2, vmdk: `inside` set, `disk` that size as read from the input) gets
// requests inside it, and each must succeed.
struct Requests {
    bool inside = false;
    std::uint64_t disk = 0;
    std::uint64_t output_budget = OUTPUT_BUDGET;
    bool data_file = false; // an empty second file (a qcow2 external data file) in OpenRequest::files
};

// Fuzz input -> image file -> open_writer -> OPS requests -> finish.
inline int fuzz_existing_writer(const std::uint8_t* data, std::size_t size, instar::guest::OpenWriterFn open_writer,
                                Requests bounds = {}) {
    if (size > bounds.output_budget)
        return 0;
    ExistingFile file(data, size, static_cast<std::size_t>(bounds.output_budget));
    if (!file.ok())
        std::abort();
    ExistingFile data_file(nullptr, 0, static_cast<std::size_t>(bounds.output_budget));
    instar::guest::BlockDevice* files[] = {&data_file};
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    instar::guest::OpenRequest req{&file, bounds.data_file ? files : nullptr, bounds.data_file ? 1u : 0u, &alloc,
                                   &instar::hosted::host_codecs(), nullptr, nullptr, 100000};
    instar::guest::ImageWriter* w = nullptr;
    if (open_writer(req, &w) != Status::Ok)
        return 0;
    std::uint64_t seed = size;
    for (std::size_t i = 0; i < std::min<std::size_t>(size, 64); ++i)
        seed = seed * 1099511628211ull ^ data[size - 1 - i];
    std::vector<std::uint8_t> buf(MAX_REQUEST, 0x5a);
    const bool inside = bounds.inside;
    const std::uint64_t sectors = inside ? bounds.disk / 512 : SPAN / 512;
    bool ok = true;
    for (int op = 0; op < OPS && sectors > 0 && ok; ++op) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const std::uint64_t at = ((seed >> 16) % sectors) * 512;
        std::uint64_t len = ((seed >> 40) % (MAX_REQUEST / 512) + 1) * 512;
        if (inside)
            len = std::min<std::uint64_t>(len, bounds.disk - at);
        const Status st = (seed & 1) ? w->write(at, buf.data(), static_cast<std::size_t>(len))
                                     : w->write_zeroes(at, len, true);
        ok = st == Status::Ok || (!inside && st == Status::Invalid);
    }
    if (ok && w->finish() != Status::Ok)
        ok = false;
    w->close();
    if (alloc.peak() > MEMORY_BUDGET)
        std::abort();
    return 0;
}

} // namespace instar::hosted::existing_fuzz
