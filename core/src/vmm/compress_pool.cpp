// INSTAR_HC_COMPRESS: deflate (libdeflate, or zlib as qemu) and zstd over opaque bytes, on a small
// pool of threads.
#include "vmm/compress_pool.h"

#include <libdeflate.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <instar/guest_abi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

namespace instar::vmm {

namespace {

// deflateInit2 as qemu's qcow2_zlib_compress (raw deflate, window 12, memLevel 9) or zlib's own
// compress() (zlib header, window 15, memLevel 8), both at Z_DEFAULT_COMPRESSION.
std::int64_t zlib_compress(const std::uint8_t* src, std::size_t len, std::uint8_t* dst, std::size_t cap,
                           std::size_t* out, int window_bits, int mem_level) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
        return -INSTAR_EIO;
    // SAFETY: zlib only reads next_in; the cast drops const for its C API.
    zs.next_in = const_cast<Bytef*>(src);
    zs.avail_in = static_cast<uInt>(len);
    zs.next_out = dst;
    zs.avail_out = static_cast<uInt>(cap);
    const int rc = ::deflate(&zs, Z_FINISH);
    *out = zs.total_out;
    deflateEnd(&zs);
    if (rc == Z_STREAM_END) return 0;
    return rc == Z_OK || rc == Z_BUF_ERROR ? -INSTAR_ENOSPC : -INSTAR_EIO;
}

// qemu's qcow2_zstd_compress: one ZSTD_compressStream2(ZSTD_e_end) call with a fresh context.
std::int64_t zstd_compress(const std::uint8_t* src, std::size_t len, std::uint8_t* dst, std::size_t cap,
                           std::size_t* out) {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    if (cctx == nullptr) return -INSTAR_EIO;
    ZSTD_outBuffer output{dst, cap, 0};
    ZSTD_inBuffer input{src, len, 0};
    const std::size_t rc = ZSTD_compressStream2(cctx, &output, &input, ZSTD_e_end);
    ZSTD_freeCCtx(cctx);
    if (rc != 0) return rc > output.size - output.pos ? -INSTAR_ENOSPC : -INSTAR_EIO;
    *out = output.pos;
    return 0;
}

// libdeflate at zlib's default level: qemu's level, a smaller result than zlib's on the same data
// and about 2.5 times faster (docs/convert.md, "Deflate with libdeflate").
constexpr int LIBDEFLATE_LEVEL = 6;

struct CompressorFree {
    void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

// One compressor per thread, made on its first job and kept (its ~0.5 MiB of tables are reused).
libdeflate_compressor* thread_compressor() {
    thread_local std::unique_ptr<libdeflate_compressor, CompressorFree> c{libdeflate_alloc_compressor(LIBDEFLATE_LEVEL)};
    return c.get();
}

// libdeflate's raw deflate (qcow2) or zlib stream (vmdk). Its window is 32 KiB where qemu's qcow2
// deflates with 4 KiB; qemu's inflater (window 12) still reads it, since it inflates a whole cluster
// in one call and every distance then points into that call's own output.
std::int64_t libdeflate_compress(const std::uint8_t* src, std::size_t len, std::uint8_t* dst, std::size_t cap,
                                 std::size_t* out, bool zlib_stream) {
    libdeflate_compressor* c = thread_compressor();
    if (c == nullptr) return -INSTAR_EIO;
    const std::size_t n = zlib_stream ? libdeflate_zlib_compress(c, src, len, dst, cap)
                                      : libdeflate_deflate_compress(c, src, len, dst, cap);
    if (n == 0) return -INSTAR_ENOSPC; // does not fit in cap
    *out = n;
    return 0;
}

} // namespace

bool deflate_like_qemu() {
    static const bool zlib = [] {
        const char* v = std::getenv("INSTAR_DEFLATE");
        return v != nullptr && std::string_view(v) == "zlib";
    }();
    return zlib;
}

std::int64_t compress_one(std::uint32_t kind, const std::uint8_t* src, std::size_t len, std::uint8_t* dst,
                          std::size_t cap, std::size_t* out) {
    *out = 0;
    switch (kind) {
    case INSTAR_COMPRESS_QCOW2_ZLIB:
        return deflate_like_qemu() ? zlib_compress(src, len, dst, cap, out, -12, 9)
                                   : libdeflate_compress(src, len, dst, cap, out, false);
    case INSTAR_COMPRESS_QCOW2_ZSTD: return zstd_compress(src, len, dst, cap, out);
    case INSTAR_COMPRESS_ZLIB:
        return deflate_like_qemu() ? zlib_compress(src, len, dst, cap, out, 15, 8)
                                   : libdeflate_compress(src, len, dst, cap, out, true);
    default: return -INSTAR_EIO;
    }
}

unsigned online_cpus() {
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : static_cast<unsigned>(n);
}

CompressPool::~CompressPool() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

unsigned CompressPool::start(unsigned workers, const std::function<bool()>& confine) {
    for (unsigned i = 0; i < workers; ++i) {
        try {
            threads_.emplace_back([this, confine] { loop(confine); });
        } catch (...) {
            break;
        }
    }
    return static_cast<unsigned>(threads_.size());
}

void CompressPool::work() {
    for (;;) {
        const std::function<void(std::size_t)>* job = nullptr;
        std::size_t i = 0;
        {
            std::lock_guard lock(mu_);
            if (job_ == nullptr || next_ >= count_) return;
            job = job_;
            i = next_++;
        }
        (*job)(i);
        std::lock_guard lock(mu_);
        if (++done_ == count_) cv_.notify_all();
    }
}

void CompressPool::loop(std::function<bool()> confine) {
    if (confine && !confine()) return; // unconfined workers never touch a job
    std::uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stop_ || (job_ != nullptr && batch_ != seen); });
            if (stop_) return;
            seen = batch_;
        }
        work();
    }
}

void CompressPool::run(std::size_t count, const std::function<void(std::size_t)>& job) {
    if (count == 0) return;
    {
        std::lock_guard lock(mu_);
        job_ = &job;
        count_ = count;
        next_ = 0;
        done_ = 0;
        ++batch_;
    }
    cv_.notify_all();
    work();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_ == count_; });
    job_ = nullptr;
}

} // namespace instar::vmm
