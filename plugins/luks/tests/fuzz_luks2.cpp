// Fuzz target: the LUKS2 header and metadata reader (luks2_json.cpp, luks2_header.cpp) and the
// luks module's LUKS2 entry points on arbitrary bytes, with a bounded allocator. The input is used
// three ways: as metadata text straight into luks2_parse_json; as the metadata of a header pair
// whose checksums are made valid (so the JSON checks are reached through luks2_load, info and open);
// and as an image by itself. open runs with a passphrase only when every key derivation is cheap
// (a real cost is slow, not a bug). Seeds: corpus/luks2-*.json (cryptsetup's metadata).
#include "hosted_support.h"
#include "luks2_builder.h"
#include "luks2_format.h"
#include "luks2_header.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

void run_volume(const std::vector<std::uint8_t>& img) {
    instar::hosted::MemoryDevice dev(img);
    bool match = false;
    (void)instar::luks::luks_any_probe(dev, &match);
    (void)instar::hosted::run_info(&instar::luks::luks_any_info, dev, {}, 8 << 20);
    instar::hosted::BudgetAllocator alloc(8 << 20);
    auto* h = new instar::luks::Luks2Header;
    instar::luks::LuksWhy why;
    const bool parsed = instar::luks::luks2_load(dev, alloc, h, &why) == instar::guest::Status::Ok;
    bool cheap = parsed && h->digest_iterations <= 64;
    for (const auto& s : h->slots)
        cheap = cheap && (!s.present || (s.iterations <= 64 && s.memory_kib <= 1024));
    delete h;
    if (!cheap)
        return;
    static const std::uint8_t PASS[] = {'x'};
    instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, nullptr, nullptr, 100000, PASS, sizeof PASS};
    instar::guest::ImageReader* r = nullptr;
    if (instar::luks::luks_any_open(req, &r) == instar::guest::Status::Ok) {
        std::uint8_t buf[8192];
        if (r->virtual_size() >= sizeof buf)
            (void)r->read(0, buf, sizeof buf);
        r->close();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    {
        instar::hosted::BudgetAllocator alloc(1 << 20);
        auto* h = new instar::luks::Luks2Header;
        instar::luks::LuksWhy why;
        (void)instar::luks::luks2_parse_json(reinterpret_cast<const char*>(data), size, luks2_test::HDR, 1 << 20, alloc,
                                             h, &why);
        delete h;
    }
    if (size < luks2_test::HDR - 4096) {
        // The bytes as metadata: a header pair with valid checksums, key slot area and a payload.
        std::vector<std::uint8_t> img(luks2_test::SEG_OFFSET + 8192);
        luks2_test::write_headers(img, std::string(reinterpret_cast<const char*>(data), size));
        run_volume(img);
    }
    run_volume(std::vector<std::uint8_t>(data, data + size));
    return 0;
}
