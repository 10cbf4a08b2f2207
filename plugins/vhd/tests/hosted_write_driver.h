// Test support: feeds a format's ImageWriter the way `qemu-img convert -f raw` does for a raw
// source, into a real file, so the differential scripts can compare the result with qemu-img's.
// A stand-in until the convert engine's hosted harness is used: the source is read in 2 MiB
// chunks in order; holes in the source and runs of at least 4 KiB of zeros (aligned to 4 KiB, qemu's
// default min_sparse) are left alone when the writer says zero_init(), else written with
// write_zeroes; everything else is written as data. Hosted only, never part of instar.
#pragma once

#include "hosted_create.h"

#include "instar/guest/write_api.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace instar::hosted {

namespace write_driver {

// The image file; writes past the end extend it.
class OutFile final : public BlockDevice {
public:
    explicit OutFile(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}
    ~OutFile() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    int fd() const { return fd_; }
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        // Reads past the end see zeros, as a hole would.
        std::memset(buf, 0, len);
        return ::pread(fd_, buf, len, static_cast<off_t>(offset)) >= 0 ? Status::Ok : Status::IoError;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        return ::pwrite(fd_, buf, len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len) ? Status::Ok
                                                                                                : Status::IoError;
    }

private:
    int fd_;
};

class OutTarget final : public CreateTarget {
public:
    explicit OutTarget(const std::string& path) : image_(path) {}
    BlockDevice& image() override { return image_; }
    Status set_length(BlockDevice& file, std::uint64_t length, Prealloc mode) override {
        if (&file != &image_ || mode != Prealloc::Off)
            return Status::Unsupported;
        return ::ftruncate(image_.fd(), static_cast<off_t>(length)) == 0 ? Status::Ok : Status::IoError;
    }
    Status add_file(const char*, BlockDevice**) override { return Status::Unsupported; }
    void reason(const char* text, std::size_t len) override { reason_.assign(text, len); }
    void resolved_unit_size(std::uint64_t) override {}
    std::string reason_;

private:
    OutFile image_;
};

inline bool all_zero(const std::uint8_t* p, std::size_t n) {
    return std::all_of(p, p + n, [](std::uint8_t b) { return b == 0; });
}

} // namespace write_driver

// TOOL SRC_RAW OUT [KEY=VALUE...]; TEST_QEMU_VERSION in the environment sets req.qemu_version.
// Prints "ok" or the status and reason; exit 0 only on success.
inline int hosted_write_main(int argc, char** argv, guest::CreateWriterFn create_writer) {
    using namespace write_driver;
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " SRC_RAW OUT [KEY=VALUE...]\n";
        return 2;
    }
    FileDevice src(argv[1]);
    if (!src.ok()) {
        std::cerr << argv[1] << ": cannot open\n";
        return 2;
    }
    std::vector<std::pair<std::string, std::string>> kv;
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        const auto eq = a.find('=');
        if (eq == std::string::npos) {
            std::cerr << "bad option: " << a << '\n';
            return 2;
        }
        kv.emplace_back(a.substr(0, eq), a.substr(eq + 1));
    }
    std::vector<guest::CreateOption> opts;
    for (const auto& [k, v] : kv)
        opts.push_back({k.c_str(), v.c_str()});
    std::uint8_t random[guest::CREATE_RANDOM_BYTES];
    for (std::size_t i = 0; i < sizeof random; ++i)
        random[i] = static_cast<std::uint8_t>(i * 37 + 11);
    BudgetAllocator alloc(64u << 20);
    guest::CreateRequest req{};
    req.size = src.size();
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = argv[2];
    req.unix_time = 1700000000;
    req.random = random;
    req.qemu_version = 100000;
    if (const char* v = std::getenv("TEST_QEMU_VERSION"))
        req.qemu_version = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    req.allocator = &alloc;
    OutTarget target(argv[2]);
    guest::ImageWriter* w = nullptr;
    Status st = create_writer(req, target, &w);
    if (st != Status::Ok) {
        std::cout << "status " << static_cast<int>(st) << ": " << target.reason_ << '\n';
        return 1;
    }
    constexpr std::uint64_t CHUNK = 2u << 20, MIN_SPARSE = 4096;
    std::vector<std::uint8_t> buf(CHUNK);
    const std::uint64_t size = (src.size() + 511) / 512 * 512;
    for (std::uint64_t off = 0; off < size && st == Status::Ok;) {
        bool data = true;
        std::uint64_t run = 0;
        if (src.allocation(off, &data, &run) != Status::Ok || run == 0)
            run = size - off;
        run = std::min(run, size - off);
        if (!data) {
            if (!w->zero_init())
                st = w->write_zeroes(off, run, false);
            off += run;
            continue;
        }
        const std::uint64_t n = std::min(run, CHUNK);
        std::memset(buf.data(), 0, n);
        const std::uint64_t in_file = std::min<std::uint64_t>(n, src.size() > off ? src.size() - off : 0);
        if (in_file > 0 && src.read(off, buf.data(), in_file) != Status::Ok) {
            st = Status::IoError;
            break;
        }
        // Split the chunk into data and zero runs at MIN_SPARSE granularity.
        for (std::uint64_t p = 0; p < n && st == Status::Ok;) {
            const std::uint64_t piece = std::min(MIN_SPARSE, n - p);
            const bool zero = piece == MIN_SPARSE && all_zero(buf.data() + p, piece);
            std::uint64_t q = p + piece;
            while (q < n) {
                const std::uint64_t next = std::min(MIN_SPARSE, n - q);
                const bool z = next == MIN_SPARSE && all_zero(buf.data() + q, next);
                if (z != zero)
                    break;
                q += next;
            }
            if (!zero)
                st = w->write(off + p, buf.data() + p, q - p);
            else if (!w->zero_init())
                st = w->write_zeroes(off + p, q - p, false);
            p = q;
        }
        off += n;
    }
    if (st == Status::Ok)
        st = w->finish();
    w->close();
    if (st != Status::Ok) {
        std::cout << "status " << static_cast<int>(st) << '\n';
        return 1;
    }
    std::cout << "ok\n";
    return 0;
}

} // namespace instar::hosted
