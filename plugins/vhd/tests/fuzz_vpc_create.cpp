// Fuzz target: the VHD emitter with sizes, option values, backing names and parent images taken from
// the fuzz bytes; every image it accepts must parse back with the same virtual size.
#include "hosted_create.h"
#include "hosted_support.h"
#include "vpc_create.h"
#include "vpc_format.h"
#include "vpc_geometry.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t OUTPUT_BUDGET = 16u << 20; // real bytes a created image may hold
constexpr std::size_t GUEST_BUDGET = 256u << 10;    // the emitter's arena

using instar::guest::Status;

[[noreturn]] void fail(const char* what, std::uint64_t a, std::uint64_t b) {
    std::fprintf(stderr, "fuzz_vpc_create: %s (%llu, %llu)\n", what, static_cast<unsigned long long>(a),
                 static_cast<unsigned long long>(b));
    std::abort();
}

// Layout: [0] selectors, [1..8] size, [9] size shift, [10] backing name length, name, parent bytes.
struct Input {
    const std::uint8_t* p;
    std::size_t n;
    std::size_t at = 0;
    std::uint8_t byte() { return at < n ? p[at++] : 0; }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in{data, size};
    const std::uint8_t sel = in.byte();
    std::uint64_t raw = 0;
    for (int i = 0; i < 8; ++i)
        raw = (raw << 8) | in.byte();
    const std::uint64_t requested = raw >> (in.byte() % 64);

    instar::hosted::CreateParams p;
    p.size = requested;
    p.memory_budget = GUEST_BUDGET;
    static const char* const SUBFORMATS[] = {nullptr, "dynamic", "fixed", "Fixed"};
    if (const char* s = SUBFORMATS[sel % 4])
        p.options.emplace_back("subformat", s);
    static const char* const FORCE[] = {nullptr, "on", "off"};
    if (const char* f = FORCE[(sel >> 2) % 3])
        p.options.emplace_back("force_size", f);
    const int backing = (sel >> 4) % 3; // 0 none, 1 with the parent device, 2 unopened (-u)
    static const char* const FMTS[] = {nullptr, "vpc", "qcow2", "vhd"};
    if (const char* f = FMTS[sel >> 6])
        p.backing_fmt = f;
    const std::size_t name_len = in.byte();
    for (std::size_t i = 0; i < name_len && in.at < in.n; ++i) {
        const char c = static_cast<char>(in.byte());
        p.backing_file.push_back(c == 0 ? 'x' : c); // the host passes a C string
    }
    std::vector<std::uint8_t> parent_bytes(data + in.at, data + size);
    instar::hosted::MemoryDevice parent(parent_bytes);
    if (backing == 0)
        p.backing_file.clear();
    else if (backing == 1)
        p.backing = &parent;

    instar::hosted::MemoryTarget target(OUTPUT_BUDGET);
    const Status st = instar::hosted::run_create(instar::vpc::create, p, target);
    if (st != Status::Ok)
        return 0;
    if (target.image_output().length() > OUTPUT_BUDGET) // a fixed disk past it cannot have been written
        fail("image longer than the output budget", target.image_output().length(), OUTPUT_BUDGET);
    // A fixed disk of size 0 is a lone footer at offset 0, which readers take for a dynamic disk's
    // copy: qemu-img writes it and cannot open it; so does this emitter.
    if (target.image_output().length() == 512)
        return 0;
    instar::hosted::MemoryDevice image(target.image_output().bytes());
    const auto r = instar::hosted::run_info(&instar::vpc::info, image, {}, 1u << 20);
    if (r.status != Status::Ok)
        fail("info refused a created image", static_cast<std::uint64_t>(r.status), requested);
    // qemu rounds the size up (to sectors, then to a geometry), never down, and by less than one
    // geometry step (16 * 255 sectors) below the CHS limit.
    const std::uint64_t v = r.info.virtual_size;
    if (v < requested || v - requested >= 16 * 255 * 512 + 512 || v > instar::vpc::VHD_MAX_SECTORS * 512)
        fail("virtual size not the request rounded up", v, requested);
    const bool differencing = !p.backing_file.empty();
    const auto* ref = r.info.first_file(instar::guest::FileRole::Backing);
    if (differencing != (ref != nullptr) || (ref != nullptr && ref->name != p.backing_file))
        fail("backing reference lost", differencing, ref != nullptr);
    return 0;
}
