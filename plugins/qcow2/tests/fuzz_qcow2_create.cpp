// Fuzz target: the qcow2 emitter on sizes and option values taken from the input (nonsense
// included), into memory with a small budget. It must never crash; when it succeeds, the plugin's
// own info() must read the image back with the same (sector-rounded) virtual size.
#include "hosted_create.h"
#include "hosted_support.h"
#include "qcow2_create.h"
#include "qcow2_format.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// The output bytes one run may hold: enough for the metadata of small images, so preallocating or
// huge L1 tables fail fast with TooLarge instead of taking the fuzzer's time.
constexpr std::uint64_t OUTPUT_BUDGET = 4u << 20;
// The guest arena stand-in: a 2 MiB-cluster image needs a few clusters of buffers.
constexpr std::size_t MEMORY_BUDGET = 16u << 20;
// How much of a created image info() gets: it only reads the header cluster.
constexpr std::uint64_t INFO_PREFIX = 2u << 20;

class Input {
public:
    Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
    std::uint64_t u64() {
        std::uint64_t v = 0;
        for (int k = 0; k < 8; ++k)
            v = (v << 8) | byte();
        return v;
    }
    std::string text(std::size_t max) {
        const std::size_t len = std::min<std::size_t>(byte(), max);
        std::string s;
        for (std::size_t k = 0; k < len; ++k) {
            const char c = static_cast<char>(byte());
            s.push_back(c == 0 ? 'x' : c);
        }
        return s;
    }

private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t i_ = 0;
};

template <std::size_t N> const char* pick(Input& in, const char* const (&choices)[N]) {
    return choices[in.byte() % N];
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using instar::guest::Status;
    static const char* const CLUSTERS[] = {nullptr, "512", "1024", "4096", "16384", "65536", "2097152",
                                           "0", "1000", "4194304", "4294967296", "18446744073709551615"};
    static const char* const REFCOUNTS[] = {nullptr, "1", "2", "4", "8", "16", "32", "64", "0", "3", "128"};
    static const char* const COMPAT[] = {nullptr, "0.10", "1.1", "v2", "v3", "2", ""};
    static const char* const BOOLS[] = {nullptr, "on", "off"};
    static const char* const COMPRESSION[] = {nullptr, "zlib", "zstd", "lz4"};
    static const char* const PREALLOC[] = {nullptr, "off", "metadata", "falloc", "full", "sparse"};

    Input in(data, size);
    instar::hosted::CreateParams p;
    const std::uint64_t raw = in.u64();
    p.size = raw >> (in.byte() % 64); // from tiny to 16 EiB
    p.memory_budget = MEMORY_BUDGET;
    const std::pair<const char*, const char*> opts[] = {
        {"cluster_size", pick(in, CLUSTERS)},       {"refcount_bits", pick(in, REFCOUNTS)},
        {"compat", pick(in, COMPAT)},               {"extended_l2", pick(in, BOOLS)},
        {"lazy_refcounts", pick(in, BOOLS)},        {"compression_type", pick(in, COMPRESSION)},
        {"preallocation", pick(in, PREALLOC)},
    };
    for (const auto& [k, v] : opts)
        if (v != nullptr)
            p.options.emplace_back(k, v);
    if (in.byte() & 1)
        p.backing_file = in.text(255) + (in.byte() & 1 ? std::string(in.byte() * 8u, 'b') : "");
    if (in.byte() & 1)
        p.backing_fmt = in.text(16);

    instar::hosted::MemoryTarget target(OUTPUT_BUDGET);
    // An external data file (the host makes it; its name is stored in the header), with or without
    // data_file_raw, or data_file_raw alone (qemu's "data-file-raw requires data-file").
    const std::uint8_t data_mode = in.byte() % 4;
    if (data_mode != 0 && data_mode != 3) {
        p.options.emplace_back("data_file", in.text(64));
        p.data_file = &target.data_output();
    }
    if (data_mode >= 2)
        p.options.emplace_back("data_file_raw", "on");
    const Status st = instar::hosted::run_create(instar::qcow2::create, p, target);
    if (st != Status::Ok) {
        if (target.reason_text().empty())
            std::abort(); // every refusal carries qemu's words
        return 0;
    }
    auto& out = target.image_output();
    std::vector<std::uint8_t> head(static_cast<std::size_t>(std::min(out.length(), INFO_PREFIX)));
    if (!head.empty() && out.read(0, head.data(), head.size()) != Status::Ok)
        std::abort();
    instar::hosted::MemoryDevice dev(std::move(head));
    const auto r = instar::hosted::run_info(instar::qcow2::info, dev, {}, 8u << 20);
    if (r.status != Status::Ok || r.info.virtual_size != ((p.size + 511) & ~std::uint64_t{511}))
        std::abort();
    return 0;
}
