// Fuzz target: measure's walk (guest/measure) over the qcow2 reader on arbitrary bytes. Opens the
// input as a qcow2 image, runs qemu's metadata-preallocation check with a host allocation taken from
// the input, then the required-bytes walk for a cluster size chosen by the input, through a reader
// that fails after a fixed number of status() calls (a disk of exabytes must not take forever).
// It must never crash, hang or exceed its memory; the result must respect the walk's own bounds.
#include "hosted_read.h"
#include "hosted_support.h"
#include "measure_walk.h"
#include "qcow2_read.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

using instar::guest::Extent;
using instar::guest::ImageReader;
using instar::guest::Status;

constexpr int MAX_STATUS_CALLS = 4096; // per input: enough for every table of a seed image

struct NullReasons final : instar::guest::ReasonSink {
    void reason(const char*, std::size_t) override {}
};

// Forwards to the real reader until its budget of status() calls is spent, then says IoError.
class Budgeted final : public ImageReader {
public:
    explicit Budgeted(ImageReader& r) : r_(r) {}
    std::uint64_t virtual_size() const override { return r_.virtual_size(); }
    Status status(std::uint64_t offset, std::uint64_t length, Extent* out) override {
        if (++calls_ > MAX_STATUS_CALLS)
            return Status::IoError;
        return r_.status(offset, length, out);
    }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override { return r_.read(offset, buf, len); }
    void close() override {}

private:
    ImageReader& r_;
    int calls_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    std::vector<std::uint8_t> bytes(data, data + size);
    instar::hosted::MemoryDevice image(bytes);
    instar::hosted::BudgetAllocator alloc(16u << 20);
    NullReasons reasons;
    instar::guest::OpenRequest req{&image, nullptr, 0, &alloc, &instar::hosted::host_codecs(), &reasons, nullptr,
                                   100000};
    ImageReader* reader = nullptr;
    if (instar::qcow2::open(req, &reader) != Status::Ok)
        return 0;
    Budgeted budgeted(*reader);
    const std::uint32_t cluster = 512u << (data[size - 1] % 10);          // 512 .. 256 KiB
    const std::uint64_t allocated = static_cast<std::uint64_t>(data[size - 2]) * size / 255;
    instar::measure::Layer layer{&budgeted, &image, allocated, cluster, true};
    bool refine = false;
    if (instar::measure::detect_metadata_preallocation(layer, &refine) != Status::Ok)
        refine = false;
    Budgeted walked(*reader);
    layer.reader = &walked;
    std::uint64_t required = 0;
    if (instar::measure::required_bytes(&layer, &refine, 1, cluster, &required) == Status::Ok) {
        const std::uint64_t vs = reader->virtual_size();
        const std::uint64_t limit = (vs + cluster - 1) / cluster * cluster;
        if (required % cluster != 0 || required > limit)
            std::abort(); // the walk broke its own contract
    }
    reader->close();
    return 0;
}
