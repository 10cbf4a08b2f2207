// Fuzz target: qcow probe and info, the writer of convert -n (open_writer, a few writes into a
// bounded in-memory copy), then the reader (open, status() and read() over the whole disk with
// bounded calls and memory: hosted_read.h's fuzz_read_walk) on arbitrary bytes.
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow_create.h"
#include "qcow_format.h"
#include "qcow_read.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

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
    const instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, &instar::hosted::host_codecs(), nullptr, nullptr,
                                         100000};
    instar::guest::ImageWriter* w = nullptr;
    if (instar::qcow::open_writer(req, &w) != instar::guest::Status::Ok)
        return;
    std::uint8_t buf[4096];
    std::memset(buf, 0x5a, sizeof buf);
    // The first sectors of the disk (the writer checks its bounds against the virtual size).
    (void)w->write(0, buf, 512);
    (void)w->write(512, buf, 1024);
    (void)w->write_zeroes(4096, 4096, false);
    (void)w->finish();
    w->close();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    bool match = false;
    (void)instar::qcow::probe(dev, &match);
    (void)instar::hosted::run_info(&instar::qcow::info, dev, {}, 1 << 20);
    fuzz_open_writer(data, size);
    return instar::hosted::fuzz_read_walk(instar::qcow::open, data, size);
}
