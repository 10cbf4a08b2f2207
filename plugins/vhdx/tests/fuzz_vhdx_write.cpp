// Fuzz target: the VHDX writer under arbitrary sequences of writes, zero writes and compressed
// writes (in and out of order, unaligned, out of range) after a create with fuzzed options. Every
// in-range request must succeed, every out-of-range one be refused; afterwards info() must accept
// the image and the virtual disk, read back through the BAT, must equal a shadow copy.
#include "hosted_create.h"
#include "hosted_support.h"
#include "vhdx_format.h"
#include "vhdx_write.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using instar::guest::Status;
using instar::hosted::MemoryOutput;

constexpr std::uint64_t MiB = 1u << 20;
constexpr std::uint64_t MAX_SIZE = 12 * MiB; // keeps each run's materialised image small
constexpr std::size_t MAX_OPS = 64;

class OutputView final : public instar::guest::BlockDevice {
public:
    explicit OutputView(MemoryOutput& out) : out_(out) {}
    std::uint64_t size() const override { return out_.length(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override { return out_.read(offset, buf, len); }
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }

private:
    MemoryOutput& out_;
};

std::uint64_t take(const std::uint8_t*& p, std::size_t& n, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes && n > 0; ++i, --n)
        v |= static_cast<std::uint64_t>(*p++) << (8 * i);
    return v;
}

std::uint64_t le64(const std::vector<std::uint8_t>& b, std::uint64_t at) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
    return v;
}

[[noreturn]] void fail(const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
    std::fprintf(stderr, "%s (%llu, %llu)\n", what, static_cast<unsigned long long>(a),
                 static_cast<unsigned long long>(b));
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::uint8_t* p = data;
    std::size_t n = size;
    if (n < 4)
        return 0;
    const std::uint8_t flags = static_cast<std::uint8_t>(take(p, n, 1));
    // Not 0: qemu's BAT count for an empty disk wraps to millions of entries (tested by create).
    const std::uint64_t disk = 1 + take(p, n, 3) % MAX_SIZE;
    const std::uint64_t block = (flags & 3) == 0 ? MiB : (flags & 3) == 1 ? 2 * MiB : 8 * MiB;

    std::vector<std::pair<std::string, std::string>> options{{"block_size", std::to_string(block)}};
    if (flags & 4)
        options.emplace_back("subformat", "fixed");
    if (flags & 8)
        options.emplace_back("block_state_zero", "off");
    std::vector<instar::guest::CreateOption> opts;
    for (const auto& [k, v] : options)
        opts.push_back({k.c_str(), v.c_str()});
    instar::hosted::CreateParams cp;
    instar::hosted::BudgetAllocator alloc(4 * MiB);
    instar::guest::CreateRequest req{};
    req.size = disk;
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = "fuzz.vhdx";
    req.unix_time = cp.unix_time;
    req.random = cp.random;
    req.qemu_version = cp.qemu_version;
    req.allocator = &alloc;
    instar::hosted::MemoryTarget target(64 * MiB);
    instar::guest::ImageWriter* w = nullptr;
    if (const Status st = instar::vhdx::create_writer(req, target, &w); st != Status::Ok) {
        std::fprintf(stderr, "%s\n", target.reason_text().c_str());
        fail("create_writer refused a valid request", static_cast<std::uint64_t>(st), disk);
    }
    const std::uint64_t vsize = (disk + 511) & ~std::uint64_t{511};
    if (w->cluster_size() != block || !w->zero_init())
        fail("cluster_size / zero_init");

    std::vector<std::uint8_t> shadow(vsize), buf;
    for (std::size_t op = 0; op < MAX_OPS && n >= 5; ++op) {
        const std::uint8_t kind = static_cast<std::uint8_t>(take(p, n, 1));
        std::uint64_t off = take(p, n, 3) * 512 % (vsize + 4096);
        std::uint64_t len = take(p, n, 1) * 4096 + (kind & 0x10 ? 512 : 0);
        if (kind & 0x20)
            len += take(p, n, 1) * 64 * 1024;
        if (kind & 0x40 && vsize > 0 && off + len > vsize && off < vsize)
            len = vsize - off; // the exact tail
        const bool in_range = off <= vsize && len <= vsize - off;
        buf.assign(len, static_cast<std::uint8_t>(kind | 1));
        Status st;
        switch (kind & 3) {
        case 0:
        case 1:
            st = w->write(off, buf.data(), buf.size());
            if (in_range && st == Status::Ok && len > 0) // len 0: buf.data() may be null
                std::memcpy(shadow.data() + off, buf.data(), len);
            break;
        case 2:
            st = w->write_zeroes(off, len, kind & 4);
            if (in_range && st == Status::Ok && len > 0) // len 0 of an empty disk: shadow.data() may be null
                std::memset(shadow.data() + off, 0, len);
            break;
        default:
            if (w->write_compressed(off, buf.data(), buf.size()) != Status::Unsupported)
                fail("write_compressed");
            continue;
        }
        if (in_range != (st == Status::Ok))
            fail("request status", off, len);
        if (!in_range && st != Status::Invalid)
            fail("out of range not Invalid", off, len);
    }
    if (w->finish() != Status::Ok)
        fail("finish");
    w->close();

    OutputView view(target.image_output());
    const auto r = instar::hosted::run_info(&instar::vhdx::info, view, {}, 1u << 20);
    if (r.status != Status::Ok || r.info.virtual_size != vsize)
        fail("info", static_cast<std::uint64_t>(r.status), r.info.virtual_size);
    // Read the disk back through the BAT (default 1 MiB log: the BAT is at 2 MiB).
    const std::vector<std::uint8_t> img = target.image_output().bytes();
    const std::uint64_t chunk_ratio = (std::uint64_t{1} << 23) * 512 / block;
    for (std::uint64_t b = 0; b * block < vsize; ++b) {
        const std::uint64_t entry = le64(img, 2 * MiB + 8 * (b + b / chunk_ratio));
        const std::uint64_t len = vsize - b * block < block ? vsize - b * block : block;
        const std::uint64_t state = entry & 7;
        if (state == 6) {
            const std::uint64_t at = entry & ~(MiB - 1);
            if (at + len > img.size() && at + block > target.image_output().length())
                fail("block past the end", b, at);
            for (std::uint64_t i = 0; i < len; ++i) {
                const std::uint8_t got = at + i < img.size() ? img[at + i] : 0;
                if (got != shadow[b * block + i])
                    fail("data mismatch", b * block + i, got);
            }
        } else if (state == 0 || state == 2) {
            for (std::uint64_t i = 0; i < len; ++i)
                if (shadow[b * block + i] != 0)
                    fail("unallocated block holds data", b, i);
        } else {
            fail("BAT state", b, state);
        }
    }
    return 0;
}
