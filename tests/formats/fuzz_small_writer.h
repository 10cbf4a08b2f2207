// The convert -n part of the small formats' read fuzz targets (fuzz_vdi_read, fuzz_parallels_read,
// fuzz_qcow_read): the input opened by the format's open_writer over a writable copy that may grow
// to a bounded length, then a few fixed writes and zero writes, finish() and close(). The writer
// must refuse what it cannot write and never crash, loop or write past the bound.
#pragma once

#include "hosted_read.h"
#include "hosted_support.h"

#include <instar/guest/write_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace instar::hosted::small_writer_fuzz {

// A writable copy of the input that may grow to LIMIT bytes (size() is its current length, as a
// host file's).
class GrowingDevice final : public guest::BlockDevice {
public:
    static constexpr std::uint64_t LIMIT = 16u << 20; // a few clusters or blocks past any small input

    GrowingDevice(const std::uint8_t* data, std::size_t size) : bytes_(data, data + size) {}
    std::uint64_t size() const override { return bytes_.size(); }
    guest::Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > bytes_.size() || len > bytes_.size() - off)
            return guest::Status::IoError;
        std::memcpy(buf, bytes_.data() + off, len);
        return guest::Status::Ok;
    }
    guest::Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off > LIMIT || len > LIMIT - off)
            return guest::Status::IoError;
        if (off + len > bytes_.size())
            bytes_.resize(off + len);
        std::memcpy(bytes_.data() + off, buf, len);
        return guest::Status::Ok;
    }

private:
    std::vector<std::uint8_t> bytes_;
};

struct Write {
    std::uint64_t offset;
    std::uint32_t length; // at most 4096 for data
    bool zeroes;
};

inline void fuzz_writes(const std::uint8_t* data, std::size_t size, guest::OpenWriterFn open_writer,
                        std::initializer_list<Write> writes) {
    GrowingDevice dev(data, size);
    BudgetAllocator alloc(1 << 20);
    const guest::OpenRequest req{&dev, nullptr, 0, &alloc, &host_codecs(), nullptr, nullptr, 100000};
    guest::ImageWriter* w = nullptr;
    if (open_writer(req, &w) != guest::Status::Ok)
        return;
    std::uint8_t buf[4096];
    std::memset(buf, 0x5a, sizeof buf);
    for (const Write& op : writes)
        (void)(op.zeroes ? w->write_zeroes(op.offset, op.length, false)
                         : w->write(op.offset, buf, op.length <= sizeof buf ? op.length : sizeof buf));
    (void)w->finish();
    w->close();
}

} // namespace instar::hosted::small_writer_fuzz
