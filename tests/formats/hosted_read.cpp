// Hosted read harness: open() over files, the extent walk and the raw dump (hosted_read.h).
#include "hosted_read.h"

#include "hosted_support.h"
#include "map_walk.h"

#include <boost/json.hpp>

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>

namespace instar::hosted {
namespace {

using guest::Status;

Status inflate_host(const void* src, std::size_t src_len, void* dst, std::size_t dst_cap, std::size_t* out_len,
                    int window_bits) {
    *out_len = 0;
    z_stream zs{};
    zs.next_in = static_cast<Bytef*>(const_cast<void*>(src));
    zs.avail_in = static_cast<uInt>(src_len);
    zs.next_out = static_cast<Bytef*>(dst);
    zs.avail_out = static_cast<uInt>(dst_cap);
    if (src_len > 0xFFFFFFFFu || dst_cap > 0xFFFFFFFFu)
        return Status::TooLarge;
    if (inflateInit2(&zs, window_bits) != Z_OK)
        return Status::NoMemory;
    const int rc = ::inflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    // The same answers as the guest runtime's inflate_buffer (guest/src/services.cpp).
    if (rc == Z_STREAM_END)
        return Status::Ok;
    if (rc == Z_MEM_ERROR)
        return Status::NoMemory;
    if (rc == Z_BUF_ERROR && zs.avail_out == 0)
        return Status::TooLarge;
    return Status::Corrupt;
}

Status zstd_decompress_host(const void* src, std::size_t src_len, void* dst, std::size_t dst_cap,
                            std::size_t* out_len) {
    *out_len = 0;
    const std::size_t n = ZSTD_decompress(dst, dst_cap, src, src_len);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? Status::TooLarge : Status::Corrupt;
    *out_len = n;
    return Status::Ok;
}

Status deflate_mem_host(const void* src, std::size_t src_len, void* dst, std::size_t dst_cap, std::size_t* out_len,
                        int window_bits, int level, int mem_level) {
    *out_len = 0;
    z_stream zs{};
    if (deflateInit2(&zs, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
        return Status::NoMemory;
    zs.next_in = static_cast<Bytef*>(const_cast<void*>(src));
    zs.avail_in = static_cast<uInt>(src_len);
    zs.next_out = static_cast<Bytef*>(dst);
    zs.avail_out = static_cast<uInt>(dst_cap);
    const int rc = ::deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? Status::Ok : Status::TooLarge;
}

Status deflate_host(const void* src, std::size_t src_len, void* dst, std::size_t dst_cap, std::size_t* out_len,
                    int window_bits, int level) {
    return deflate_mem_host(src, src_len, dst, dst_cap, out_len, window_bits, level, 9);
}

Status zstd_compress_host(const void* src, std::size_t src_len, void* dst, std::size_t dst_cap,
                          std::size_t* out_len) {
    *out_len = 0;
    const std::size_t n = ZSTD_compress(dst, dst_cap, src, src_len, ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(n))
        return Status::TooLarge;
    *out_len = n;
    return Status::Ok;
}

// The runtime's compress_batch hands jobs to the host's threads; hosted, one after the other, with
// the single-buffer functions (so hosted tests run the writers' batching code).
Status compress_batch_host(guest::CompressKind kind, guest::CompressJob* jobs, std::uint32_t count) {
    for (std::uint32_t i = 0; i < count; ++i) {
        guest::CompressJob& j = jobs[i];
        switch (kind) {
        case guest::CompressKind::Qcow2Zlib:
            j.status = deflate_mem_host(j.src, j.src_len, j.dst, j.dst_cap, &j.out_len, -12, 6, 9);
            break;
        case guest::CompressKind::Qcow2Zstd:
            j.status = zstd_compress_host(j.src, j.src_len, j.dst, j.dst_cap, &j.out_len);
            break;
        case guest::CompressKind::Zlib:
            j.status = deflate_mem_host(j.src, j.src_len, j.dst, j.dst_cap, &j.out_len, 15, 6, 8);
            break;
        default: return Status::Invalid;
        }
    }
    return Status::Ok;
}

const guest::Codecs CODECS{inflate_host,     zstd_decompress_host, deflate_host, zstd_compress_host,
                           deflate_mem_host, compress_batch_host};

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t len) override {
        if (text.empty())
            text.assign(t, len);
    }
};

const char* allocation_name(guest::Allocation a) {
    switch (a) {
    case guest::Allocation::Data: return "data";
    case guest::Allocation::Zero: return "zero";
    case guest::Allocation::Unallocated: return "unallocated";
    }
    return "?";
}

// Two extents merge when they continue each other exactly.
bool continues(const DumpedExtent& a, std::uint64_t start, const guest::Extent& b) {
    if (a.extent.allocation != b.allocation || a.extent.flags != b.flags || a.start + a.extent.length != start)
        return false;
    if (!(b.flags & guest::EXTENT_OFFSET_VALID))
        return true;
    return a.extent.device == b.device && a.extent.offset + a.extent.length == b.offset;
}

} // namespace

const guest::Codecs& host_codecs() { return CODECS; }

ReadDump dump_image(guest::OpenFn open, const std::string& image, const std::vector<std::string>& files,
                    const std::string& out_path, const char* snapshot, std::size_t memory_budget,
                    std::size_t chunk) {
    ReadDump out;
    FileDevice img(image);
    std::vector<std::unique_ptr<FileDevice>> owned;
    std::vector<BlockDevice*> devs;
    for (const auto& f : files) {
        owned.push_back(std::make_unique<FileDevice>(f));
        devs.push_back(owned.back().get());
    }
    BudgetAllocator alloc(memory_budget);
    Reasons reasons;
    guest::OpenRequest req{&img, devs.data(), static_cast<std::uint32_t>(devs.size()), &alloc, &CODECS, &reasons,
                           snapshot, 100000};
    guest::ImageReader* reader = nullptr;
    out.status = open(req, &reader);
    if (out.status != Status::Ok || reader == nullptr) {
        out.reason = reasons.text;
        if (out.status == Status::Ok)
            out.status = Status::Invalid;
        return out;
    }
    const std::uint64_t size = reader->virtual_size();
    out.virtual_size = size;
    int fd = -1;
    if (!out_path.empty()) {
        fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
            out.status = Status::IoError;
            out.reason = "cannot create " + out_path;
        }
    }
    std::vector<std::uint8_t> buf(chunk);
    for (std::uint64_t off = 0; out.status == Status::Ok && off < size;) {
        guest::Extent e{};
        const std::uint64_t want = std::min<std::uint64_t>(size - off, std::uint64_t{1} << 40);
        out.status = reader->status(off, want, &e);
        if (out.status != Status::Ok)
            break;
        if (e.length == 0 || e.length > want) {
            out.status = Status::Invalid;
            out.reason = "status() returned a length of " + std::to_string(e.length) + " at " + std::to_string(off);
            break;
        }
        if (!out.extents.empty() && continues(out.extents.back(), off, e))
            out.extents.back().extent.length += e.length;
        else
            out.extents.push_back({off, e});
        if (fd >= 0 && e.allocation == guest::Allocation::Data) {
            for (std::uint64_t p = off; p < off + e.length && out.status == Status::Ok;) {
                const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, off + e.length - p));
                out.status = reader->read(p, buf.data(), n);
                if (out.status == Status::Ok &&
                    ::pwrite(fd, buf.data(), n, static_cast<off_t>(p)) != static_cast<ssize_t>(n))
                    out.status = Status::IoError;
                p += n;
            }
        }
        off += e.length;
    }
    if (fd >= 0)
        ::close(fd);
    if (out.reason.empty())
        out.reason = reasons.text;
    reader->close();
    out.peak_memory = alloc.peak();
    return out;
}

namespace {

// A reader that fails after a budget of status() calls, so a map walk over a fuzzed image stays short.
class BudgetReader final : public guest::ImageReader {
public:
    BudgetReader(guest::ImageReader& r, int budget) : r_(r), budget_(budget) {}
    std::uint64_t virtual_size() const override { return r_.virtual_size(); }
    Status status(std::uint64_t offset, std::uint64_t length, guest::Extent* out) override {
        if (budget_-- <= 0)
            return Status::IoError;
        return r_.status(offset, length, out);
    }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override { return r_.read(offset, buf, len); }
    void close() override {}

private:
    guest::ImageReader& r_;
    int budget_;
};

// Checks what qemu-img map's walk sends: contiguous runs from the start, never two joinable runs in a
// row, known flags only.
class CheckingSink final : public convert::MapSink {
public:
    explicit CheckingSink(std::uint64_t start) : next_(start) {}
    Status emit(const instar_map_entry* e, std::uint32_t n) override {
        if (n == 0 || n > INSTAR_MAP_MAX_BATCH)
            __builtin_trap();
        for (std::uint32_t i = 0; i < n; ++i) {
            if (e[i].start != next_ || e[i].length == 0 || (e[i].flags & ~INSTAR_MAP_FLAGS_ALL) ||
                (have_prev_ && convert::map_mergeable(prev_, e[i])))
                __builtin_trap();
            next_ += e[i].length;
            prev_ = e[i];
            have_prev_ = true;
        }
        return Status::Ok;
    }

private:
    std::uint64_t next_;
    instar_map_entry prev_{};
    bool have_prev_ = false;
};

} // namespace

MemoryWalk walk_memory_image(guest::OpenFn open, const std::vector<std::uint8_t>& image, std::size_t memory_budget,
                             std::size_t chunk) {
    MemoryWalk w;
    MemoryDevice dev(image);
    BudgetAllocator alloc(memory_budget);
    ReasonText reasons;
    const guest::OpenRequest req{&dev, nullptr, 0, &alloc, &host_codecs(), &reasons, nullptr, 100000};
    guest::ImageReader* r = nullptr;
    w.status = open(req, &r);
    w.reason = reasons.text;
    if (w.status != Status::Ok)
        return w;
    const std::uint64_t size = r->virtual_size();
    for (std::uint64_t off = 0; off < size && w.status == Status::Ok;) {
        guest::Extent e{};
        w.status = r->status(off, size - off, &e);
        if (w.status == Status::Ok && e.length == 0)
            w.status = Status::Invalid;
        if (w.status != Status::Ok)
            break;
        w.extents.push_back(e);
        off += e.length;
    }
    if (w.status == Status::Ok) {
        w.data.resize(size);
        for (std::uint64_t off = 0; off < size && w.status == Status::Ok; off += chunk)
            w.status = r->read(off, w.data.data() + off,
                               static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - off)));
    }
    w.reason = reasons.text;
    r->close();
    return w;
}

int fuzz_read_walk(guest::OpenFn open, const std::uint8_t* data, std::size_t size) {
    constexpr int MAX_CALLS = 4096;              // status() calls per input
    constexpr std::size_t READ_CAP = 256 * 1024; // bytes per read() call
    // Bytes read per input: 4096 calls of 256 KiB (1 GiB of memset and, under the fuzzer's
    // per-byte coverage, of zero checks) made one input of a large sparse image take over 10 s.
    constexpr std::uint64_t READ_BUDGET = std::uint64_t{32} << 20;
    static const std::vector<std::uint8_t> zeros(READ_CAP);
    std::uint64_t read_total = 0;
    MemoryDevice dev(std::vector<std::uint8_t>(data, data + size));
    BudgetAllocator alloc(1 << 20);
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &CODECS, nullptr, nullptr, 100000};
    guest::ImageReader* r = nullptr;
    if (open(req, &r) != Status::Ok)
        return 0;
    std::vector<std::uint8_t> buf(READ_CAP);
    const std::uint64_t vsize = r->virtual_size();
    std::uint64_t off = 0;
    for (int calls = 0; off < vsize && calls < MAX_CALLS; ++calls) {
        guest::Extent e{};
        if (r->status(off, vsize - off, &e) != Status::Ok)
            break;
        if (e.length == 0 || e.length > vsize - off)
            __builtin_trap();
        const std::size_t n = e.length < READ_CAP ? static_cast<std::size_t>(e.length) : READ_CAP;
        if (read_total < READ_BUDGET) {
            read_total += n;
            if (r->read(off, buf.data(), n) != Status::Ok)
                break;
            if (e.allocation != guest::Allocation::Data && std::memcmp(buf.data(), zeros.data(), n) != 0)
                __builtin_trap();
        }
        off += e.length;
    }
    // qemu-img map's walk over the same reader, in each style.
    for (std::uint32_t style : {0u, INSTAR_MAP_STYLE_HOLE_IS_DATA | INSTAR_MAP_STYLE_UNALLOCATED_ZERO |
                                         INSTAR_MAP_STYLE_NO_BACKING}) {
        BudgetReader budget(*r, MAX_CALLS);
        const convert::MapLayer layer{&budget, style, size};
        std::vector<instar_map_entry> batch(INSTAR_MAP_MAX_BATCH);
        CheckingSink sink(vsize / 3);
        std::uint32_t failed = 0;
        (void)convert::map_walk(&layer, 1, vsize / 3, vsize, batch.data(), MAX_CALLS, sink, &failed);
    }
    r->close();
    return 0;
}

int hosted_read_main(guest::OpenFn open, int argc, char** argv) {
    std::vector<std::string> files;
    std::vector<std::string> positional;
    const char* snapshot = nullptr;
    std::size_t chunk = 2u << 20;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--file" && i + 1 < argc)
            files.emplace_back(argv[++i]);
        else if (a == "-l" && i + 1 < argc)
            snapshot = argv[++i];
        else if (a == "--chunk" && i + 1 < argc)
            chunk = std::stoul(argv[++i]);
        else
            positional.push_back(a);
    }
    if (positional.empty() || positional.size() > 2 || chunk == 0) {
        std::cerr << "usage: " << argv[0] << " [--file F]... [-l SNAPSHOT] [--chunk BYTES] IMAGE [OUT.raw]\n";
        return 2;
    }
    const ReadDump d = dump_image(open, positional[0], files, positional.size() > 1 ? positional[1] : "", snapshot,
                                  256u << 20, chunk);
    boost::json::array map;
    for (const auto& x : d.extents) {
        boost::json::object o{{"start", x.start},
                              {"length", x.extent.length},
                              {"allocation", allocation_name(x.extent.allocation)},
                              {"compressed", (x.extent.flags & guest::EXTENT_COMPRESSED) != 0}};
        if (x.extent.flags & guest::EXTENT_OFFSET_VALID) {
            o["device"] = x.extent.device;
            o["offset"] = x.extent.offset;
        }
        map.push_back(std::move(o));
    }
    boost::json::object report{{"status", static_cast<int>(d.status)},
                               {"reason", d.reason},
                               {"virtual-size", d.virtual_size},
                               {"peak-memory", d.peak_memory},
                               {"map", std::move(map)}};
    std::cout << boost::json::serialize(report) << "\n";
    return 0;
}

} // namespace instar::hosted
