// INSTAR_HC_COMPRESS: zlib and zstd over opaque bytes, on a small pool of threads.
#include "vmm/compress_pool.h"

#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <instar/guest_abi.h>

#include <cstring>

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

} // namespace

std::int64_t compress_one(std::uint32_t kind, const std::uint8_t* src, std::size_t len, std::uint8_t* dst,
                          std::size_t cap, std::size_t* out) {
    *out = 0;
    switch (kind) {
    case INSTAR_COMPRESS_QCOW2_ZLIB: return zlib_compress(src, len, dst, cap, out, -12, 9);
    case INSTAR_COMPRESS_QCOW2_ZSTD: return zstd_compress(src, len, dst, cap, out);
    case INSTAR_COMPRESS_ZLIB: return zlib_compress(src, len, dst, cap, out, 15, 8);
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
