// Fuzz target: LUKS probe, info and open on arbitrary bytes, with a bounded allocator. open runs
// with a passphrase only when every PBKDF2 count is small (a real count is slow, not a bug).
#include "hosted_support.h"
#include "luks_format.h"
#include "luks_header.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::luks::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::luks::info, dev, {}, 1 << 20);
    instar::luks::LuksHeader h;
    instar::luks::LuksWhy why; // every refusal's message is built (numbers, quoted header names)
    const bool detached = size > 0 && (data[size - 1] & 1) != 0;
    if (instar::luks::luks_header_parse(data, size, &h, detached, &why) != instar::guest::Status::Ok)
        return 0;
    bool cheap = h.master_key_iterations <= 64;
    for (const auto& s : h.slots)
        cheap = cheap && (!s.active || s.iterations <= 64);
    if (!cheap)
        return 0;
    instar::hosted::BudgetAllocator alloc(8 << 20);
    static const std::uint8_t PASS[] = {'x'};
    instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, nullptr, nullptr, 100000, PASS, sizeof PASS};
    instar::guest::ImageReader* r = nullptr;
    if (instar::luks::open(req, &r) == instar::guest::Status::Ok) {
        std::uint8_t buf[4096];
        if (r->virtual_size() >= sizeof buf)
            (void)r->read(0, buf, sizeof buf);
        r->close();
    }
    return 0;
}
