// Fuzz target: vmdk create_writer with a subformat and size from the input, then a sequence of
// writes, zero writes and compressed writes at offsets and lengths from the input (out of range,
// unaligned and repeated ones included), into a MemoryTarget with a small budget. The writer must
// never crash, and an image whose finish() succeeds must re-open with info() at its size.
//
// Input: [0] subformat, [1] flags (zeroed_grain, adapter), [2..4] size in sectors, then 8-byte ops:
// [0] kind, [1..3] offset in sectors, [4..5] length in sectors, [6] fill byte, [7] extra bytes.
#include "hosted_read.h"
#include "vmdk_create_reparse.h"
#include "vmdk_write.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

constexpr std::uint64_t BUDGET = 8u << 20; // real bytes per output file
constexpr std::size_t MAX_OPS = 64;        // keeps one run fast

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using instar::guest::Status;
    if (size < 5)
        return 0;
    static const char* const SUBFORMATS[] = {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                                             "twoGbMaxExtentFlat", "streamOptimized"};
    const std::uint64_t sectors = data[2] | (data[3] << 8) | (static_cast<std::uint64_t>(data[4]) << 16);
    // Split subformats reach the 2 GiB boundary: a few sectors past it.
    const bool split = data[0] % 5 == 2 || data[0] % 5 == 3;
    const std::uint64_t disk = split ? (2ull << 30) + (sectors % 1024) * 512 : sectors * 512 % (64u << 20);
    std::vector<std::pair<std::string, std::string>> kv{{"subformat", SUBFORMATS[data[0] % 5]}};
    if ((data[1] & 1) && data[0] % 5 != 1 && data[0] % 5 != 3)
        kv.emplace_back("zeroed_grain", "on");
    if (data[1] & 2)
        kv.emplace_back("adapter_type", "lsilogic");
    std::vector<instar::guest::CreateOption> opts;
    for (const auto& [k, v] : kv)
        opts.push_back({k.c_str(), v.c_str()});
    instar::hosted::MemoryTarget target(BUDGET);
    instar::hosted::BudgetAllocator alloc(2u << 20);
    static const std::uint8_t random[instar::guest::CREATE_RANDOM_BYTES] = {9, 8, 7, 6, 5, 4, 3, 2};
    instar::guest::CreateRequest req{};
    req.size = disk;
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = "f.vmdk";
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &instar::hosted::host_codecs();
    instar::guest::ImageWriter* w = nullptr;
    if (instar::vmdk::create_writer(req, target, &w) != Status::Ok)
        return 0;
    std::vector<std::uint8_t> buf;
    const std::uint8_t* p = data + 5;
    for (std::size_t n = 0; n < MAX_OPS && p + 8 <= data + size; ++n, p += 8) {
        std::uint64_t off = (p[1] | (p[2] << 8) | (static_cast<std::uint64_t>(p[3]) << 16)) * 512;
        if (split)
            off = (2ull << 30) - (4u << 20) + off % (8u << 20); // around the boundary
        const std::uint64_t len = (p[4] | (p[5] << 8)) % 4096 * 512 + (p[7] & 1) * (p[7] >> 1);
        buf.assign(len, p[6]);
        switch (p[0] % 3) {
        case 0: (void)w->write(off, buf.data(), buf.size()); break;
        case 1: (void)w->write_zeroes(off, len, p[0] & 4); break;
        default: (void)w->write_compressed(off, buf.data(), buf.size()); break;
        }
    }
    const Status st = w->finish();
    w->close();
    if (alloc.peak() > (2u << 20))
        std::abort();
    if (st != Status::Ok || disk == 0)
        return 0;
    const auto r = vmdk_create_test::reparse(target, 16u << 20);
    if (r.status != Status::Ok || r.info.virtual_size != disk)
        std::abort();
    return 0;
}
