// Fuzz target: qcow2 `resize` (qcow2_edit_resize.cpp, with persistent bitmaps carried by
// qcow2_bitmap_carry.h) on a hostile image. The input is the image; the new size (shrinking,
// growing, the same, with or without --shrink, metadata preallocation, a backing file reaching
// past the old end) is derived from its header and last bytes. It must never crash, loop, outgrow
// the arena budget or the file's growth budget, whatever the header, L1/L2 and refcount tables,
// snapshot table and bitmap directory say.
#include "fuzz_edit_host.h"
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_edit.h"

#include <instar/guest/edit_resize.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

using instar::guest::Status;

constexpr std::uint64_t OUTPUT_BUDGET = 64u << 20; // the image may grow by this much at most
constexpr std::size_t MEMORY_BUDGET = 16u << 20;   // the guest arena stand-in

class Host final : public instar::hosted::FuzzEditHost {
public:
    using FuzzEditHost::FuzzEditHost;
};

std::uint64_t be64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = v << 8 | p[i];
    return v;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryOutput file(OUTPUT_BUDGET);
    if (size > 0 && file.write(0, data, size) != Status::Ok)
        return 0;
    const std::uint64_t old_size = size >= 32 ? be64(data + 24) : 0;
    const std::uint8_t pick = size > 0 ? data[size - 1] : 0;
    const std::uint64_t base = old_size / 512 * 512;
    std::uint64_t new_size = 0;
    switch (pick % 6) {
    case 0: new_size = base / 2 / 512 * 512; break;
    case 1: new_size = base + 512; break;
    case 2: new_size = base * 2; break;
    case 3: new_size = base; break;
    case 4: new_size = 1u << 20; break;
    default: new_size = std::uint64_t{64} << 30; break;
    }
    instar::guest::ResizeArgs a{};
    a.new_size = new_size;
    a.old_size = old_size;
    a.prealloc = static_cast<std::uint32_t>((pick >> 3) & 1 ? instar::guest::Prealloc::Metadata
                                                            : instar::guest::Prealloc::Off);
    a.flags = (pick >> 4) & 1 ? 0u : instar::guest::RESIZE_SHRINK;
    if ((pick >> 5) & 1) {
        a.flags |= instar::guest::RESIZE_HAS_BACKING;
        a.backing_size = new_size;
    }
    // The backing chain's bytes a head cluster asks for (RESIZE_DATA_NEED_BACKING), as the host's
    // second run sends them: a short device (a backing file ending inside the cluster) half the time.
    instar::hosted::MemoryOutput backing(OUTPUT_BUDGET);
    instar::guest::BlockDevice* extra[1] = {&backing};
    if ((pick >> 6) & 1) {
        a.flags |= instar::guest::RESIZE_BACKING_BYTES;
        static std::uint8_t pattern[4096];
        for (std::size_t i = 0; i < sizeof pattern; ++i)
            pattern[i] = static_cast<std::uint8_t>(i * 7 + 1);
        (void)backing.write(0, pattern, (pick >> 7) & 1 ? 1536 : sizeof pattern);
    }
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    Host host(file);
    instar::guest::EditRequest req = instar::hosted::fuzz_edit_request(instar::guest::EditCommand::Resize, file, alloc);
    req.args = reinterpret_cast<const std::uint8_t*>(&a);
    req.args_len = sizeof a;
    if ((pick >> 6) & 1) {
        req.extra = extra;
        req.extra_count = 1;
    }
    (void)instar::qcow2::edit(req, host);
    if (alloc.peak() > MEMORY_BUDGET)
        std::abort();
    return 0;
}
