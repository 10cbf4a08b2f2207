// Hosted outputs and targets for format emitters (see hosted_create.h).
#include "hosted_create.h"

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

namespace instar::hosted {

Status MemoryOutput::read(std::uint64_t offset, void* buf, std::size_t len) {
    if (offset > length_ || len > length_ - offset)
        return Status::IoError;
    if (len == 0) // buf may be null then (memset's and memcpy's arguments must not be)
        return Status::Ok;
    auto* out = static_cast<std::uint8_t*>(buf);
    std::memset(out, 0, len);
    if (offset < data_.size()) {
        const std::size_t n = std::min<std::uint64_t>(len, data_.size() - offset);
        std::memcpy(out, data_.data() + offset, n);
    }
    return Status::Ok;
}

Status MemoryOutput::write(std::uint64_t offset, const void* buf, std::size_t len) {
    if (offset > INSTAR_MAX_OUTPUT_SIZE || len > INSTAR_MAX_OUTPUT_SIZE - offset)
        return Status::IoError;
    if (offset + len > budget_)
        return Status::TooLarge; // a test asked for more real bytes than it budgeted
    if (offset + len > data_.size())
        data_.resize(offset + len);
    if (len > 0) // a zero-length write may pass a null buffer (memcpy's arguments must not be null)
        std::memcpy(data_.data() + offset, buf, len);
    length_ = std::max<std::uint64_t>(length_, offset + len);
    written_ += len;
    return Status::Ok;
}

void MemoryOutput::set_length(std::uint64_t n) {
    length_ = n;
    if (data_.size() > n)
        data_.resize(n);
}

std::vector<std::uint8_t> MemoryOutput::bytes() const {
    std::vector<std::uint8_t> out(data_);
    out.resize(length_);
    return out;
}

Status MemoryTarget::set_length(BlockDevice& file, std::uint64_t length, Prealloc mode) {
    if (length > INSTAR_MAX_OUTPUT_SIZE || mode == Prealloc::Metadata)
        return Status::Invalid;
    fills.push_back(mode);
    if (&file == &image_) {
        image_.set_length(length);
        return Status::Ok;
    }
    if (&file == &data_) {
        data_.set_length(length);
        return Status::Ok;
    }
    for (auto& [name, f] : files_)
        if (&file == f.get()) {
            f->set_length(length);
            return Status::Ok;
        }
    return Status::Invalid;
}

Status MemoryTarget::add_file(const char* name, BlockDevice** out) {
    const std::string n(name);
    if (n.empty() || n.size() > guest::CREATE_MAX_FILE_NAME || n.find('/') != std::string::npos || n == "." ||
        n == ".." || files_.size() >= INSTAR_MAX_ADDED_FILES)
        return Status::Invalid;
    for (const auto& f : files_)
        if (f.first == n)
            return Status::Invalid;
    files_.emplace_back(n, std::make_unique<MemoryOutput>(budget_));
    *out = files_.back().second.get();
    return Status::Ok;
}

Status run_create(CreateFn create, const CreateParams& p, CreateTarget& target) {
    std::vector<guest::CreateOption> opts;
    for (const auto& [k, v] : p.options)
        opts.push_back({k.c_str(), v.c_str()});
    BudgetAllocator alloc(p.memory_budget);
    CreateRequest req{};
    req.size = p.size;
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = p.file_name.c_str();
    req.backing_file = p.backing_file.empty() ? nullptr : p.backing_file.c_str();
    req.backing_fmt = p.backing_fmt.empty() ? nullptr : p.backing_fmt.c_str();
    req.backing = p.backing;
    req.backing_size = p.backing_size;
    req.data_file = p.data_file;
    req.unix_time = p.unix_time;
    req.random = p.random;
    req.qemu_version = p.qemu_version;
    req.allocator = &alloc;
    return create(req, target);
}

namespace {

// A real file opened for writing; writes extend it.
class FileOutput final : public BlockDevice {
public:
    explicit FileOutput(const std::string& path)
        : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}
    ~FileOutput() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    int fd() const { return fd_; }
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        return ::pread(fd_, buf, len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len) ? Status::Ok
                                                                                               : Status::IoError;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        return ::pwrite(fd_, buf, len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len) ? Status::Ok
                                                                                                : Status::IoError;
    }

private:
    int fd_;
};

class FileTarget final : public CreateTarget {
public:
    FileTarget(std::string dir, const std::string& image_path) : dir_(std::move(dir)), image_(image_path) {}
    bool ok() const { return image_.ok(); }
    BlockDevice& image() override { return image_; }
    Status set_length(BlockDevice& file, std::uint64_t length, Prealloc mode) override {
        const int fd = &file == &image_ ? image_.fd() : fd_of(file);
        if (fd < 0)
            return Status::Invalid;
        struct stat st{};
        if (::fstat(fd, &st) != 0 || ::ftruncate(fd, static_cast<off_t>(length)) != 0)
            return Status::IoError;
        const auto old = static_cast<std::uint64_t>(st.st_size);
        if (length > old && mode == Prealloc::Falloc &&
            ::posix_fallocate(fd, static_cast<off_t>(old), static_cast<off_t>(length - old)) != 0)
            return Status::IoError;
        if (length > old && mode == Prealloc::Full) {
            std::vector<char> zeros(1u << 20);
            for (std::uint64_t off = old; off < length;) {
                const std::size_t n = std::min<std::uint64_t>(zeros.size(), length - off);
                if (::pwrite(fd, zeros.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n))
                    return Status::IoError;
                off += n;
            }
        }
        return Status::Ok;
    }
    Status add_file(const char* name, BlockDevice** out) override {
        const std::string n(name);
        if (n.empty() || n.find('/') != std::string::npos || n == "." || n == "..")
            return Status::Invalid;
        files_.push_back(n);
        outputs_.push_back(std::make_unique<FileOutput>(dir_ + "/" + n));
        if (!outputs_.back()->ok())
            return Status::IoError;
        *out = outputs_.back().get();
        return Status::Ok;
    }
    void reason(const char* text, std::size_t len) override { reason_.assign(text, len); }
    void resolved_unit_size(std::uint64_t bytes) override { unit_ = bytes; }

    std::vector<std::string> files_;
    std::string reason_;
    std::uint64_t unit_ = 0;

private:
    int fd_of(BlockDevice& file) const {
        for (const auto& o : outputs_)
            if (o.get() == &file)
                return o->fd();
        return -1;
    }
    std::string dir_;
    FileOutput image_;
    std::vector<std::unique_ptr<FileOutput>> outputs_;
};

} // namespace

int hosted_create_main(int argc, char** argv, CreateFn create) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0]
                  << " OUT_PATH SIZE [KEY=VALUE...] [--backing FILE] [--backing-fmt FMT] [--backing-size N]\n";
        return 2;
    }
    const std::string out_path = argv[1];
    CreateParams p;
    p.size = std::stoull(argv[2]);
    const auto slash = out_path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : out_path.substr(0, slash);
    p.file_name = slash == std::string::npos ? out_path : out_path.substr(slash + 1);
    std::unique_ptr<FileDevice> backing;
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--backing" && i + 1 < argc) {
            p.backing_file = argv[++i];
            const std::string path = p.backing_file[0] == '/' ? p.backing_file : dir + "/" + p.backing_file;
            backing = std::make_unique<FileDevice>(path);
            if (backing->ok())
                p.backing = backing.get();
        } else if (a == "--backing-fmt" && i + 1 < argc) {
            p.backing_fmt = argv[++i];
        } else if (a == "--backing-size" && i + 1 < argc) {
            p.backing_size = std::stoull(argv[++i]);
        } else if (const auto eq = a.find('='); eq != std::string::npos) {
            p.options.emplace_back(a.substr(0, eq), a.substr(eq + 1));
        } else {
            std::cerr << "unknown argument: " << a << '\n';
            return 2;
        }
    }
    FileTarget target(dir, out_path);
    if (!target.ok()) {
        std::cerr << out_path << ": cannot create: " << std::strerror(errno) << '\n';
        return 2;
    }
    const Status st = run_create(create, p, target);
    boost::json::array files;
    for (const auto& f : target.files_)
        files.emplace_back(f);
    boost::json::object out{{"status", static_cast<int>(st)},
                            {"reason", target.reason_},
                            {"unit", target.unit_},
                            {"files", files}};
    std::cout << boost::json::serialize(out) << '\n';
    return 0;
}

} // namespace instar::hosted
