// The hosted resize driver for vmdk, vpc and vhdx (see resize_formats_hosted.h).
#include "resize_formats_hosted.h"

#include "hosted_read.h"
#include "hosted_support.h"

#include <instar/guest/edit_resize.h>
#include <instar/guest_abi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace instar::hosted {

namespace {

using guest::Prealloc;

std::uint64_t kill_at = 0;  // INSTAR_TEST_KILL_AT_WRITE
std::uint64_t changes = 0;  // file-changing calls so far

void count_change() {
    ++changes;
    if (kill_at != 0 && changes >= kill_at)
        _exit(137);
}

// A writable file as the host serves an output device: size() is the output limit.
class RwFile final : public BlockDevice {
public:
    RwFile(const std::string& path, bool create)
        : fd_(::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644)) {}
    ~RwFile() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    std::uint64_t length() const {
        struct stat st;
        return ::fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    }
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        auto* p = static_cast<char*>(buf);
        while (len > 0) {
            const ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
            if (n < 0)
                return Status::IoError;
            if (n == 0) { // past the end: an output device reads zeros up to its limit
                std::memset(p, 0, len);
                return Status::Ok;
            }
            p += n;
            len -= static_cast<std::size_t>(n);
            offset += static_cast<std::uint64_t>(n);
        }
        return Status::Ok;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        count_change();
        const auto* p = static_cast<const char*>(buf);
        while (len > 0) {
            const ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(offset));
            if (n <= 0)
                return Status::IoError;
            p += n;
            len -= static_cast<std::size_t>(n);
            offset += static_cast<std::uint64_t>(n);
        }
        return Status::Ok;
    }
    Status discard(std::uint64_t offset, std::uint64_t len) override {
        count_change();
        std::vector<char> zeros(1 << 20);
        while (len > 0) {
            const std::size_t n = len < zeros.size() ? len : zeros.size();
            if (::pwrite(fd_, zeros.data(), n, static_cast<off_t>(offset)) != static_cast<ssize_t>(n))
                return Status::IoError;
            len -= n;
            offset += n;
        }
        return Status::Ok;
    }
    Status set_length(std::uint64_t length, Prealloc mode) {
        count_change();
        const std::uint64_t old = this->length();
        if (::ftruncate(fd_, static_cast<off_t>(length)) != 0)
            return Status::IoError;
        if (length > old && mode == Prealloc::Falloc &&
            ::posix_fallocate(fd_, static_cast<off_t>(old), static_cast<off_t>(length - old)) != 0)
            return Status::IoError;
        if (length > old && mode == Prealloc::Full) {
            std::vector<char> zeros(1 << 20);
            for (std::uint64_t at = old; at < length;) {
                const std::size_t n = length - at < zeros.size() ? length - at : zeros.size();
                if (::pwrite(fd_, zeros.data(), n, static_cast<off_t>(at)) != static_cast<ssize_t>(n))
                    return Status::IoError;
                at += n;
            }
        }
        return Status::Ok;
    }

private:
    int fd_;
};

class Host final : public guest::EditHost {
public:
    explicit Host(std::string dir) : dir_(std::move(dir)) {}
    std::vector<std::unique_ptr<RwFile>> files; // the image, its files, then added ones

    Status set_length(BlockDevice& file, std::uint64_t length, Prealloc mode) override {
        if (mode == Prealloc::Metadata || length > INSTAR_MAX_OUTPUT_SIZE)
            return Status::Invalid;
        for (auto& f : files)
            if (f.get() == &file)
                return f->set_length(length, mode);
        return Status::Invalid;
    }
    Status flush(BlockDevice&) override { return Status::Ok; } // a kill here is _exit: no page cache loss
    Status add_file(const char* name, BlockDevice** out) override {
        const std::string n(name);
        if (n.empty() || n.find('/') != std::string::npos || n == "." || n == "..")
            return Status::Invalid;
        count_change();
        auto f = std::make_unique<RwFile>(dir_ + "/" + n, true);
        if (!f->ok())
            return Status::IoError;
        *out = f.get();
        files.push_back(std::move(f));
        return Status::Ok;
    }
    Status out(const char* text, std::size_t len) override {
        std::fwrite(text, 1, len, stdout);
        return Status::Ok;
    }
    Status err(const char* text, std::size_t len) override {
        std::fwrite(text, 1, len, stderr);
        return Status::Ok;
    }
    void reason(const char* text, std::size_t len) override { reason_.assign(text, len); }
    // RESIZE_DATA_DROPPED_FILE: the host command removes such a file after success; so does this.
    Status data(std::uint32_t kind, const void* bytes, std::size_t len) override {
        std::uint32_t i = 0;
        if (kind != guest::RESIZE_DATA_DROPPED_FILE || len != sizeof i)
            return Status::Invalid;
        std::memcpy(&i, bytes, sizeof i);
        dropped.push_back(i);
        return Status::Ok;
    }
    void progress(std::uint64_t, std::uint64_t) override {}
    const std::string& why() const { return reason_; }
    std::vector<std::uint32_t> dropped; // indexes into the image's files

private:
    std::string dir_;
    std::string reason_;
};

bool parse_prealloc(const std::string& v, Prealloc* out) {
    if (v == "off")
        *out = Prealloc::Off;
    else if (v == "falloc")
        *out = Prealloc::Falloc;
    else if (v == "full")
        *out = Prealloc::Full;
    else if (v == "metadata")
        *out = Prealloc::Metadata;
    else
        return false;
    return true;
}

} // namespace

int resize_formats_main(int argc, char** argv, guest::EditFn edit) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s IMAGE NEW_SIZE [--shrink] [--preallocation=MODE] [--file PATH]...\n", argv[0]);
        return 2;
    }
    if (const char* k = std::getenv("INSTAR_TEST_KILL_AT_WRITE"))
        kill_at = std::strtoull(k, nullptr, 10);
    const std::string image = argv[1];
    guest::ResizeArgs args{};
    args.new_size = std::strtoull(argv[2], nullptr, 10);
    std::vector<std::string> names;
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--shrink") {
            args.flags |= guest::RESIZE_SHRINK;
        } else if (a.rfind("--preallocation=", 0) == 0) {
            Prealloc p;
            if (!parse_prealloc(a.substr(16), &p))
                return 2;
            args.prealloc = static_cast<std::uint32_t>(p);
            args.flags |= guest::RESIZE_PREALLOC_GIVEN;
        } else if (a == "--file" && i + 1 < argc) {
            names.emplace_back(argv[++i]);
        } else {
            return 2;
        }
    }
    const std::size_t slash = image.rfind('/');
    Host host(slash == std::string::npos ? "." : image.substr(0, slash));
    host.files.push_back(std::make_unique<RwFile>(image, false));
    for (const auto& n : names)
        host.files.push_back(std::make_unique<RwFile>(n, false));
    std::vector<BlockDevice*> devs;
    std::vector<std::uint64_t> lengths;
    for (auto& f : host.files) {
        if (!f->ok()) {
            std::fprintf(stderr, "cannot open a file\n");
            return 2;
        }
        devs.push_back(f.get());
        lengths.push_back(f->length());
    }
    BudgetAllocator alloc(256u << 20);
    static const std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    guest::EditRequest req{};
    req.command = guest::EditCommand::Resize;
    req.image = devs[0];
    req.image_length = lengths[0];
    req.files = devs.data() + 1;
    req.file_lengths = lengths.data() + 1;
    req.file_count = static_cast<std::uint32_t>(devs.size() - 1);
    req.writable = true;
    req.args = reinterpret_cast<const std::uint8_t*>(&args);
    req.args_len = sizeof args;
    req.unix_time = 1700000000;
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &hosted::host_codecs(); // vmdk: a compressed grain is deflated again on a grow
    const Status st = edit(req, host);
    std::fprintf(stderr, "writes=%llu\n", static_cast<unsigned long long>(changes));
    if (st != Status::Ok) {
        std::fprintf(stderr, "refused (%d): %s\n", static_cast<int>(st), host.why().c_str());
        return 1;
    }
    for (const std::uint32_t i : host.dropped)
        if (i < names.size() && ::unlink(names[i].c_str()) != 0)
            return 1;
    return 0;
}

} // namespace instar::hosted
