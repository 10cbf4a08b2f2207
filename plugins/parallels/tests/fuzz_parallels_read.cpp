// Fuzz target: Parallels probe, info and check, the writer of convert -n (open_writer, a few writes into a
// bounded in-memory copy), then the reader (open, status() and read() over the whole disk with
// bounded calls and memory: hosted_read.h's fuzz_read_walk) on arbitrary bytes.
#include "hosted_read.h"
#include "hosted_support.h"
#include "prl_check.h"
#include "prl_format.h"
#include "prl_read.h"
#include "prl_write.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {
struct NullSink final : instar::guest::CheckSink {
    void line(const char*, std::size_t) override {}
};

// A writable copy of the input that may grow to a bounded length (size() is its current length,
// as a host file's).
class GrowingDevice final : public instar::guest::BlockDevice {
public:
    GrowingDevice(const std::uint8_t* data, std::size_t size) : bytes_(data, data + size) {}
    std::uint64_t size() const override { return bytes_.size(); }
    instar::guest::Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > bytes_.size() || len > bytes_.size() - off)
            return instar::guest::Status::IoError;
        std::memcpy(buf, bytes_.data() + off, len);
        return instar::guest::Status::Ok;
    }
    instar::guest::Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off > LIMIT || len > LIMIT - off)
            return instar::guest::Status::IoError;
        if (off + len > bytes_.size())
            bytes_.resize(off + len);
        std::memcpy(bytes_.data() + off, buf, len);
        return instar::guest::Status::Ok;
    }

private:
    static constexpr std::uint64_t LIMIT = 16u << 20; // a few clusters past any small input
    std::vector<std::uint8_t> bytes_;
};

void fuzz_open_writer(const std::uint8_t* data, std::size_t size) {
    GrowingDevice dev(data, size);
    instar::hosted::BudgetAllocator alloc(1 << 20);
    const instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, nullptr, nullptr, 100000};
    instar::guest::ImageWriter* w = nullptr;
    if (instar::parallels::open_writer(req, &w) != instar::guest::Status::Ok)
        return;
    std::uint8_t buf[4096];
    std::memset(buf, 0x5a, sizeof buf);
    // The first, a middle and the last sector of a small disk (the writer checks its bounds).
    (void)w->write(0, buf, 512);
    (void)w->write(1 << 20, buf, sizeof buf);
    (void)w->write_zeroes(3u << 20, 8192, false);
    (void)w->finish();
    w->close();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::parallels::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::parallels::info, dev, {}, 1 << 20);
    instar::hosted::BudgetAllocator alloc(1 << 20);
    NullSink sink;
    instar::guest::CheckResult res;
    // Both profiles: 7.2's and 10.0's passes differ (data_off, duplicates).
    for (const std::uint32_t v : {70200u, 100000u}) {
        const instar::guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, v, nullptr};
        (void)instar::parallels::check(req, sink, &res);
    }
    fuzz_open_writer(data, size);
    return instar::hosted::fuzz_read_walk(instar::parallels::open, data, size);
}
