// Hosted write tool for the op-replay differential: create_writer on real files, then a list of
// writes, zero writes and compressed writes, as qemu-io issues them on a new image.
//   vmdk_hosted_write OUT SIZE [K=V...] [--backing NAME --backing-size N] -- OP...
//   OP: w:OFF:LEN:BYTE (data filled with BYTE) | z:OFF:LEN (write_zeroes) | c:OFF:LEN:BYTE (compressed)
// Prints one line per op ("ok" or "error N") and writes OUT (and its extents beside it).
#include "hosted_read.h"
#include "hosted_support.h"
#include "vmdk_read.h"
#include "vmdk_write.h"

#include "instar/guest_abi.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

using instar::guest::BlockDevice;
using instar::guest::Status;

class File final : public BlockDevice {
public:
    explicit File(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}
    ~File() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    int fd() const { return fd_; }
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        std::memset(buf, 0, len);
        return ::pread(fd_, buf, len, static_cast<off_t>(offset)) < 0 ? Status::IoError : Status::Ok;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        return ::pwrite(fd_, buf, len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len) ? Status::Ok
                                                                                                : Status::IoError;
    }

private:
    int fd_;
};

class Target final : public instar::guest::CreateTarget {
public:
    Target(std::string dir, const std::string& path) : dir_(std::move(dir)) {
        files_.push_back(std::make_unique<File>(path));
    }
    BlockDevice& image() override { return *files_[0]; }
    Status set_length(BlockDevice& f, std::uint64_t length, instar::guest::Prealloc) override {
        for (const auto& p : files_)
            if (p.get() == &f)
                return ::ftruncate(p->fd(), static_cast<off_t>(length)) == 0 ? Status::Ok : Status::IoError;
        return Status::Invalid;
    }
    Status add_file(const char* name, BlockDevice** out) override {
        files_.push_back(std::make_unique<File>(dir_ + "/" + name));
        *out = files_.back().get();
        return files_.back()->fd() >= 0 ? Status::Ok : Status::IoError;
    }
    void reason(const char* text, std::size_t len) override { std::cerr << std::string(text, len) << '\n'; }
    void resolved_unit_size(std::uint64_t) override {}

private:
    std::string dir_;
    std::vector<std::unique_ptr<File>> files_;
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= s.size()) {
        const std::size_t c = std::min(s.find(':', pos), s.size());
        out.push_back(s.substr(pos, c - pos));
        pos = c + 1;
    }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " OUT SIZE [K=V...] -- OP...\n";
        return 2;
    }
    const std::string out = argv[1];
    const auto slash = out.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : out.substr(0, slash);
    const std::string base = slash == std::string::npos ? out : out.substr(slash + 1);
    std::vector<std::pair<std::string, std::string>> kv;
    std::string backing_name;
    std::uint64_t backing_size = 0;
    int i = 3;
    for (; i < argc && std::string(argv[i]) != "--"; ++i) {
        const std::string a = argv[i];
        if (a == "--backing" && i + 1 < argc) {
            backing_name = argv[++i];
            continue;
        }
        if (a == "--backing-size" && i + 1 < argc) {
            backing_size = std::stoull(argv[++i]);
            continue;
        }
        const auto eq = a.find('=');
        kv.emplace_back(a.substr(0, eq), eq == std::string::npos ? "" : a.substr(eq + 1));
    }
    std::vector<instar::guest::CreateOption> opts;
    for (const auto& [k, v] : kv)
        opts.push_back({k.c_str(), v.c_str()});
    instar::hosted::BudgetAllocator alloc(64u << 20);
    static const std::uint8_t random[instar::guest::CREATE_RANDOM_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};
    instar::guest::CreateRequest req{};
    req.size = std::stoull(argv[2]);
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = base.c_str();
    req.unix_time = 1700000000;
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &instar::hosted::host_codecs();
    std::unique_ptr<instar::hosted::FileDevice> backing;
    if (!backing_name.empty()) {
        backing = std::make_unique<instar::hosted::FileDevice>(dir + "/" + backing_name);
        req.backing_file = backing_name.c_str();
        req.backing_fmt = "vmdk";
        req.backing = backing->ok() ? backing.get() : nullptr;
        req.backing_size = backing_size;
    }
    Target target(dir, out);
    instar::guest::ImageWriter* w = nullptr;
    if (const Status st = instar::vmdk::create_writer(req, target, &w); st != Status::Ok) {
        std::cout << "create error " << static_cast<int>(st) << '\n';
        return 1;
    }
    // -B: the engine hands the writer the backing chain; here the base is one vmdk image.
    instar::guest::ImageReader* base_reader = nullptr;
    if (backing && backing->ok()) {
        instar::guest::OpenRequest oreq{};
        oreq.image = backing.get();
        oreq.allocator = &alloc;
        oreq.codecs = &instar::hosted::host_codecs();
        oreq.qemu_version = 100000;
        if (instar::vmdk::open(oreq, &base_reader) != Status::Ok) {
            std::cout << "create error: cannot open the backing file\n";
            return 1;
        }
        w->set_backing(base_reader);
    }
    for (++i; i < argc; ++i) {
        const auto f = split(argv[i]);
        const std::uint64_t off = std::stoull(f.at(1));
        const std::uint64_t len = std::stoull(f.at(2));
        Status st = Status::Ok;
        if (f[0] == "z") {
            st = w->write_zeroes(off, len, false);
        } else {
            const std::vector<std::uint8_t> data(len, static_cast<std::uint8_t>(std::stoul(f.at(3), nullptr, 0)));
            st = f[0] == "c" ? w->write_compressed(off, data.data(), len) : w->write(off, data.data(), len);
        }
        std::cout << argv[i] << (st == Status::Ok ? " ok" : " error " + std::to_string(static_cast<int>(st))) << '\n';
    }
    const Status st = w->finish();
    std::cout << "finish " << static_cast<int>(st) << '\n';
    w->close();
    if (base_reader != nullptr)
        base_reader->close();
    return st == Status::Ok ? 0 : 1;
}
