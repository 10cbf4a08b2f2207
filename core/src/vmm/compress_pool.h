// INSTAR_HC_COMPRESS's host side: compressing opaque guest bytes on every core. The bytes are
// handed to libdeflate (or, with INSTAR_DEFLATE=zlib, to zlib with qemu's parameters) or to zstd
// with qemu's, and are never looked at otherwise.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace instar::vmm {

// INSTAR_DEFLATE=zlib: deflate with zlib and qemu's parameters, so that compressed targets are
// qemu-img's byte for byte; otherwise libdeflate (faster, smaller, a valid stream for qemu's
// inflater, different bytes). Read once.
bool deflate_like_qemu();

// Compresses [src, src + len) into [dst, dst + cap) as `kind` (enum instar_compress_kind) says:
// 0 with *out set, -INSTAR_ENOSPC when the result does not fit, -INSTAR_EIO on a codec failure
// (an unknown kind included).
std::int64_t compress_one(std::uint32_t kind, const std::uint8_t* src, std::size_t len, std::uint8_t* dst,
                          std::size_t cap, std::size_t* out);

// Worker threads that run one batch's jobs together with the calling thread. Started before the
// vCPU thread drops its rights (no thread can be made after); each worker confines itself first.
class CompressPool {
public:
    CompressPool() = default;
    ~CompressPool(); // stops and joins the workers
    CompressPool(const CompressPool&) = delete;
    CompressPool& operator=(const CompressPool&) = delete;

    // Starts `workers` threads, each running `confine` first (may be empty; a worker whose confine
    // fails does no work). Returns how many were started.
    unsigned start(unsigned workers, const std::function<bool()>& confine);
    // Runs job(i) for every i < count, on the workers and this thread; returns when all are done.
    void run(std::size_t count, const std::function<void(std::size_t)>& job);

private:
    void loop(std::function<bool()> confine);
    void work();

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::thread> threads_;
    const std::function<void(std::size_t)>* job_ = nullptr; // guarded by mu_
    std::size_t count_ = 0;     // jobs in this batch (guarded by mu_)
    std::size_t next_ = 0;      // next job to take (guarded by mu_)
    std::size_t done_ = 0;      // jobs finished (guarded by mu_)
    std::uint64_t batch_ = 0;   // batch number, so a worker joins each batch once (guarded by mu_)
    bool stop_ = false;         // guarded by mu_
};

// Online CPUs (read before the filter: sysconf reads /sys), at least 1.
unsigned online_cpus();

} // namespace instar::vmm
