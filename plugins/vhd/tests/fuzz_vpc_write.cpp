// Fuzz target: the VHD writer under arbitrary sequences of writes, zero writes and compressed
// writes (in and out of order, unaligned, out of range) after a create with fuzzed options. Every
// in-range request must succeed, every out-of-range one be refused; afterwards info() must accept
// the image and the virtual disk, read back through the BAT, must equal a shadow copy.
#include "hosted_create.h"
#include "hosted_support.h"
#include "vpc_format.h"
#include "vpc_write.h"

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

std::uint32_t be32(const std::vector<std::uint8_t>& b, std::uint64_t at) {
    return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
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
    const std::uint64_t disk = take(p, n, 3) % (MAX_SIZE + 1);
    const bool fixed = flags & 4;
    const std::uint64_t block = 2 * MiB;

    std::vector<std::pair<std::string, std::string>> options;
    if (fixed)
        options.emplace_back("subformat", "fixed");
    if (flags & 8)
        options.emplace_back("force_size", "on");
    std::vector<instar::guest::CreateOption> opts;
    for (const auto& [k, v] : options)
        opts.push_back({k.c_str(), v.c_str()});
    instar::hosted::CreateParams cp;
    instar::hosted::BudgetAllocator alloc(4 * MiB);
    instar::guest::CreateRequest req{};
    req.size = disk;
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = "fuzz.vhd";
    req.unix_time = cp.unix_time;
    req.random = cp.random;
    req.qemu_version = cp.qemu_version;
    req.allocator = &alloc;
    instar::hosted::MemoryTarget target(64 * MiB);
    instar::guest::ImageWriter* w = nullptr;
    if (const Status st = instar::vpc::create_writer(req, target, &w); st != Status::Ok) {
        std::fprintf(stderr, "%s\n", target.reason_text().c_str());
        fail("create_writer refused a valid request", static_cast<std::uint64_t>(st), disk);
    }
    // The writer takes the image's whole virtual size: the size asked for, rounded up to sectors
    // and (without force_size) to the CHS geometry, as info() reports it.
    OutputView created(target.image_output());
    const auto ci = instar::hosted::run_info(&instar::vpc::info, created, {}, 1u << 20);
    if (fixed && disk == 0) { // a lone footer, which qemu (and info) read as a dynamic disk's copy
        w->close();
        return 0;
    }
    if (ci.status != Status::Ok || ci.info.virtual_size < ((disk + 511) & ~std::uint64_t{511}))
        fail("info after create", static_cast<std::uint64_t>(ci.status), ci.info.virtual_size);
    const std::uint64_t vsize = ci.info.virtual_size;
    if (w->cluster_size() != (fixed ? 0 : block) || !w->zero_init())
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
    const auto r = instar::hosted::run_info(&instar::vpc::info, view, {}, 1u << 20);
    if (r.status != Status::Ok || r.info.virtual_size != vsize)
        fail("info", static_cast<std::uint64_t>(r.status), r.info.virtual_size);
    // Read the disk back: in place for a fixed disk, through the BAT (at 1536) for a dynamic one.
    const std::vector<std::uint8_t> img = target.image_output().bytes();
    for (std::uint64_t o = 0; o < vsize; o += 512) {
        std::uint64_t at = o;
        if (!fixed) {
            const std::uint32_t entry = be32(img, 1536 + 4 * (o / block));
            if (entry == 0xFFFFFFFFu) {
                for (std::uint64_t i = 0; i < 512; ++i)
                    if (shadow[o + i] != 0)
                        fail("unallocated block holds data", o, i);
                continue;
            }
            at = std::uint64_t{entry} * 512 + 512 + o % block;
            // Every allocated block's bitmap marks all sectors present, as qemu writes it.
            if (img[std::uint64_t{entry} * 512] != 0xFF)
                fail("bitmap", o, entry);
        }
        if (at + 512 > img.size())
            fail("data past the end", o, at);
        if (std::memcmp(img.data() + at, shadow.data() + o, 512) != 0)
            fail("data mismatch", o, at);
    }
    // The footer ends the file (and, for dynamic disks, equals the copy at 0).
    if (img.size() < 512 || std::memcmp(img.data() + img.size() - 512, "conectix", 8) != 0)
        fail("no footer at the end", img.size());
    if (!fixed && std::memcmp(img.data() + img.size() - 512, img.data(), 512) != 0)
        fail("footer copies differ");
    return 0;
}
