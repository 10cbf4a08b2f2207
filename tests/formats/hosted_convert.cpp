// Hosted convert runs (hosted_convert.h).
#include "hosted_convert.h"

#include "hosted_read.h"
#include "hosted_support.h"

#include "instar/guest_abi.h"

#include <boost/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace instar::hosted {

namespace {

using guest::Prealloc;

// The new image: a real file; writes extend it, discard punches holes.
class OutFile final : public BlockDevice {
public:
    explicit OutFile(const std::string& path)
        : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}
    ~OutFile() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    int fd() const { return fd_; }
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        // Past the end reads as zeros, as the host's device does for a growing output.
        std::memset(buf, 0, len);
        const ssize_t n = ::pread(fd_, buf, len, static_cast<off_t>(offset));
        return n < 0 ? Status::IoError : Status::Ok;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        return ::pwrite(fd_, buf, len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len) ? Status::Ok
                                                                                                : Status::IoError;
    }
    Status discard(std::uint64_t offset, std::uint64_t len) override {
        struct stat st{};
        if (::fstat(fd_, &st) != 0)
            return Status::IoError;
        const auto size = static_cast<std::uint64_t>(st.st_size);
        if (offset >= size)
            return Status::Ok;
        const std::uint64_t n = std::min(len, size - offset);
        return ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                           static_cast<off_t>(n)) == 0
                   ? Status::Ok
                   : Status::IoError;
    }

private:
    int fd_;
};

class OutTarget final : public guest::CreateTarget {
public:
    explicit OutTarget(const std::string& path) : image_(path) {
        const auto slash = path.rfind('/');
        dir_ = slash == std::string::npos ? "." : path.substr(0, slash);
    }
    bool ok() const { return image_.ok(); }
    BlockDevice& image() override { return image_; }
    Status set_length(BlockDevice& file, std::uint64_t length, Prealloc mode) override {
        int fd = &file == &image_ ? image_.fd() : -1;
        for (const auto& f : added_)
            if (f.get() == &file)
                fd = f->fd();
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
    // Files beside the image (vmdk extents), as the host's policy creates them.
    Status add_file(const char* name, BlockDevice** out) override {
        const std::string n(name);
        if (n.empty() || n.find('/') != std::string::npos || n == "." || n == "..")
            return Status::Invalid;
        added_.push_back(std::make_unique<OutFile>(dir_ + "/" + n));
        if (!added_.back()->ok())
            return Status::IoError;
        *out = added_.back().get();
        return Status::Ok;
    }
    void reason(const char* text, std::size_t len) override { reason_.assign(text, len); }
    void resolved_unit_size(std::uint64_t) override {}
    std::string reason_;

private:
    OutFile image_;
    std::string dir_;
    std::vector<std::unique_ptr<OutFile>> added_;
};

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t len) override {
        if (text.empty())
            text.assign(t, len);
    }
};

struct Opened {
    std::unique_ptr<FileDevice> dev;
    guest::ImageReader* reader = nullptr;
};

Status open_one(guest::OpenFn open, const std::string& path, Allocator& alloc, Reasons& reasons, Opened* out) {
    out->dev = std::make_unique<FileDevice>(path);
    if (!out->dev->ok()) {
        reasons.text = "Could not open '" + path + "': " + std::strerror(errno);
        return Status::IoError;
    }
    guest::OpenRequest req{};
    req.image = out->dev.get();
    req.allocator = &alloc;
    req.codecs = &host_codecs();
    req.reasons = &reasons;
    req.qemu_version = 100000;
    return open(req, &out->reader);
}

void progress_cb(void* ctx, std::uint64_t done, std::uint64_t total) {
    static_cast<HostedConvertResult*>(ctx)->progress.emplace_back(done, total);
}

} // namespace

HostedConvertResult run_hosted_convert(const HostedConvert& job, guest::CreateWriterFn create_writer) {
    HostedConvertResult res;
    BudgetAllocator alloc(job.memory_budget);
    Reasons reasons;
    std::vector<std::vector<Opened>> opened(job.sources.size());
    std::vector<std::vector<guest::ImageReader*>> chains(job.sources.size());
    std::vector<convert::Source> sources;
    std::uint64_t total_sectors = 0;
    Opened backing;
    auto close_all = [&] {
        if (backing.reader != nullptr) {
            backing.reader->close();
            backing.reader = nullptr;
        }
        for (auto& c : opened)
            for (auto& o : c)
                if (o.reader != nullptr) {
                    o.reader->close();
                    o.reader = nullptr;
                }
    };
    for (std::size_t i = 0; i < job.sources.size(); ++i) {
        for (const auto& path : job.sources[i]) {
            opened[i].emplace_back();
            res.status = open_one(job.open, path, alloc, reasons, &opened[i].back());
            if (res.status != Status::Ok) {
                res.reason = reasons.text;
                close_all();
                return res;
            }
            chains[i].push_back(opened[i].back().reader);
        }
    }
    for (std::size_t i = 0; i < job.sources.size(); ++i) {
        convert::Source s{chains[i].data(), static_cast<std::uint32_t>(chains[i].size())};
        s.alignment = i < job.source_alignment.size() ? job.source_alignment[i] : 0;
        sources.push_back(s);
        total_sectors += (chains[i][0]->virtual_size() + 511) / 512;
    }

    convert::Params params = job.params;
    guest::ImageReader* backing_chain[1] = {nullptr};
    if (!job.backing_file.empty()) {
        params.target_has_backing = true;
        // Named relative to the target's directory, as qemu resolves it.
        const auto dir_end = job.out_path.rfind('/');
        const std::string path = job.backing_file[0] == '/' || dir_end == std::string::npos
                                     ? job.backing_file
                                     : job.out_path.substr(0, dir_end + 1) + job.backing_file;
        if (open_one(job.open, path, alloc, reasons, &backing) == Status::Ok) {
            backing_chain[0] = backing.reader;
            params.target_backing_chain = backing_chain;
            params.target_backing_depth = 1;
        }
        reasons.text.clear();
    }

    OutTarget target(job.out_path);
    if (!target.ok()) {
        res.status = Status::IoError;
        res.reason = job.out_path + ": cannot create: " + std::strerror(errno);
        close_all();
        return res;
    }
    std::vector<guest::CreateOption> opts;
    for (const auto& [k, v] : job.options)
        opts.push_back({k.c_str(), v.c_str()});
    static const std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                                    12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                                    23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    guest::CreateRequest req{};
    req.size = total_sectors * 512;
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    const auto slash = job.out_path.rfind('/');
    const std::string base = slash == std::string::npos ? job.out_path : job.out_path.substr(slash + 1);
    req.file_name = base.c_str();
    req.backing_file = job.backing_file.empty() ? nullptr : job.backing_file.c_str();
    req.backing_fmt = job.backing_fmt.empty() ? nullptr : job.backing_fmt.c_str();
    req.backing_size = params.target_backing_size == UINT64_MAX ? 0 : params.target_backing_size;
    req.backing = backing.dev != nullptr && backing.dev->ok() ? backing.dev.get() : nullptr; // vmdk reads its CID
    req.unix_time = 1700000000;
    req.random = random;
    req.qemu_version = job.qemu_version;
    req.allocator = &alloc;
    req.codecs = &host_codecs();

    guest::ImageWriter* writer = nullptr;
    res.status = create_writer(req, target, &writer);
    if (res.status != Status::Ok) {
        res.reason = target.reason_;
        close_all();
        return res;
    }
    params.progress = progress_cb;
    params.progress_ctx = &res;
    res.status = convert::run_convert(sources.data(), static_cast<std::uint32_t>(sources.size()), *writer, params,
                                      alloc, &reasons);
    res.reason = !reasons.text.empty() ? reasons.text : target.reason_;
    writer->close();
    close_all();
    res.peak_memory = alloc.peak();
    return res;
}

namespace {

// qemu's size suffixes for -o values and -S (k, M, G, T as powers of 1024).
std::string normalise(const std::string& v) {
    if (v.empty() || v.find_first_not_of("0123456789") == std::string::npos)
        return v;
    const std::size_t digits = v.find_first_not_of("0123456789");
    if (digits == 0 || digits + 1 != v.size())
        return v;
    std::uint64_t n = std::stoull(v.substr(0, digits));
    switch (v.back()) {
    case 'k': case 'K': n <<= 10; break;
    case 'm': case 'M': n <<= 20; break;
    case 'g': case 'G': n <<= 30; break;
    case 't': case 'T': n <<= 40; break;
    default: return v;
    }
    return std::to_string(n);
}

} // namespace

std::string progress_text(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& calls, bool ok) {
    // qemu_progress_init(1, 1.0); qemu_progress_print(0, 100); per chunk
    // qemu_progress_print(100.0 * done / total, 0); at the end qemu_progress_print(100, 0) and
    // qemu_progress_end(). Floats as qemu keeps them.
    std::string out;
    float current = 0;
    float last_print = 0;
    const float min_skip = 1.0f;
    auto print = [&](float delta) {
        const float c = delta;
        if (c > last_print + min_skip || c < last_print - min_skip || c == 0 || c == 100) {
            last_print = c;
            current = c;
            char line[64];
            std::snprintf(line, sizeof line, "    (%3.2f/100%%)\r", static_cast<double>(current));
            out += line;
        }
    };
    print(0);
    for (const auto& [done, total] : calls)
        print(static_cast<float>(100.0 * static_cast<double>(done) / static_cast<double>(total)));
    if (ok)
        print(100);
    out += "\n";
    return out;
}

int hosted_convert_main(int argc, char** argv, guest::OpenFn open, guest::CreateWriterFn create_writer) {
    HostedConvert job;
    job.open = open;
    bool progress = false;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-S" && i + 1 < argc) {
            job.params.min_sparse = std::stoull(normalise(argv[++i]));
        } else if (a == "-c") {
            job.params.compressed = true;
        } else if (a == "-p") {
            progress = true;
        } else if (a == "-W") {
            job.params.out_of_order = true;
        } else if (a == "-o" && i + 1 < argc) {
            std::string list = argv[++i];
            std::size_t pos = 0;
            while (pos <= list.size()) {
                const std::size_t comma = std::min(list.find(',', pos), list.size());
                const std::string kv = list.substr(pos, comma - pos);
                const auto eq = kv.find('=');
                if (eq != std::string::npos) {
                    const std::string k = kv.substr(0, eq);
                    const std::string v = normalise(kv.substr(eq + 1));
                    bool replaced = false;
                    for (auto& o : job.options)
                        if (o.first == k) {
                            o.second = v;
                            replaced = true;
                        }
                    if (!replaced)
                        job.options.emplace_back(k, v);
                }
                pos = comma + 1;
            }
        } else if (a == "-B" && i + 1 < argc) {
            job.backing_file = argv[++i];
        } else if (a == "-F" && i + 1 < argc) {
            job.backing_fmt = argv[++i];
        } else if (a == "--qemu-version" && i + 1 < argc) {
            job.qemu_version = static_cast<std::uint32_t>(std::stoul(argv[++i]));
        } else if (a == "--alignment" && i + 1 < argc) {
            job.source_alignment.push_back(std::stoull(argv[++i]));
        } else if (a == "--memory" && i + 1 < argc) {
            job.memory_budget = std::stoull(argv[++i]);
        } else {
            positional.push_back(a);
        }
    }
    if (positional.size() < 2) {
        std::cerr << "usage: " << argv[0]
                  << " [-S BYTES] [-c] [-o K=V,...] [-B BACKING [-F FMT]] [--qemu-version N] SRC[:BACKING...]... OUT\n";
        return 2;
    }
    job.out_path = positional.back();
    positional.pop_back();
    for (const auto& s : positional) {
        std::vector<std::string> chain;
        std::size_t pos = 0;
        while (pos <= s.size()) {
            const std::size_t colon = std::min(s.find(':', pos), s.size());
            chain.push_back(s.substr(pos, colon - pos));
            pos = colon + 1;
        }
        job.sources.push_back(chain);
    }
    const HostedConvertResult r = run_hosted_convert(job, create_writer);
    if (progress) // qemu-img -p's display (util/qemu-progress.c), on stderr
        std::cerr << progress_text(r.progress, r.status == Status::Ok);
    boost::json::object out{{"status", static_cast<int>(r.status)},
                            {"reason", r.reason},
                            {"peak-memory", r.peak_memory},
                            {"progress-calls", r.progress.size()}};
    std::cout << boost::json::serialize(out) << '\n';
    return r.status == Status::Ok ? 0 : 1;
}

} // namespace instar::hosted
