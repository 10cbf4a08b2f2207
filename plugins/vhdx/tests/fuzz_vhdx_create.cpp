// Fuzz target: the VHDX emitter on sizes and option values taken from arbitrary bytes (nonsense
// included), into a bounded MemoryTarget; whatever it creates must parse back with info().
#include "hosted_create.h"
#include "hosted_support.h"
#include "vhdx_create.h"
#include "vhdx_format.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using instar::hosted::MemoryOutput;
using instar::guest::Status;

// A read-only view of a MemoryOutput at its logical length (a fixed 64 TiB image is never materialised).
class OutputView final : public instar::guest::BlockDevice {
public:
    explicit OutputView(MemoryOutput& out) : out_(out) {}
    std::uint64_t size() const override { return out_.length(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override { return out_.read(offset, buf, len); }
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }

private:
    MemoryOutput& out_;
};

std::uint64_t take64(const std::uint8_t*& p, std::size_t& n) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8 && n > 0; ++i, --n)
        v |= static_cast<std::uint64_t>(*p++) << (8 * i);
    return v;
}

// A small valid parent, made once with the emitter itself.
const std::vector<std::uint8_t>& parent_image() {
    static const std::vector<std::uint8_t> bytes = [] {
        instar::hosted::MemoryTarget t(16u << 20);
        instar::hosted::CreateParams p;
        p.size = 1u << 20;
        const Status st = instar::hosted::run_create(instar::vhdx::create, p, t);
        if (st != Status::Ok) {
            std::fprintf(stderr, "parent: status %d: %s\n", static_cast<int>(st), t.reason_text().c_str());
            std::abort();
        }
        return t.image_output().bytes();
    }();
    return bytes;
}

// Scales a raw value into an interesting range, keeping some raw nonsense.
std::uint64_t pick(std::uint64_t raw, std::uint8_t how) {
    switch (how & 3) {
    case 0: return raw;                              // anything, mostly refused
    case 1: return raw % (65ull << 40);              // around the 64 TiB limit
    case 2: return (raw % 300) << 20;                // whole MiB up to 300 MiB
    default: return raw % (5u << 20);                // below a few MiB, unaligned
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::uint8_t* p = data;
    std::size_t n = size;
    if (n < 2)
        return 0;
    const std::uint8_t flags = *p++;
    const std::uint8_t how = *p++;
    n -= 2;
    instar::hosted::CreateParams cp;
    cp.size = pick(take64(p, n), how);
    const std::uint64_t block = pick(take64(p, n), how >> 2);
    const std::uint64_t log = pick(take64(p, n), how >> 4);
    cp.memory_budget = 4u << 20; // a 1 MiB BAT chunk, a 64 KiB table and a 64 KiB locator fit
    if (flags & 1)
        cp.options.emplace_back("block_size", std::to_string(block));
    if (flags & 2)
        cp.options.emplace_back("log_size", std::to_string(log));
    if (flags & 4)
        cp.options.emplace_back("subformat", (flags & 8) ? "fixed" : (flags & 16) ? "dynamic" : "differencing");
    if (flags & 32)
        cp.options.emplace_back("block_state_zero", (flags & 8) ? "off" : "on");
    std::vector<std::uint8_t> rest(p, p + n);
    std::unique_ptr<instar::hosted::MemoryDevice> parent;
    if (flags & 64) {
        // The remaining bytes are the parent name; an odd flag byte 1 makes the parent garbage.
        cp.backing_file.assign(rest.begin(), rest.end());
        cp.backing_file.resize(std::strlen(cp.backing_file.c_str())); // stop at a NUL, as a C string would
        if (cp.backing_file.empty())
            cp.backing_file = "p";
        parent = std::make_unique<instar::hosted::MemoryDevice>((how & 0x40) ? rest : parent_image());
        if (!(flags & 128))
            cp.backing = parent.get();
        if (how & 0x80)
            cp.backing_fmt = (how & 0x40) ? "qcow2" : "vhdx";
    }
    instar::hosted::MemoryTarget target(24u << 20);
    const Status st = instar::hosted::run_create(instar::vhdx::create, cp, target);
    if (st != Status::Ok) {
        if (target.reason_text().empty()) {
            std::fprintf(stderr, "no reason for status %d\n", static_cast<int>(st));
            std::abort(); // every refusal carries a reason
        }
        return 0;
    }
    OutputView view(target.image_output());
    const auto r = instar::hosted::run_info(&instar::vhdx::info, view, {}, 1u << 20);
    // qemu's own open check miscounts a fixed disk's last partial block once sector bitmap entries
    // precede it, and refuses images qemu-img created (fixed, block_state_zero=off, size not a
    // multiple of the block size); info() does as qemu does, so Corrupt is right there.
    bool fixed = false, zero_off = false;
    for (const auto& [k, v] : cp.options) {
        fixed |= k == "subformat" && v == "fixed";
        zero_off |= k == "block_state_zero" && v == "off";
    }
    if (fixed && zero_off && r.status == Status::Corrupt)
        return 0;
    if (r.status != Status::Ok || r.info.virtual_size != ((cp.size + 511) & ~std::uint64_t{511})) {
        std::fprintf(stderr, "info: status %d, size %llu for %llu\n", static_cast<int>(r.status),
                     static_cast<unsigned long long>(r.info.virtual_size), static_cast<unsigned long long>(cp.size));
        std::abort();
    }
    return 0;
}
