// Hosted devices, allocator and the info round trip used by format tests.
#include "hosted_support.h"

#include "info/info_decode.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

namespace instar::hosted {

Status MemoryDevice::read(std::uint64_t offset, void* buf, std::size_t len) {
    ++reads_;
    if (offset > bytes_.size() || len > bytes_.size() - offset)
        return Status::IoError;
    std::memcpy(buf, bytes_.data() + offset, len);
    return Status::Ok;
}

FileDevice::FileDevice(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st{};
    if (fd_ >= 0 && ::fstat(fd_, &st) == 0)
        size_ = static_cast<std::uint64_t>(st.st_size);
}

FileDevice::~FileDevice() {
    if (fd_ >= 0)
        ::close(fd_);
}

Status FileDevice::read(std::uint64_t offset, void* buf, std::size_t len) {
    if (offset > size_ || len > size_ - offset)
        return Status::IoError;
    auto* p = static_cast<char*>(buf);
    while (len > 0) {
        const ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
        if (n <= 0)
            return Status::IoError;
        p += n;
        offset += static_cast<std::uint64_t>(n);
        len -= static_cast<std::size_t>(n);
    }
    return Status::Ok;
}

Status FileDevice::allocation(std::uint64_t offset, bool* data, std::uint64_t* length) {
    if (offset >= size_)
        return Status::IoError;
    const off_t d = ::lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
    if (d < 0 || static_cast<std::uint64_t>(d) > offset) {
        // A hole up to the next data (or to the end: ENXIO).
        *data = false;
        *length = (d < 0 ? size_ : std::min<std::uint64_t>(static_cast<std::uint64_t>(d), size_)) - offset;
        return Status::Ok;
    }
    const off_t h = ::lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
    *data = true;
    *length = (h < 0 ? size_ : std::min<std::uint64_t>(static_cast<std::uint64_t>(h), size_)) - offset;
    return Status::Ok;
}

BudgetAllocator::~BudgetAllocator() {
    for (void* p : live_)
        std::free(p);
}

void* BudgetAllocator::allocate(std::size_t size, std::size_t align) {
    if (size > left_ || align > alignof(std::max_align_t) * 64)
        return nullptr;
    // aligned_alloc wants the size a multiple of the alignment actually passed (at least a pointer's).
    const std::size_t a = align < alignof(void*) ? alignof(void*) : align;
    void* p = std::aligned_alloc(a, (size + a - 1) / a * a);
    if (!p)
        return nullptr;
    live_.insert(p);
    left_ -= size;
    used_ += size;
    peak_ = used_ > peak_ ? used_ : peak_;
    return p;
}

void BudgetAllocator::deallocate(void* p, std::size_t size) {
    if (!p)
        return;
    live_.erase(p);
    std::free(p);
    left_ += size;
    used_ -= size;
}

namespace {

struct Collector {
    std::vector<std::uint8_t> bytes;
    static Status flush(void* ctx, const std::uint8_t* data, std::size_t len) {
        auto* self = static_cast<Collector*>(ctx);
        self->bytes.insert(self->bytes.end(), data, data + len);
        return Status::Ok;
    }
};

// The record size the guest runtime uses for INFO records.
constexpr std::size_t RECORD_BUFFER = 32u << 10;

const char* role_name(guest::FileRole r) {
    switch (r) {
    case guest::FileRole::Backing: return "backing";
    case guest::FileRole::DataFile: return "data-file";
    case guest::FileRole::Extent: return "extent";
    }
    return "?";
}

} // namespace

HostedInfo run_info(InfoFn info, BlockDevice& image, const std::vector<BlockDevice*>& files,
                    std::size_t memory_budget, std::uint32_t qemu_version) {
    BudgetAllocator alloc(memory_budget);
    Collector c;
    std::vector<std::uint8_t> buf(RECORD_BUFFER);
    guest::InfoEncoder enc(buf.data(), buf.size(), &Collector::flush, &c);
    guest::InfoRequest req{&image, &alloc, files.data(), static_cast<std::uint32_t>(files.size()), qemu_version};
    HostedInfo out;
    out.status = info(req, enc);
    const Status fin = enc.finish();
    if (out.status == Status::Ok && fin != Status::Ok)
        out.status = fin;
    {
        auto decoded = decode_info(c.bytes, out.status == Status::Ok || out.status == Status::NeedFiles);
        if (decoded)
            out.info = std::move(*decoded);
        else
            out.decode_error = decoded.error();
    }
    return out;
}

boost::json::value debug_json(const ImageInfo& info) {
    boost::json::object o;
    o["format"] = info.format;
    o["virtual-size"] = info.virtual_size;
    if (info.cluster_size)
        o["cluster-size"] = *info.cluster_size;
    if (info.encrypted)
        o["encrypted"] = *info.encrypted;
    if (info.dirty)
        o["dirty-flag"] = *info.dirty;
    if (info.backing_format)
        o["backing-filename-format"] = *info.backing_format;
    boost::json::array files;
    for (const auto& f : info.files)
        files.push_back(boost::json::object{{"role", role_name(f.role)}, {"name", f.name}});
    o["files"] = std::move(files);
    boost::json::array snaps;
    for (const auto& s : info.snapshots) {
        boost::json::object x{{"id", s.id},
                              {"name", s.name},
                              {"vm-state-size", s.vm_state_size},
                              {"date-sec", s.date_sec},
                              {"date-nsec", s.date_nsec},
                              {"vm-clock-sec", s.vm_clock_nsec / 1000000000},
                              {"vm-clock-nsec", s.vm_clock_nsec % 1000000000}};
        if (s.icount)
            x["icount"] = *s.icount;
        snaps.push_back(std::move(x));
    }
    o["snapshots"] = std::move(snaps);
    if (info.specific_type)
        o["format-specific"] = boost::json::object{{"type", *info.specific_type}, {"data", info.specific}};
    if (!info.reason.empty())
        o["reason"] = info.reason;
    return o;
}

int hosted_info_main(int argc, char** argv, ProbeFn probe, InfoFn info) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " FILE [REFERENCED_FILE...]\n";
        return 2;
    }
    FileDevice image(argv[1]);
    if (!image.ok()) {
        std::cerr << argv[1] << ": cannot open\n";
        return 2;
    }
    std::vector<std::unique_ptr<FileDevice>> owned;
    std::vector<BlockDevice*> files;
    for (int i = 2; i < argc; ++i) {
        owned.push_back(std::make_unique<FileDevice>(argv[i]));
        files.push_back(owned.back().get());
    }
    bool match = false;
    const Status ps = probe ? probe(image, &match) : Status::Ok;
    boost::json::object out{{"probe", match}, {"probe-status", static_cast<int>(ps)}};
    const HostedInfo r = run_info(info, image, files);
    out["status"] = static_cast<int>(r.status);
    if (!r.decode_error.empty())
        out["decode-error"] = r.decode_error;
    else
        out["info"] = debug_json(r.info);
    std::cout << boost::json::serialize(out) << '\n';
    return 0;
}

} // namespace instar::hosted
