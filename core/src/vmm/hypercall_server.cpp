// Hypercall validation and service. Nothing from the mailbox reaches a syscall unchecked.
#include "vmm/hypercall_server.h"

#include "vmm/device_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <cstdlib>

namespace instar::vmm {

namespace {

SandboxError bad_request(const std::string& what) {
    return {ErrorKind::GuestBadRequest, "guest made a bad request: " + what, {}};
}

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// INSTAR_TEST_KILL_AT_WRITE=N (tests of crash consistency, docs/edit.md): the host process ends at
// once, as a kill -9 would, instead of serving the N-th (1-based) hypercall that changes a file
// (write, set length, discard). 0 or unset: off.
std::uint64_t kill_at_write() {
    static const std::uint64_t n = [] {
        const char* v = std::getenv("INSTAR_TEST_KILL_AT_WRITE");
        return v == nullptr ? 0ull : std::strtoull(v, nullptr, 10);
    }();
    return n;
}

} // namespace

std::string cpu_exception_name(std::uint64_t vector) {
    static constexpr const char* NAMES[32] = {
        "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
        "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
        "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
        "#PF page fault", "reserved", "#MF x87 error", "#AC alignment check", "#MC machine check",
        "#XM SIMD exception", "#VE virtualization exception", "#CP control protection"};
    if (vector < 32 && NAMES[vector] != nullptr) return NAMES[vector];
    return "vector " + std::to_string(vector);
}

const Device* HypercallServer::device(std::uint32_t index) const {
    return index < devices_.size() ? &devices_[index] : nullptr;
}

Outcome<HypercallServer::Next> HypercallServer::serve() {
    std::uint8_t* slot = mem_.range(INSTAR_GPA_MAILBOX, sizeof(instar_hypercall));
    instar_hypercall req{};
    // SAFETY: copy out of guest memory first (the mailbox page is inside RAM by the memory map);
    // every check below then looks at this private copy, never at memory the guest can change.
    std::memcpy(&req, slot, sizeof(req));
#ifdef INSTAR_VMM_TEST_HOOKS
    if (test_hooks::on_hypercall) test_hooks::on_hypercall(req.nr);
#endif
    if (req.nr == INSTAR_HC_WRITE || req.nr == INSTAR_HC_WRITE_SEGMENTS || req.nr == INSTAR_HC_SET_LENGTH ||
        req.nr == INSTAR_HC_DISCARD || req.nr == INSTAR_HC_DISCARD_RANGES) {
        static std::uint64_t changes = 0;
        if (kill_at_write() != 0 && ++changes == kill_at_write())
            std::_Exit(137); // no destructor, no cleanup: what a kill -9 leaves behind
    }
    instar_hypercall reply = req;
    reply.ret = 0;
    Outcome<Next> next = Next::Resume;
    if (!pending_reads_.empty()) { // a caller that did not run them: they come first, in order
        auto done = run_pending_reads();
        if (!done) return done.error();
    }
    if (write_behind_ != nullptr) {
        // Write-behind: a deferrable write to an output goes to the writer thread (which first
        // finishes the one before), small writes queue behind it; every call that could see queued
        // bytes (or an output's length) first waits for them, and learns of a failed write.
        const Device* d = device(req.device);
        bool settle = true;
        switch (req.nr) {
        case INSTAR_HC_WRITE:
            // A deferrable write is written from guest RAM; any other small write to an output (a
            // format writer's metadata after its data) is copied behind the queued ones, in order,
            // instead of waiting for them (enqueue_copy: only while something is queued).
            if (d != nullptr && d->output && req.len > 0 && req.offset <= d->size && req.len <= d->size - req.offset) {
                const bool deferrable = (req.arg0 & INSTAR_WRITE_DEFERRABLE) != 0;
                const std::uint8_t* buf = mem_.range(req.gpa, req.len);
                // SAFETY: [buf, buf + len) lies inside the guest mapping (checked by range()), which
                // outlives the writer thread; the guest keeps a deferrable write's bytes until its
                // next settling call.
                if (buf != nullptr && (deferrable ? write_behind_->enqueue(*d, buf, req.len, req.offset)
                                                  : !d->direct && write_behind_->enqueue_copy(*d, buf, req.len, req.offset))) {
                    result_.bytes_written += req.len;
                    ++result_.device_changes;
                    if (deferrable) reply.out_flags = INSTAR_WRITE_DEFERRED;
                    std::memcpy(slot, &reply, sizeof(reply)); // done, as far as the guest can tell
                    return Next::Resume;
                }
            }
            break; // not queueable (or the queue has failed): settled and served below
        case INSTAR_HC_READ: settle = d != nullptr && d->writable && !read_misses_queue(*d, req); break;
        case INSTAR_HC_SETTLE_READS:
        case INSTAR_HC_DEVICE_INFO:
        case INSTAR_HC_PROGRESS:
        case INSTAR_HC_COMPRESS:
        case INSTAR_HC_RECORD:
        case INSTAR_HC_RECORDS:
        case INSTAR_HC_LOG:
        case INSTAR_HC_GROW_MEMORY:
        case INSTAR_HC_FAULT: settle = false; break;
        default: break;
        }
        if (settle) {
            auto failed = settle_writes();
            if (!failed) return failed.error();
            if (failed.value()) {
                if (req.nr == INSTAR_HC_EXIT) {
                    if (static_cast<std::uint32_t>(req.arg0) == 0)
                        return SandboxError{ErrorKind::HostIo, result_.host_error, {}}; // never committed
                } else {
                    reply.ret = -INSTAR_EIO; // the output is lost: nothing more is done for the guest
                    std::memcpy(slot, &reply, sizeof(reply));
                    return Next::Resume;
                }
            }
        }
    }
    switch (req.nr) {
    case INSTAR_HC_READ: next = read_or_write(req, reply, false); break;
    case INSTAR_HC_SETTLE_READS: // the kept reads ran before this call was served (process sandbox)
        if (reader_ != nullptr) {
            switch (reader_->settle(*bounce_)) {
            case Transfer::Done: break;
            case Transfer::Failed: pending_read_error_ = -INSTAR_EIO; break;
            case Transfer::TimedOut:
                return SandboxError{ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped (during a "
                                                             "device read)", {}};
            }
        }
        reply.ret = pending_read_error_;
        pending_read_error_ = 0;
        break;
    case INSTAR_HC_WRITE: next = read_or_write(req, reply, true); break;
    case INSTAR_HC_WRITE_SEGMENTS: next = write_segments(req, reply); break;
    case INSTAR_HC_FLUSH: {
        const Device* d = device(req.device);
        if (d == nullptr) return bad_request("flush of device " + std::to_string(req.device) + ", which does not exist");
        if (d->writable && !d->flush_ignored && ::fdatasync(d->fd) != 0) reply.ret = -INSTAR_EIO;
        break;
    }
    case INSTAR_HC_DEVICE_INFO: {
        const Device* d = device(req.device);
        if (d == nullptr) return bad_request("info on device " + std::to_string(req.device) + ", which does not exist");
        reply.out_size = d->size;
        reply.out_flags = device_flags(*d);
        break;
    }
    case INSTAR_HC_SET_LENGTH: next = set_length(req, reply); break;
    case INSTAR_HC_ADD_FILE: next = add_file(req, reply); break;
    case INSTAR_HC_NEXT_IMAGE: next = next_image(req, reply); break;
    case INSTAR_HC_ALLOCATION: next = allocation(req, reply); break;
    case INSTAR_HC_DISCARD: next = discard(req, reply); break;
    case INSTAR_HC_DISCARD_RANGES: next = discard_ranges(req, reply); break;
    case INSTAR_HC_PROGRESS: next = progress(req); break;
    case INSTAR_HC_COMPRESS: next = compress(req); break;
    case INSTAR_HC_RECORD: next = record(req); break;
    case INSTAR_HC_RECORDS: next = records(req); break;
    case INSTAR_HC_LOG: next = log(req); break;
    case INSTAR_HC_GROW_MEMORY: grow_memory(req, reply); break;
    case INSTAR_HC_EXIT:
        result_.exit_status = static_cast<std::int32_t>(static_cast<std::uint32_t>(req.arg0));
        return Next::Exit;
    case INSTAR_HC_FAULT: {
        std::string msg = "guest CPU exception " + cpu_exception_name(req.arg0) + " at rip " + hex(req.arg1);
        if (req.arg0 == 14) msg += " (address " + hex(req.arg3) + ", error code " + hex(req.arg2) + ")";
        return SandboxError{ErrorKind::GuestFault, msg, {}};
    }
    default: return bad_request("unknown hypercall " + std::to_string(req.nr));
    }
    if (!next) return next;
    std::memcpy(slot, &reply, sizeof(reply));
    return next;
}

Outcome<HypercallServer::Next> HypercallServer::read_or_write(const instar_hypercall& req,
                                                              instar_hypercall& reply, bool write) {
    const char* verb = write ? "write" : "read";
    const Device* d = device(req.device);
    if (d == nullptr) {
        return bad_request(std::string(verb) + " on device " + std::to_string(req.device) + ", which does not exist (" +
                           std::to_string(devices_.size()) + " attached)");
    }
    if (write && !d->writable) return bad_request("write to read-only device " + std::to_string(req.device));
    if (req.offset > d->size || req.len > d->size - req.offset) {
        return bad_request(std::string(verb) + " past the end of device " + std::to_string(req.device) + ": offset " +
                           std::to_string(req.offset) + " + length " + std::to_string(req.len) + " > size " +
                           std::to_string(d->size));
    }
    std::uint8_t* buf = mem_.range(req.gpa, req.len);
    if (buf == nullptr) {
        return bad_request(std::string(verb) + " buffer " + hex(req.gpa) + " + " + std::to_string(req.len) +
                           " lies outside guest RAM (" + std::to_string(mem_.size()) + " bytes)");
    }
    if (!write) mem_.prepare_host_write(req.gpa, req.len);
    if (!write && (req.arg0 & INSTAR_READ_AHEAD) != 0 && !d->writable && req.len > 0 && take_read_ahead(*d, req, buf)) {
        reply.out_flags = INSTAR_READ_PENDING;
        return Next::Resume;
    }
    // SAFETY: [buf, buf + len) was checked to lie inside the guest mapping just above.
    auto done = transfer(*d, buf, req.len, req.offset, write);
    if (!done) return done.error();
    if (!done.value()) reply.ret = -INSTAR_EIO;
    return Next::Resume;
}

// One READ's or WRITE's bytes between `d` and guest memory at `buf` (checked by the caller); false
// when the host file failed (a failed write's reason is kept for the report).
Outcome<bool> HypercallServer::transfer(const Device& d, std::uint8_t* buf, std::uint64_t len, std::uint64_t offset,
                                        bool write) {
    if (write) ++result_.device_changes;
    switch (device_transfer(d, buf, len, offset, write, watchdog_, *bounce_)) {
    case Transfer::Done:
        if (write) {
            result_.bytes_written += len;
            writeback_.wrote(d, len);
        }
        return true;
    case Transfer::Failed:
        if (write) host_failure(std::string("could not write: ") + std::strerror(errno), errno);
        return false;
    case Transfer::TimedOut: break;
    }
    return SandboxError{ErrorKind::GuestTimeout, std::string("guest ran past its time budget and was stopped (during a "
                                                             "device ") + (write ? "write" : "read") + ")", {}};
}

// A table call's entries (WRITE_SEGMENTS, DISCARD_RANGES), copied out of guest memory before any
// check, so the guest cannot change an entry between its check and its use. The errors name the
// call, its entries and the table ("segmented write of 65 segments (1 to 64)", "segment table 0x...").
template <class Entry, std::size_t MAX>
std::optional<SandboxError> HypercallServer::copy_table(const instar_hypercall& req, Entry (&out)[MAX], const char* call,
                                                        const char* entries, const char* table_name) {
    if (req.len == 0 || req.len > MAX) {
        return bad_request(std::string(call) + " of " + std::to_string(req.len) + " " + entries + " (1 to " +
                           std::to_string(MAX) + ")");
    }
    const std::uint8_t* table = mem_.range(req.gpa, req.len * sizeof(Entry));
    if (table == nullptr) {
        return bad_request(std::string(table_name) + " " + hex(req.gpa) + " lies outside guest RAM (" +
                           std::to_string(mem_.size()) + " bytes)");
    }
    // SAFETY: [table, table + len * sizeof(Entry)) lies inside guest RAM (checked above).
    std::memcpy(out, table, req.len * sizeof(Entry));
    return std::nullopt;
}

// Every segment is checked before any is written: a table with one bad segment ends the guest with
// nothing written, as one bad WRITE would. Written in table order; the first failure stops the rest
// (ret -INSTAR_EIO, as a failed WRITE; the guest then fails its run).
Outcome<HypercallServer::Next> HypercallServer::write_segments(const instar_hypercall& req, instar_hypercall& reply) {
    const Device* d = device(req.device);
    if (d == nullptr) return bad_request("segmented write on device " + std::to_string(req.device) + ", which does not exist");
    if (!d->writable) return bad_request("segmented write to read-only device " + std::to_string(req.device));
    instar_write_segment segs[INSTAR_MAX_WRITE_SEGMENTS];
    if (auto bad = copy_table(req, segs, "segmented write", "segments", "segment table")) return *bad;
    std::uint8_t* bufs[INSTAR_MAX_WRITE_SEGMENTS];
    for (std::uint64_t i = 0; i < req.len; ++i) {
        const instar_write_segment& s = segs[i];
        if (s.offset > d->size || s.len > d->size - s.offset) {
            return bad_request("segmented write past the end of device " + std::to_string(req.device) + ": segment " +
                               std::to_string(i) + ", offset " + std::to_string(s.offset) + " + length " +
                               std::to_string(s.len) + " > size " + std::to_string(d->size));
        }
        bufs[i] = mem_.range(s.gpa, s.len);
        if (bufs[i] == nullptr) {
            return bad_request("segmented write buffer " + hex(s.gpa) + " + " + std::to_string(s.len) +
                               " lies outside guest RAM (" + std::to_string(mem_.size()) + " bytes)");
        }
    }
    for (std::uint64_t i = 0; i < req.len; ++i) {
        if (segs[i].len == 0) continue;
        // SAFETY: [bufs[i], bufs[i] + len) was checked to lie inside the guest mapping above.
        auto done = transfer(*d, bufs[i], segs[i].len, segs[i].offset, true);
        if (!done) return done.error();
        if (!done.value()) {
            reply.ret = -INSTAR_EIO;
            break;
        }
    }
    return Next::Resume;
}

// SAFETY: [buf, buf + req.len) was checked against guest RAM by the caller; the guest mapping
// outlives the run, and the guest promised to leave these bytes alone until it settles (if it does
// not, it only garbles its own copy).
bool HypercallServer::take_read_ahead(const Device& d, const instar_hypercall& req, std::uint8_t* buf) {
    if (read_ahead_ && pending_reads_.size() < MAX_PENDING_READS) {
        pending_reads_.push_back({req.device, buf, req.len, req.offset}); // made after the answer
        return true;
    }
    return reader_ != nullptr && reader_->submit(d, buf, req.len, req.offset); // made by the reader thread
}

Outcome<bool> HypercallServer::run_pending_reads() {
    bool failed = false;
    for (const PendingRead& r : pending_reads_) {
        // SAFETY: each was checked against its device and guest RAM when it was kept.
        switch (device_transfer(*device(r.device), r.buf, r.len, r.offset, false, watchdog_, *bounce_)) {
        case Transfer::Done: break;
        case Transfer::Failed:
            failed = true;
            if (pending_read_error_ == 0) pending_read_error_ = -INSTAR_EIO;
            break;
        case Transfer::TimedOut:
            pending_reads_.clear();
            return SandboxError{ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped (during a device "
                                                         "read)", {}};
        }
    }
    pending_reads_.clear();
    return failed;
}

Outcome<bool> HypercallServer::settle_writes() {
    const auto failed = write_behind_->drain();
    if (!failed) return false;
    if (failed->kind == Transfer::TimedOut)
        return SandboxError{ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped (during a device "
                                                     "write)", {}};
    host_failure(std::string("could not write: ") + std::strerror(failed->err), failed->err);
    return true;
}

void HypercallServer::host_failure(std::string message, int err) {
    if (!result_.host_error.empty()) return;
    result_.host_error = std::move(message);
    result_.host_errno = err;
}

namespace {

// fstat(2) itself: glibc's fstat() is newfstatat(fd, "", AT_EMPTY_PATH), a call that takes a path
// (an absolute one would reach any file's metadata), which the vCPU thread's seccomp filter refuses.
int file_stat(int fd, struct stat& st) {
    // SAFETY: x86-64's kernel struct stat is glibc's struct stat.
    return static_cast<int>(::syscall(SYS_fstat, fd, &st));
}

// The run of data or hole at `offset` (< end) of fd, cut at `end` (the file's length).
struct FileRun {
    std::uint64_t length;
    std::uint32_t flags; // INSTAR_ALLOCATION_DATA or 0
};
FileRun file_run(int fd, std::uint64_t offset, std::uint64_t end) {
    const off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0 || static_cast<std::uint64_t>(data) > offset)
        return {(data < 0 ? end : std::min<std::uint64_t>(static_cast<std::uint64_t>(data), end)) - offset, 0};
    const off_t hole = ::lseek(fd, static_cast<off_t>(offset), SEEK_HOLE);
    return {(hole < 0 ? end : std::min<std::uint64_t>(static_cast<std::uint64_t>(hole), end)) - offset,
            INSTAR_ALLOCATION_DATA};
}

// Writes zeros over [from, to) of d, in pieces so the watchdog is checked between them.
Transfer fill_zeros(const Device& d, std::uint64_t from, std::uint64_t to, const Watchdog& watchdog,
                    BounceBuffer& bounce) {
    static const std::vector<std::uint8_t> zeros(TRANSFER_PIECE > (8u << 20) ? (8u << 20) : TRANSFER_PIECE);
    while (from < to) {
        const std::uint64_t n = to - from < zeros.size() ? to - from : zeros.size();
        const Transfer t = device_transfer(d, const_cast<std::uint8_t*>(zeros.data()), n, from, true, watchdog, bounce);
        if (t != Transfer::Done) return t;
        from += n;
    }
    return Transfer::Done;
}

} // namespace

// A read of a written device need not wait for the queued writes when none of them overlaps it and
// the file already reaches past its end (a queued write further on would otherwise have made a hole
// there that reads as zeros). O_DIRECT devices always wait (their writes rewrite whole blocks).
bool HypercallServer::read_misses_queue(const Device& d, const instar_hypercall& req) {
    if (d.direct || req.len == 0 || req.offset > UINT64_MAX - req.len) return false;
    if (!write_behind_->busy()) return true; // nothing queued: nothing to wait for (no fstat)
    struct stat st{};
    if (file_stat(d.fd, st) != 0 || st.st_size < 0 || req.offset + req.len > static_cast<std::uint64_t>(st.st_size))
        return false;
    return !write_behind_->overlaps(d.fd, req.offset, req.len);
}

Outcome<HypercallServer::Next> HypercallServer::set_length(const instar_hypercall& req, instar_hypercall& reply) {
    const Device* d = device(req.device);
    if (d == nullptr || !d->output)
        return bad_request("set length of device " + std::to_string(req.device) + ", which is not an output");
    if (req.arg0 > d->size)
        return bad_request("set length " + std::to_string(req.arg0) + " beyond the output limit " + std::to_string(d->size));
    if (req.arg1 != INSTAR_FILL_HOLE && req.arg1 != INSTAR_FILL_FALLOC && req.arg1 != INSTAR_FILL_ZEROS)
        return bad_request("set length with unknown fill mode " + std::to_string(req.arg1));
    struct stat st{};
    if (file_stat(d->fd, st) != 0) {
        host_failure(std::string("could not resize: ") + std::strerror(errno), errno);
        reply.ret = -INSTAR_EIO;
        return Next::Resume;
    }
    const auto old = static_cast<std::uint64_t>(st.st_size);
    ++result_.device_changes;
    if (req.arg0 > old && req.arg1 == INSTAR_FILL_FALLOC) {
        // As qemu's file protocol: fallocate extends the file itself, with no truncate first (which
        // would make the file system map the range twice).
        int err = 0;
        if (::fallocate(d->fd, 0, static_cast<off_t>(old), static_cast<off_t>(req.arg0 - old)) != 0) err = errno;
        if (err == EOPNOTSUPP) {
            // posix_fallocate's answer where the file system has no fallocate: write the blocks.
            // (Not posix_fallocate itself: its emulation stats the file through newfstatat, a call
            // that takes a path, which the vCPU thread's seccomp filter does not allow.)
            switch (fill_zeros(*d, old, req.arg0, watchdog_, *bounce_)) {
            case Transfer::Done: err = 0; break;
            case Transfer::Failed: err = errno; break;
            case Transfer::TimedOut:
                return SandboxError{ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped (while "
                                                             "the host preallocated)", {}};
            }
        }
        if (err != 0) {
            host_failure(std::string("could not preallocate: ") + std::strerror(err), err);
            reply.ret = -INSTAR_EIO;
        }
        return Next::Resume;
    }
    if (::ftruncate(d->fd, static_cast<off_t>(req.arg0)) != 0) {
        host_failure(std::string("could not resize: ") + std::strerror(errno), errno);
        reply.ret = -INSTAR_EIO;
        return Next::Resume;
    }
    if (req.arg0 <= old || req.arg1 == INSTAR_FILL_HOLE) return Next::Resume;
    switch (fill_zeros(*d, old, req.arg0, watchdog_, *bounce_)) {
    case Transfer::Done: break;
    case Transfer::Failed:
        host_failure(std::string("could not write zeros: ") + std::strerror(errno), errno);
        reply.ret = -INSTAR_EIO;
        break;
    case Transfer::TimedOut:
        return SandboxError{ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped (while the host "
                                                     "wrote preallocated zeros)", {}};
    }
    return Next::Resume;
}

// File-system allocation is host metadata (SEEK_DATA/SEEK_HOLE), not image content: the guest may
// use it to skip holes in a raw image, as qemu's file protocol does.
Outcome<HypercallServer::Next> HypercallServer::allocation(const instar_hypercall& req, instar_hypercall& reply) {
    const Device* d = device(req.device);
    if (d == nullptr) return bad_request("allocation of device " + std::to_string(req.device) + ", which does not exist");
    struct stat st{};
    if (file_stat(d->fd, st) != 0) {
        reply.ret = -INSTAR_EIO;
        return Next::Resume;
    }
    // An output's addressable size is its limit, not its length: answer within the file.
    const std::uint64_t end = std::min<std::uint64_t>(d->size, static_cast<std::uint64_t>(st.st_size));
    if (req.offset >= end) return bad_request("allocation at " + std::to_string(req.offset) + ", past the end of device " +
                                              std::to_string(req.device));
    const FileRun first = file_run(d->fd, req.offset, end);
    reply.out_flags = first.flags;
    reply.out_size = first.length;
    if ((req.arg0 & INSTAR_ALLOCATION_RUNS) == 0 || d->writable) return Next::Resume; // a written file's runs change
    const std::uint64_t n = std::min<std::uint64_t>(req.len / sizeof(instar_allocation_run), INSTAR_MAX_ALLOCATION_RUNS);
    std::uint8_t* buf = mem_.range(req.gpa, n * sizeof(instar_allocation_run));
    if (buf == nullptr) {
        return bad_request("allocation runs buffer " + hex(req.gpa) + " + " + std::to_string(req.len) +
                           " lies outside guest RAM (" + std::to_string(mem_.size()) + " bytes)");
    }
    std::uint64_t written = 0;
    FileRun run = first;
    for (std::uint64_t at = req.offset; written < n;) {
        const instar_allocation_run out{run.length, run.flags};
        // SAFETY: [buf, buf + n * 16) was checked to lie inside the guest mapping just above.
        std::memcpy(buf + written * sizeof out, &out, sizeof out);
        ++written;
        at += run.length;
        if (at >= end) break;
        run = file_run(d->fd, at, end);
    }
    reply.ret = static_cast<std::int64_t>(written);
    return Next::Resume;
}

// Makes a writable device's range read as zeros: a punched hole where the file system can, else
// written zeros (qemu's file protocol does the same for write_zeroes with MAY_UNMAP).
Outcome<HypercallServer::Next> HypercallServer::discard(const instar_hypercall& req, instar_hypercall& reply) {
    const Device* d = device(req.device);
    if (d == nullptr || !d->writable) return bad_request("discard on device " + std::to_string(req.device) +
                                                         ", which is not writable");
    if (req.offset > d->size || req.len > d->size - req.offset)
        return bad_request("discard past the end of device " + std::to_string(req.device));
    if (req.len == 0) return Next::Resume;
    ++result_.device_changes;
    const auto length = file_length(*d);
    auto done = length ? discard_range(*d, req.offset, req.len, *length) : Outcome<bool>(false);
    if (!done) return done.error();
    if (!done.value()) reply.ret = -INSTAR_EIO;
    return Next::Resume;
}

// Every range is checked before any is discarded: a table with one bad range ends the guest with
// nothing changed, as one bad DISCARD would. The first failure stops the rest (ret -INSTAR_EIO).
Outcome<HypercallServer::Next> HypercallServer::discard_ranges(const instar_hypercall& req, instar_hypercall& reply) {
    const Device* d = device(req.device);
    if (d == nullptr || !d->writable) return bad_request("discard of ranges on device " + std::to_string(req.device) +
                                                         ", which is not writable");
    instar_range ranges[INSTAR_MAX_DISCARD_RANGES];
    if (auto bad = copy_table(req, ranges, "discard", "ranges", "discard range table")) return *bad;
    for (std::uint64_t i = 0; i < req.len; ++i) {
        if (ranges[i].offset > d->size || ranges[i].len > d->size - ranges[i].offset)
            return bad_request("discard past the end of device " + std::to_string(req.device) + ": range " +
                               std::to_string(i));
    }
    if (req.len != 0) ++result_.device_changes;
    const auto length = file_length(*d); // punching (KEEP_SIZE) and zero-filling inside keep it
    if (!length) {
        reply.ret = -INSTAR_EIO;
        return Next::Resume;
    }
    for (std::uint64_t i = 0; i < req.len; ++i) {
        auto done = discard_range(*d, ranges[i].offset, ranges[i].len, *length);
        if (!done) return done.error();
        if (!done.value()) {
            reply.ret = -INSTAR_EIO;
            break;
        }
    }
    return Next::Resume;
}

// The length of `d`'s file now (a block device, e.g. convert -n into an LV, has no st_size: its length
// is the device's size); nothing when the host cannot tell.
std::optional<std::uint64_t> HypercallServer::file_length(const Device& d) {
    struct stat st{};
    if (file_stat(d.fd, st) != 0) return std::nullopt;
    return S_ISBLK(st.st_mode) ? d.size : static_cast<std::uint64_t>(st.st_size);
}

// [offset, offset + len) of writable device `d` (checked by the caller; its file `length` long) made
// to read as zeros; false when the host failed (the failure is kept for the report).
Outcome<bool> HypercallServer::discard_range(const Device& d, std::uint64_t offset, std::uint64_t len,
                                             std::uint64_t length) {
    if (len == 0) return true;
    const std::uint64_t end = offset + len;
    // Past the file's end reads as zeros already (a later write extends it with a hole).
    const std::uint64_t inside = std::min(end, length);
    if (offset < inside &&
        ::fallocate(d.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(inside - offset)) != 0) {
        switch (fill_zeros(d, offset, inside, watchdog_, *bounce_)) {
        case Transfer::Done: break;
        case Transfer::Failed:
            host_failure(std::string("could not write zeros: ") + std::strerror(errno), errno);
            return false;
        case Transfer::TimedOut:
            return SandboxError{ErrorKind::GuestTimeout, "guest ran past its time budget and was stopped (while the "
                                                         "host wrote zeros)", {}};
        }
    }
    return true;
}

void HypercallServer::grow_memory(const instar_hypercall& req, instar_hypercall& reply) {
    // Asked for more than the RAM there is: all of it up to the limit, at once (one memslot, and a
    // guest that outgrew its start is likely to go on growing).
    if (req.arg0 > mem_.size() && (!grow_ || req.arg0 > mem_.limit() || !grow_(mem_.limit()))) {
        reply.ret = -INSTAR_ENOMEM;
        return;
    }
    reply.out_size = mem_.size();
}

Outcome<HypercallServer::Next> HypercallServer::progress(const instar_hypercall& req) {
    if (req.arg0 > req.arg1) return bad_request("progress " + std::to_string(req.arg0) + " of " + std::to_string(req.arg1));
    if (progress_) progress_(req.arg0, req.arg1);
    return Next::Resume;
}

// Compresses a batch of guest buffers as opaque bytes. Everything is checked before any thread
// touches guest memory: the job table and every source and destination lie inside guest RAM, and no
// destination overlaps another destination, a source or the job table (so the threads never race
// on a byte). Results go back into the job table.
Outcome<HypercallServer::Next> HypercallServer::compress(const instar_hypercall& req) {
    if (req.arg0 != INSTAR_COMPRESS_QCOW2_ZLIB && req.arg0 != INSTAR_COMPRESS_QCOW2_ZSTD &&
        req.arg0 != INSTAR_COMPRESS_ZLIB)
        return bad_request("compress with unknown kind " + std::to_string(req.arg0));
    if (req.len > INSTAR_MAX_COMPRESS_JOBS)
        return bad_request("compress " + std::to_string(req.len) + " jobs at once (at most " +
                           std::to_string(INSTAR_MAX_COMPRESS_JOBS) + ")");
    const std::size_t count = static_cast<std::size_t>(req.len);
    if (count == 0) return Next::Resume;
    const std::uint64_t table_bytes = count * sizeof(instar_compress_job);
    std::uint8_t* table = mem_.range(req.gpa, table_bytes);
    if (table == nullptr) return bad_request("compress job table " + hex(req.gpa) + " lies outside guest RAM");
    std::vector<instar_compress_job> jobs(count);
    // SAFETY: [table, table + table_bytes) is inside guest RAM (checked above); copied out first.
    std::memcpy(jobs.data(), table, table_bytes);
    struct Span {
        std::uint64_t lo, hi;
    };
    std::vector<Span> dsts;
    std::vector<Span> srcs;
    std::uint64_t total = 0;
    for (const auto& j : jobs) {
        if (j.src_len > INSTAR_MAX_COMPRESS_BYTES || j.dst_cap > INSTAR_MAX_COMPRESS_BYTES + INSTAR_MAX_COMPRESS_BYTES)
            return bad_request("compress job of " + std::to_string(j.src_len) + " bytes into " +
                               std::to_string(j.dst_cap) + " (at most " + std::to_string(INSTAR_MAX_COMPRESS_BYTES) +
                               " in)");
        total += j.src_len;
        if (total > INSTAR_MAX_COMPRESS_BATCH_BYTES) return bad_request("compress batch larger than the limit");
        if (mem_.range(j.src_gpa, j.src_len) == nullptr || mem_.range(j.dst_gpa, j.dst_cap) == nullptr)
            return bad_request("compress buffer lies outside guest RAM");
        srcs.push_back({j.src_gpa, j.src_gpa + j.src_len});
        dsts.push_back({j.dst_gpa, j.dst_gpa + j.dst_cap});
    }
    auto overlap = [](const Span& a, const Span& b) { return a.lo < b.hi && b.lo < a.hi; };
    const Span table_span{req.gpa, req.gpa + table_bytes};
    for (std::size_t i = 0; i < count; ++i) {
        if (overlap(dsts[i], table_span)) return bad_request("compress destination overlaps the job table");
        for (std::size_t k = 0; k < count; ++k) {
            if (overlap(dsts[i], srcs[k])) return bad_request("compress destination overlaps a source");
            if (k != i && overlap(dsts[i], dsts[k])) return bad_request("compress destinations overlap");
        }
    }
    const auto kind = static_cast<std::uint32_t>(req.arg0);
    std::vector<std::int64_t> status(count);
    std::vector<std::uint64_t> out_len(count);
    const std::function<void(std::size_t)> job = [&](std::size_t i) {
        const auto& j = jobs[i];
        std::size_t out = 0;
        // SAFETY: both ranges were checked above to lie inside guest RAM; destinations are disjoint
        // from each other and from every source, and the guest is stopped during the call.
        status[i] = compress_one(kind, mem_.range(j.src_gpa, j.src_len), static_cast<std::size_t>(j.src_len),
                                 mem_.range(j.dst_gpa, j.dst_cap), static_cast<std::size_t>(j.dst_cap), &out);
        out_len[i] = status[i] == 0 ? out : 0;
    };
    if (compress_pool_ != nullptr)
        compress_pool_->run(count, job);
    else
        for (std::size_t i = 0; i < count; ++i) job(i);
    for (std::size_t i = 0; i < count; ++i) {
        jobs[i].out_len = out_len[i];
        jobs[i].status = status[i];
    }
    std::memcpy(table, jobs.data(), table_bytes);
    return Next::Resume;
}

Outcome<HypercallServer::Next> HypercallServer::add_file(const instar_hypercall& req, instar_hypercall& reply) {
    if (outputs_ == nullptr) return bad_request("add a file, which this operation does not allow");
    if (added_files_ >= INSTAR_MAX_ADDED_FILES)
        return bad_request("add more than " + std::to_string(INSTAR_MAX_ADDED_FILES) + " files");
    if (req.len == 0 || req.len > NAME_MAX) return bad_request("add a file with a name of " + std::to_string(req.len) + " bytes");
    const std::uint8_t* src = mem_.range(req.gpa, req.len);
    if (src == nullptr) return bad_request("file name buffer " + hex(req.gpa) + " lies outside guest RAM");
    // SAFETY: [src, src + len) is inside guest RAM (checked above); copied out before any check.
    const std::string name(reinterpret_cast<const char*>(src), req.len);
    if (name == "." || name == ".." || name.find('/') != std::string::npos || name.find('\0') != std::string::npos)
        return bad_request("add a file whose name is not a plain file name");
    std::string error;
    std::optional<Device> dev = outputs_->add(name, error);
    if (!dev) {
        host_failure(error, 0);
        reply.ret = -INSTAR_EIO;
        return Next::Resume;
    }
    ++added_files_;
    devices_.push_back(*dev);
    reply.ret = static_cast<std::int64_t>(devices_.size() - 1);
    return Next::Resume;
}

Outcome<HypercallServer::Next> HypercallServer::next_image(const instar_hypercall& req, instar_hypercall& reply) {
    if (outputs_ == nullptr) return bad_request("open a backing file, which this operation does not allow");
    if (req.arg0 >= INSTAR_INFO_FIRST_MAX_IMAGES) return bad_request("open the backing file of image " + std::to_string(req.arg0));
    // Each backing file counts as an added file: the chain's own depth bound (the host's) is lower.
    reply.ret = -INSTAR_EIO;
    if (added_files_ >= INSTAR_MAX_ADDED_FILES) return Next::Resume;
    std::optional<NextImage> next = outputs_->next_image(result_.records, static_cast<std::uint32_t>(req.arg0));
    if (!next) return Next::Resume;
    next->device.writable = false;
    next->device.output = false;
    ++added_files_;
    devices_.push_back(next->device);
    reply.ret = static_cast<std::int64_t>(devices_.size() - 1);
    reply.out_flags = next->module_flags;
    reply.out_size = next->allocated;
    return Next::Resume;
}

Outcome<HypercallServer::Next> HypercallServer::record(const instar_hypercall& req) {
    return record_one(req.arg0, req.gpa, req.len);
}

Outcome<HypercallServer::Next> HypercallServer::record_one(std::uint64_t type, std::uint64_t gpa, std::uint64_t len) {
    if (len > INSTAR_MAX_RECORD_SIZE) {
        return SandboxError{ErrorKind::GuestBadRecord,
                            "guest sent an oversized record (" + std::to_string(len) + " bytes, limit " +
                                std::to_string(INSTAR_MAX_RECORD_SIZE) + "); its output was discarded",
                            {}};
    }
    if (type == 0 || type > UINT32_MAX) {
        return SandboxError{ErrorKind::GuestBadRecord, "guest sent a record of invalid type " + std::to_string(type), {}};
    }
    if (result_.records.size() >= INSTAR_MAX_RECORDS || len > INSTAR_MAX_RECORD_BYTES - record_bytes_) {
        return SandboxError{ErrorKind::GuestBadRecord, "guest sent more records than the limits allow; output discarded", {}};
    }
    const std::uint8_t* src = mem_.range(gpa, len);
    if (src == nullptr) return bad_request("record buffer " + hex(gpa) + " lies outside guest RAM");
    // SAFETY: [src, src + len) is inside guest RAM (checked above); copied out before any use.
    result_.records.push_back(Record{static_cast<std::uint32_t>(type), {src, src + len}});
    record_bytes_ += len;
    return Next::Resume;
}

// Each entry is taken as one RECORD, in table order; the first one that breaks a rule ends the guest
// as that RECORD would have (its output is discarded either way).
Outcome<HypercallServer::Next> HypercallServer::records(const instar_hypercall& req) {
    instar_record_entry entries[INSTAR_MAX_RECORD_BATCH];
    if (auto bad = copy_table(req, entries, "record batch", "records", "record table")) return *bad;
    for (std::uint64_t i = 0; i < req.len; ++i) {
        auto next = record_one(entries[i].type, entries[i].gpa, entries[i].len);
        if (!next) return next;
    }
    return Next::Resume;
}

Outcome<HypercallServer::Next> HypercallServer::log(const instar_hypercall& req) {
    if (req.len > INSTAR_MAX_LOG_LINE) {
        return SandboxError{ErrorKind::GuestBadRecord,
                            "guest sent a log line of " + std::to_string(req.len) + " bytes (limit " +
                                std::to_string(INSTAR_MAX_LOG_LINE) + ")",
                            {}};
    }
    const std::uint8_t* src = mem_.range(req.gpa, req.len);
    if (src == nullptr) return bad_request("log buffer " + hex(req.gpa) + " lies outside guest RAM");
    if (result_.log.size() >= INSTAR_MAX_LOG_LINES) {
        ++result_.dropped_log_lines;
        return Next::Resume;
    }
    // SAFETY: [src, src + len) is inside guest RAM. Copied out first, then sanitised in the copy: the
    // process sandbox's guest may still be running while the host serves (it need not wait for the
    // answer), so each byte must be read exactly once. Non-printable bytes never reach a terminal.
    std::string line(reinterpret_cast<const char*>(src), req.len);
    for (char& c : line) c = (c >= 0x20 && c < 0x7f) ? c : '?';
    result_.log.push_back(std::move(line));
    return Next::Resume;
}

} // namespace instar::vmm
