// Device I/O for the hypercall server: plain and O_DIRECT transfers, and the write-behind queue.
#include "vmm/device_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

namespace instar::vmm {

namespace {

std::uint64_t round_down(std::uint64_t v) { return v & ~(DIRECT_IO_ALIGN - 1); }
std::uint64_t round_up(std::uint64_t v) { return (v + DIRECT_IO_ALIGN - 1) & ~(DIRECT_IO_ALIGN - 1); }

// pread/pwrite the whole range, retrying short transfers and signals (the watchdog's included).
Transfer plain_transfer(int fd, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset, bool write,
                        const Watchdog& watchdog) {
    while (len > 0) {
        if (watchdog.expired()) return Transfer::TimedOut;
        const std::size_t piece = len > TRANSFER_PIECE ? TRANSFER_PIECE : static_cast<std::size_t>(len);
        const ssize_t n = write ? ::pwrite(fd, buf, piece, static_cast<off_t>(offset))
                                : ::pread(fd, buf, piece, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) errno = EIO; // the file shrank under us
        if (n <= 0) return Transfer::Failed;
        buf += n;
        len -= static_cast<std::uint64_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return Transfer::Done;
}

// Reads up to `len` bytes (aligned) at `offset` (aligned) into `buf`, stopping early only at the
// end of the file; *got says how many. The rest of the range is zeroed.
Transfer direct_read_upto(int fd, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset, std::uint64_t* got) {
    std::uint64_t done = 0;
    while (done < len) {
        const ssize_t n = ::pread(fd, buf + done, static_cast<std::size_t>(len - done),
                                  static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Transfer::Failed;
        if (n == 0) break;
        done += static_cast<std::uint64_t>(n);
        if (done % DIRECT_IO_ALIGN != 0) break; // a short read ends at the file's end
    }
    std::memset(buf + done, 0, static_cast<std::size_t>(len - done));
    *got = done;
    return Transfer::Done;
}

// fstat(2) itself (glibc's fstat is newfstatat with a path, which the filters refuse).
int file_size(int fd, std::uint64_t* size) {
    struct stat st{};
    // SAFETY: x86-64's kernel struct stat is glibc's struct stat.
    if (::syscall(SYS_fstat, fd, &st) != 0) return -1;
    *size = static_cast<std::uint64_t>(st.st_size);
    return 0;
}

Transfer direct_transfer(int fd, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset, bool write,
                         const Watchdog& watchdog, BounceBuffer& bounce) {
    std::uint8_t* b = bounce.get();
    if (b == nullptr) {
        errno = ENOMEM;
        return Transfer::Failed;
    }
    const std::uint64_t end = offset + len;
    std::uint64_t old_size = 0;
    const bool unaligned_end = write && round_up(end) != end;
    if (unaligned_end && file_size(fd, &old_size) != 0) return Transfer::Failed;
    for (std::uint64_t pos = offset; pos < end;) {
        if (watchdog.expired()) return Transfer::TimedOut;
        const std::uint64_t a = round_down(pos);
        const std::uint64_t chunk_end = end - a < DIRECT_BOUNCE_BYTES ? end : a + DIRECT_BOUNCE_BYTES;
        const std::uint64_t z = round_up(chunk_end);
        std::uint64_t got = 0;
        if (!write) {
            if (direct_read_upto(fd, b, z - a, a, &got) != Transfer::Done) return Transfer::Failed;
            if (got < chunk_end - a) {
                errno = EIO; // past the file's end
                return Transfer::Failed;
            }
            std::memcpy(buf + (pos - offset), b + (pos - a), static_cast<std::size_t>(chunk_end - pos));
        } else {
            // Partial blocks at either edge keep the file's bytes around the request.
            if (pos > a && direct_read_upto(fd, b, DIRECT_IO_ALIGN, a, &got) != Transfer::Done) return Transfer::Failed;
            if (chunk_end < z && (z - DIRECT_IO_ALIGN > a || pos == a) &&
                direct_read_upto(fd, b + (z - DIRECT_IO_ALIGN - a), DIRECT_IO_ALIGN, z - DIRECT_IO_ALIGN, &got) !=
                    Transfer::Done)
                return Transfer::Failed;
            std::memcpy(b + (pos - a), buf + (pos - offset), static_cast<std::size_t>(chunk_end - pos));
            if (const Transfer t = plain_transfer(fd, b, z - a, a, true, watchdog); t != Transfer::Done) return t;
        }
        pos = chunk_end;
    }
    // The last block was written whole: where that made the file longer than both its old length
    // and the request's end, cut it back (a later write or SET_LENGTH decides the rest).
    if (unaligned_end && round_up(end) > old_size) {
        const std::uint64_t want = old_size > end ? old_size : end;
        if (::ftruncate(fd, static_cast<off_t>(want)) != 0) return Transfer::Failed;
    }
    return Transfer::Done;
}

} // namespace

BounceBuffer::~BounceBuffer() { std::free(p_); }

std::uint8_t* BounceBuffer::get() {
    if (p_ == nullptr) {
        void* p = nullptr;
        if (::posix_memalign(&p, DIRECT_IO_ALIGN, DIRECT_BOUNCE_BYTES) != 0) return nullptr;
        p_ = static_cast<std::uint8_t*>(p);
    }
    return p_;
}

Transfer device_transfer(const Device& d, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset, bool write,
                         const Watchdog& watchdog, BounceBuffer& bounce) {
    if (len == 0) return Transfer::Done;
    if (!d.direct) return plain_transfer(d.fd, buf, len, offset, write, watchdog);
    return direct_transfer(d.fd, buf, len, offset, write, watchdog, bounce);
}

bool WritebackStarter::wrote(const Device& d, std::uint64_t len) {
    if (!d.early_writeback || d.direct) return false;
    pending_ += len;
    if (pending_ < EARLY_WRITEBACK_BYTES) return false;
    pending_ = 0;
    (void)::sync_file_range(d.fd, 0, 0, SYNC_FILE_RANGE_WRITE); // the whole file: what the flush would write
    return true;
}

WriteBehind::WriteBehind(const Watchdog& watchdog) : watchdog_(watchdog) {}

WriteBehind::~WriteBehind() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool start_worker_thread(std::thread& thread, std::function<bool()> confine, std::function<void()> refused,
                         std::function<void()> body) {
    try {
        thread = std::thread([confine = std::move(confine), refused = std::move(refused), body = std::move(body)] {
            if (confine && !confine()) {
                refused();
                return;
            }
            body();
        });
    } catch (...) {
        return false;
    }
    return true;
}

bool WriteBehind::start(std::function<bool()> confine) {
    return start_worker_thread(thread_, std::move(confine), [this] {
        std::lock_guard lock(mu_);
        failure_ = Failure{Transfer::Failed, EPERM, 0};
        stop_ = true;
        cv_.notify_all();
    }, [this] { loop(); });
}

bool WriteBehind::enqueue(const Device& d, const std::uint8_t* src, std::uint64_t len, std::uint64_t offset) {
    {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] {
            return (!from_guest_queued_ && queue_.size() < WRITE_BEHIND_MAX_JOBS) || failure_ || stop_;
        });
        if (failure_ || stop_) return false;
        queue_.push_back(Job{d, src, len, offset, nullptr});
        from_guest_queued_ = true;
    }
    cv_.notify_all();
    return true;
}

bool WriteBehind::enqueue_copy(const Device& d, const std::uint8_t* src, std::uint64_t len, std::uint64_t offset) {
    if (len == 0 || len > WRITE_BEHIND_COPY_MAX) return false;
    {
        std::lock_guard lock(mu_);
        if (queue_.empty() || failure_ || stop_) return false;
    }
    std::unique_ptr<std::uint8_t[]> copy(new (std::nothrow) std::uint8_t[len]);
    if (!copy) return false;
    std::memcpy(copy.get(), src, len);
    {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this, len] {
            return (copied_bytes_ + len <= WRITE_BEHIND_COPY_BYTES && queue_.size() < WRITE_BEHIND_MAX_JOBS) ||
                   failure_ || stop_;
        });
        if (failure_ || stop_) return false;
        const std::uint8_t* bytes = copy.get();
        queue_.push_back(Job{d, bytes, len, offset, std::move(copy)});
        copied_bytes_ += len;
    }
    cv_.notify_all();
    return true;
}

bool WriteBehind::overlaps(int fd, std::uint64_t offset, std::uint64_t len) {
    std::lock_guard lock(mu_);
    for (const Job& j : queue_)
        if (j.dev.fd == fd && offset < j.offset + j.len && j.offset < offset + len) return true;
    return false;
}

bool WriteBehind::busy() {
    std::lock_guard lock(mu_);
    return !queue_.empty();
}

std::optional<WriteBehind::Failure> WriteBehind::drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return queue_.empty() || (stop_ && failure_); });
    return failure_;
}

std::optional<WriteBehind::Failure> WriteBehind::failure() {
    std::lock_guard lock(mu_);
    return failure_;
}

void WriteBehind::loop() {
    for (;;) {
        Job* job = nullptr;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return !queue_.empty() || stop_; });
            if (queue_.empty()) return; // stop_ with nothing left to write
            job = &queue_.front();      // stays put: only this thread pops, push_back keeps references
        }
        // SAFETY: a write from guest RAM lies there (the server checked it), which outlives this
        // thread; the guest may change the bytes meanwhile, which only changes what it writes.
        const Transfer t = device_transfer(job->dev, const_cast<std::uint8_t*>(job->src), job->len, job->offset, true,
                                           watchdog_, bounce_);
        const int err = errno;
        if (t == Transfer::Done) writeback_.wrote(job->dev, job->len);
        {
            std::lock_guard lock(mu_);
            if (t != Transfer::Done && !failure_) failure_ = Failure{t, err, job->offset};
            if (failure_) { // nothing after a failed write is written: drop the rest
                queue_.clear();
                copied_bytes_ = 0;
                from_guest_queued_ = false;
            } else {
                if (job->copy) copied_bytes_ -= job->len;
                else from_guest_queued_ = false;
                queue_.pop_front();
            }
        }
        cv_.notify_all();
    }
}

} // namespace instar::vmm
