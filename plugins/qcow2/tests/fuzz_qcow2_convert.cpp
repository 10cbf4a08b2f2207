// Fuzz target: the convert engine into qcow2's writer, with target options, convert flags and a
// synthetic source (extent runs of data, zeros and unallocated ranges over an optional backing
// image, data with zero sectors) all taken from the input. It must never crash or exceed its
// budgets; when it succeeds, the plugin's own info() must read the image back.
#include "convert_engine.h"
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_format.h"
#include "qcow2_write.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using instar::guest::Allocation;
using instar::guest::Extent;
using instar::guest::Status;

constexpr std::uint64_t MAX_DISK = 4u << 20;        // the virtual disk one run converts
constexpr std::uint64_t OUTPUT_BUDGET = 24u << 20;  // compressed 512-byte clusters still fit
constexpr std::size_t MEMORY_BUDGET = 16u << 20;    // the guest arena stand-in
constexpr std::uint64_t INFO_PREFIX = 2u << 20;

class Input {
public:
    Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
    std::uint32_t u32() {
        std::uint32_t v = 0;
        for (int k = 0; k < 4; ++k)
            v = (v << 8) | byte();
        return v;
    }
    bool empty() const { return i_ >= n_; }

private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t i_ = 0;
};

// An in-memory image with explicit runs; bytes are a per-run fill with some zero sectors.
class FuzzReader final : public instar::guest::ImageReader {
public:
    struct Run {
        std::uint64_t start, length;
        Allocation allocation;
    };
    std::vector<std::uint8_t> bytes;
    std::vector<Run> runs;
    std::uint64_t virtual_size() const override { return bytes.size(); }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        for (const Run& r : runs)
            if (offset >= r.start && offset < r.start + r.length) {
                *out = Extent{};
                out->allocation = r.allocation;
                out->length = std::min(r.start + r.length - offset, length);
                return Status::Ok;
            }
        return Status::Invalid;
    }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (offset > bytes.size() || len > bytes.size() - offset)
            std::abort(); // the engine must stay inside the disk
        std::memcpy(buf, bytes.data() + offset, len);
        return Status::Ok;
    }
    void close() override {}
};

void build(Input& in, FuzzReader& r, std::uint64_t size) {
    r.bytes.assign(size, 0);
    std::uint64_t pos = 0;
    while (pos < size) {
        const std::uint64_t len = std::min<std::uint64_t>(size - pos, (std::uint64_t{in.byte()} + 1) * 512 *
                                                                          (std::uint64_t{1} << (in.byte() % 8)));
        const std::uint8_t kind = in.byte();
        const Allocation a = kind % 3 == 0 ? Allocation::Data : kind % 3 == 1 ? Allocation::Zero : Allocation::Unallocated;
        if (a == Allocation::Data) {
            const std::uint8_t fill = in.byte();
            const std::uint8_t holes = in.byte();
            for (std::uint64_t i = 0; i < len; ++i) {
                const std::uint64_t sector = (pos + i) / 512;
                r.bytes[pos + i] = (holes != 0 && sector % (holes % 16 + 1) == 0) ? 0 : static_cast<std::uint8_t>(fill + i / 4096);
            }
        }
        r.runs.push_back({pos, len, a});
        pos += len;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const char* const CLUSTERS[] = {nullptr, "512", "1024", "4096", "16384", "65536", "2097152"};
    static const char* const REFCOUNTS[] = {nullptr, "1", "2", "4", "8", "16", "32", "64"};
    static const char* const COMPAT[] = {nullptr, "0.10", "1.1"};
    static const char* const BOOLS[] = {nullptr, "on", "off"};
    static const char* const COMPRESSION[] = {nullptr, "zlib", "zstd"};
    static const char* const PREALLOC[] = {nullptr, "off", "metadata", "falloc"};
    Input in(data, size);
    auto pick = [&](const char* const* c, std::size_t n) { return c[in.byte() % n]; };

    std::vector<std::pair<std::string, std::string>> opts;
    const std::pair<const char*, const char*> o[] = {
        {"cluster_size", pick(CLUSTERS, 7)},       {"refcount_bits", pick(REFCOUNTS, 8)},
        {"compat", pick(COMPAT, 3)},               {"extended_l2", pick(BOOLS, 3)},
        {"lazy_refcounts", pick(BOOLS, 3)},        {"compression_type", pick(COMPRESSION, 3)},
        {"preallocation", pick(PREALLOC, 4)},
    };
    for (const auto& [k, v] : o)
        if (v != nullptr)
            opts.emplace_back(k, v);
    instar::convert::Params params;
    const std::uint8_t flags = in.byte();
    params.compressed = flags & 1;
    params.min_sparse = (flags & 2) ? 0 : 512u * (1u << (in.byte() % 10));
    const bool backed = flags & 4;
    params.target_has_backing = backed && (flags & 8);

    const std::uint64_t disk = std::min<std::uint64_t>(MAX_DISK, (in.u32() % MAX_DISK) + 1);
    FuzzReader top;
    FuzzReader back;
    build(in, top, disk);
    if (backed)
        build(in, back, std::min<std::uint64_t>(disk, (in.u32() % disk) + 1));
    instar::guest::ImageReader* chain[2] = {&top, &back};
    instar::convert::Source src{chain, backed ? 2u : 1u, 512u << (in.byte() % 8)};
    instar::guest::ImageReader* target_chain[1] = {&back};
    if (params.target_has_backing) {
        params.target_backing_chain = target_chain;
        params.target_backing_depth = 1;
    }

    std::vector<instar::guest::CreateOption> copts;
    for (const auto& [k, v] : opts)
        copts.push_back({k.c_str(), v.c_str()});
    instar::hosted::MemoryTarget target(OUTPUT_BUDGET);
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    static const std::uint8_t random[instar::guest::CREATE_RANDOM_BYTES] = {};
    instar::guest::CreateRequest req{};
    req.size = (disk + 511) / 512 * 512;
    req.options = copts.data();
    req.option_count = static_cast<std::uint32_t>(copts.size());
    req.file_name = "fuzz.qcow2";
    req.backing_file = params.target_has_backing ? "base.raw" : nullptr;
    req.backing_fmt = params.target_has_backing ? "raw" : nullptr;
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &instar::hosted::host_codecs();
    instar::guest::ImageWriter* w = nullptr;
    if (instar::qcow2::create_writer(req, target, &w) != Status::Ok)
        return 0;
    const Status st = instar::convert::run_convert(&src, 1, *w, params, alloc, nullptr);
    w->close();
    if (st != Status::Ok)
        return 0;
    auto& out = target.image_output();
    std::vector<std::uint8_t> head(static_cast<std::size_t>(std::min(out.length(), INFO_PREFIX)));
    if (!head.empty() && out.read(0, head.data(), head.size()) != Status::Ok)
        std::abort();
    instar::hosted::MemoryDevice dev(std::move(head));
    const auto r = instar::hosted::run_info(instar::qcow2::info, dev, {}, 8u << 20);
    if (r.status != Status::Ok || r.info.virtual_size != req.size)
        std::abort();
    return 0;
}
