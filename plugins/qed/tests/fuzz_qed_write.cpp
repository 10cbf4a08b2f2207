// Fuzz target: convert -n's writer (qed open_writer) on arbitrary bytes: the read-write open (with
// its automatic repair), then a few data and zero writes at offsets taken from the input, and
// finish(), on a growable in-memory copy with a bounded allocator. Never a crash, a hang, or a
// file grown past what the writes can explain.
#include "hosted_read.h"
#include "hosted_support.h"
#include "qed_create.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

struct Growable final : instar::guest::BlockDevice {
    std::vector<std::uint8_t> b;
    std::uint64_t size() const override { return b.size(); }
    instar::guest::Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > b.size() || len > b.size() - off)
            return instar::guest::Status::IoError;
        std::memcpy(buf, b.data() + off, len);
        return instar::guest::Status::Ok;
    }
    instar::guest::Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        // 64 MiB: far more than the writes below can need; a writer asking for more is broken.
        if (off > (64u << 20) || len > (64u << 20) - off)
            std::abort();
        if (off + len > b.size())
            b.resize(off + len);
        std::memcpy(b.data() + off, buf, len);
        return instar::guest::Status::Ok;
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Growable dev;
    dev.b.assign(data, data + size);
    instar::hosted::BudgetAllocator alloc(8u << 20);
    const instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, &instar::hosted::host_codecs(), nullptr, nullptr,
                                         100000};
    instar::guest::ImageWriter* w = nullptr;
    if (instar::qed::open_writer(req, &w) != instar::guest::Status::Ok)
        return 0;
    std::uint8_t buf[8192];
    std::memset(buf, 0x5a, sizeof buf);
    // Offsets from the input's first bytes (whole sectors inside a 1 MiB window of the disk).
    for (int i = 0; i < 4; ++i) {
        std::uint64_t off = size > 8u * i + 8 ? (std::uint64_t{data[8 * i]} << 9 | data[8 * i + 1]) * 512 : 0;
        off %= (1u << 20);
        (void)w->write(off, buf, 4096);
        (void)w->write_zeroes(off + 8192, 3 * 65536, true);
    }
    (void)w->finish();
    w->close();
    return 0;
}
