// Fuzz target: vmdk create() with sizes and option values taken from the input (nonsense included),
// into a MemoryTarget with a small budget; an image it accepts must re-open with info() at its size.
//
// Input: [0] subformat, [1] adapter, [2] flags, [3] size shift, [4..11] size, then NUL-separated
// strings: hwversion, toolsversion, backing name, nonsense subformat, nonsense adapter; the rest of
// the input is the backing file's content.
#include "vmdk_create.h"
#include "vmdk_create_reparse.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t BUDGET = 4u << 20;            // real bytes per output file
constexpr std::uint64_t MAX_SPLIT_BYTES = 64ull << 30; // 32 extents: keeps one run fast
constexpr std::uint64_t MAX_CHECKED = 64ull << 40;     // info() refuses larger extents (instar's bound)

std::string next_string(const std::uint8_t*& p, const std::uint8_t* end, bool clean) {
    std::string s;
    while (p < end && *p != 0) {
        char c = static_cast<char>(*p++);
        if (clean)
            c = "abcdefghijklmnopqrstuvwxyz0123456789._-"[static_cast<unsigned char>(c) % 39];
        s.push_back(c);
    }
    if (p < end)
        ++p;
    return s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using instar::guest::Status;
    if (size < 12)
        return 0;
    static const char* const SUBFORMATS[] = {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                                             "twoGbMaxExtentFlat", "streamOptimized"};
    static const char* const ADAPTERS[] = {"ide", "buslogic", "lsilogic", "legacyESX"};
    const std::uint8_t flags = data[2];
    std::uint64_t raw = 0;
    for (int i = 0; i < 8; ++i)
        raw |= static_cast<std::uint64_t>(data[4 + i]) << (8 * i);
    const std::uint64_t sz = raw >> (data[3] % 64);
    const std::uint8_t* p = data + 12;
    const std::uint8_t* end = data + size;
    const std::string hw = next_string(p, end, true);
    const std::string tools = next_string(p, end, true);
    const std::string backing_name = next_string(p, end, true);
    const std::string bad_sub = next_string(p, end, false);
    const std::string bad_adapter = next_string(p, end, false);
    instar::hosted::MemoryDevice backing(std::vector<std::uint8_t>(p, end));

    instar::hosted::CreateParams params;
    const unsigned sub = data[0] % 6;
    const bool split = sub == 2 || sub == 3;
    params.size = split && sz > MAX_SPLIT_BYTES ? sz % MAX_SPLIT_BYTES : sz;
    params.file_name = (flags & 0x80) ? "odd.name.vmdk" : "f.vmdk";
    if (sub < 5)
        params.options.emplace_back("subformat", SUBFORMATS[sub]);
    else if (data[0] & 0x40)
        params.options.emplace_back("subformat", bad_sub);
    if (data[1] % 5 < 4)
        params.options.emplace_back("adapter_type", ADAPTERS[data[1] % 5]);
    else if (data[1] & 0x40)
        params.options.emplace_back("adapter_type", bad_adapter);
    if (flags & 1)
        params.options.emplace_back("compat6", (flags & 2) ? "on" : "off");
    if (flags & 4)
        params.options.emplace_back("zeroed_grain", "on");
    if (flags & 8)
        params.options.emplace_back("hwversion", hw.empty() ? "undefined" : hw);
    if (flags & 0x10)
        params.options.emplace_back("toolsversion", tools);
    if (flags & 0x20) {
        params.backing_file = backing_name.empty() ? "b.vmdk" : backing_name;
        params.backing = (data[1] & 0x80) ? nullptr : &backing;
    }
    if (flags & 0x40)
        params.backing_fmt = (data[0] & 0x80) ? "qcow2" : "vmdk";
    if (data[3] & 0x40)
        params.options.emplace_back("preallocation", (data[3] & 0x80) ? "metadata" : "full");
    params.memory_budget = 1u << 20;

    instar::hosted::MemoryTarget target(BUDGET);
    const Status st = instar::hosted::run_create(&instar::vmdk::create, params, target);
    if (st != Status::Ok) {
        if (target.reason_text().empty() && st != Status::TooLarge && st != Status::IoError)
            std::abort(); // every refusal of the user's values carries qemu's reason
        return 0;
    }
    const std::uint64_t rounded = (params.size + 511) / 512 * 512;
    if (rounded == 0 || rounded > MAX_CHECKED)
        return 0; // qemu's own images of size 0 do not open either
    const auto r = vmdk_create_test::reparse(target);
    if (r.status != Status::Ok || r.info.virtual_size != rounded)
        std::abort();
    return 0;
}
