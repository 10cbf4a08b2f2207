// Typed hypercall wrappers. One vCPU and no interrupts: the mailbox needs no locking.
#include "runtime.h"

#include <instar_guest/hypercall.h>

namespace instar::guest {

namespace {
// Guest virtual == guest physical (identity map), so a pointer is the address the host wants.
uint64_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// Record batching (INSTAR_HC_RECORDS, round 42): records go to the host only for its result (and,
// in a chained inspection, for the NEXT_IMAGE call that follows them), so a short one is copied
// into a batch instead of costing an exit, and the batch is sent before any other call (prepare())
// and the exit: the host sees the same records in the same order relative to every other call. A
// quick edit sends three in a row (its inspection, its end, STARTED): 2 exits fewer. The host's
// checks are the same per record, and a record it refuses ends the guest either way.
constexpr uint64_t RECORD_BATCH_BYTES = 2048; // longer records are sent alone
struct RecordBatch {
    uint32_t count;
    uint64_t used;
    instar_record_entry entries[INSTAR_MAX_RECORD_BATCH];
    alignas(16) uint8_t bytes[RECORD_BATCH_BYTES];
};
constinit RecordBatch batch{}; // all zero: .bss

void send_records() {
    if (batch.count == 0) return;
    instar_hypercall* mb = mailbox();
    *mb = instar_hypercall{};
    mb->nr = INSTAR_HC_RECORDS;
    mb->gpa = addr(batch.entries);
    mb->len = batch.count;
    batch.count = 0;
    batch.used = 0;
    (void)hypercall_issue(mb); // a refused batch ends the guest: the host never answers it
}

instar_hypercall* prepare(uint32_t nr) {
    send_records(); // the records before this call come first
    instar_hypercall* mb = mailbox();
    *mb = instar_hypercall{};
    mb->nr = nr;
    return mb;
}
// Whether [gpa, gpa + len) lies inside the window [lo, hi) (hi 0: no window): the write-behind and
// read-ahead windows both ask it.
bool inside(uint64_t lo, uint64_t hi, uint64_t gpa, uint64_t len) {
    return hi != 0 && gpa >= lo && gpa < hi && len <= hi - gpa;
}

// Write-behind (INSTAR_WRITE_DEFERRABLE): writes from inside [window_lo, window_hi) may finish after
// their call returns; `in_flight` is the window of the last such write while no settling call has
// been made since (0: none), on device `in_flight_device`.
constinit uint64_t window_lo = 0;
constinit uint64_t window_hi = 0;
constinit uint64_t in_flight = 0;
constinit uint32_t in_flight_device = 0;
constinit bool host_defers = false; // a write has come back INSTAR_WRITE_DEFERRED

// Read-ahead (INSTAR_READ_AHEAD): reads into [ahead_lo, ahead_hi) may complete after their call
// returns; `reads_pending` while one the host answered PENDING has not been settled.
constinit uint64_t ahead_lo = 0;
constinit uint64_t ahead_hi = 0;
constinit bool reads_pending = false;
constinit bool host_reads_ahead_seen = false;
} // namespace

bool host_reads_ahead() { return host_reads_ahead_seen; }

void read_ahead_into(const void* buf, uint64_t len) {
    ahead_lo = addr(buf);
    ahead_hi = buf == nullptr || len == 0 ? 0 : ahead_lo + len;
}

int64_t settle_reads() {
    if (!reads_pending) return 0;
    reads_pending = false;
    return hypercall_issue(prepare(INSTAR_HC_SETTLE_READS));
}

bool host_defers_writes() { return host_defers; }

void defer_writes_from(const void* buf, uint64_t len) {
    window_lo = addr(buf);
    window_hi = buf == nullptr || len == 0 ? 0 : window_lo + len;
}

void settle_writes_from(const void* buf) {
    if (in_flight == 0 || in_flight != addr(buf)) return;
    // A zero-length write settles (guest_abi.h) and moves nothing.
    instar_hypercall* mb = prepare(INSTAR_HC_WRITE);
    mb->device = in_flight_device;
    (void)hypercall_issue(mb);
    in_flight = 0;
}

int64_t hc_read(uint32_t device, uint64_t offset, void* buf, uint64_t len) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    instar_hypercall* mb = prepare(INSTAR_HC_READ);
    mb->device = device;
    mb->offset = offset;
    mb->gpa = addr(buf);
    mb->len = len;
    const bool ahead = inside(ahead_lo, ahead_hi, mb->gpa, len);
    if (ahead) mb->arg0 = INSTAR_READ_AHEAD;
    const int64_t ret = hypercall_issue(mb);
    if (ahead && ret == 0 && (mb->out_flags & INSTAR_READ_PENDING) != 0) {
        reads_pending = true;
        host_reads_ahead_seen = true;
    } else if (ret == 0) {
        note_own_read(device, offset, buf, len); // the bytes are in buf now
    }
    return ret;
}

int64_t hc_write(uint32_t device, uint64_t offset, const void* buf, uint64_t len) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    note_device_change(device, true);
    instar_hypercall* mb = prepare(INSTAR_HC_WRITE);
    mb->device = device;
    mb->offset = offset;
    mb->gpa = addr(buf);
    mb->len = len;
    const bool defer = inside(window_lo, window_hi, mb->gpa, len);
    if (defer) mb->arg0 = INSTAR_WRITE_DEFERRABLE;
    const int64_t ret = hypercall_issue(mb);
    // A deferred write ends the promise for the one before (the host waited for it) and is in flight
    // itself; a zero-length write settles; any other write may be queued behind the one in flight
    // without settling it (guest_abi.h, since ABI 5), so it leaves `in_flight` as it was.
    const bool deferred = defer && ret == 0 && (mb->out_flags & INSTAR_WRITE_DEFERRED) != 0;
    host_defers = host_defers || deferred;
    note_own_write(device, offset, buf, len, ret == 0 && !deferred);
    if (deferred) {
        in_flight = window_lo;
        in_flight_device = device;
    } else if (len == 0) {
        in_flight = 0;
    }
    return ret;
}

int64_t hc_write_segments(uint32_t device, const instar_write_segment* segments, uint64_t count) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    note_device_change(device);
    instar_hypercall* mb = prepare(INSTAR_HC_WRITE_SEGMENTS);
    mb->device = device;
    mb->gpa = addr(segments);
    mb->len = count;
    return hypercall_issue(mb); // never deferred: the host settles its queue first (guest_abi.h)
}

int64_t hc_flush(uint32_t device) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    in_flight = 0; // a flush settles
    instar_hypercall* mb = prepare(INSTAR_HC_FLUSH);
    mb->device = device;
    return hypercall_issue(mb);
}

int64_t hc_device_info(uint32_t device, uint64_t* size, uint64_t* flags) {
    instar_hypercall* mb = prepare(INSTAR_HC_DEVICE_INFO);
    mb->device = device;
    int64_t ret = hypercall_issue(mb);
    *size = mb->out_size;
    *flags = mb->out_flags;
    return ret;
}

int64_t hc_record(uint32_t type, const void* data, uint64_t len) {
    if (batch.count < INSTAR_MAX_RECORD_BATCH && len <= RECORD_BATCH_BYTES - batch.used) {
        uint8_t* at = batch.bytes + batch.used;
        __builtin_memcpy(at, data, len);
        batch.entries[batch.count++] = instar_record_entry{type, static_cast<uint32_t>(len), addr(at)};
        const uint64_t end = batch.used + len;
        batch.used = end + 7 < RECORD_BATCH_BYTES ? (end + 7) & ~uint64_t{7} : RECORD_BATCH_BYTES;
        return 0;
    }
    instar_hypercall* mb = prepare(INSTAR_HC_RECORD);
    mb->arg0 = type;
    mb->gpa = addr(data);
    mb->len = len;
    return hypercall_issue(mb);
}

int64_t hc_set_length(uint32_t device, uint64_t length, uint32_t fill) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    note_device_change(device);
    in_flight = 0; // settles
    instar_hypercall* mb = prepare(INSTAR_HC_SET_LENGTH);
    mb->device = device;
    mb->arg0 = length;
    mb->arg1 = fill;
    const int64_t ret = hypercall_issue(mb);
    note_file_length(device, ret == 0 ? length : 0);
    return ret;
}

int64_t hc_add_file(const char* name, uint64_t len) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    in_flight = 0; // settles
    instar_hypercall* mb = prepare(INSTAR_HC_ADD_FILE);
    mb->gpa = addr(name);
    mb->len = len;
    return hypercall_issue(mb);
}

int64_t hc_next_image(uint32_t image, uint32_t* module_flags, uint64_t* allocated) {
    if (flush_gathered() != 0) return -INSTAR_EIO;
    in_flight = 0; // settles
    instar_hypercall* mb = prepare(INSTAR_HC_NEXT_IMAGE);
    mb->arg0 = image;
    const int64_t ret = hypercall_issue(mb);
    *module_flags = static_cast<uint32_t>(mb->out_flags);
    *allocated = mb->out_size;
    return ret;
}

int64_t hc_allocation(uint32_t device, uint64_t offset, bool* data, uint64_t* length,
                      instar_allocation_run* runs, uint64_t max_runs) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    in_flight = 0; // settles
    instar_hypercall* mb = prepare(INSTAR_HC_ALLOCATION);
    mb->device = device;
    mb->offset = offset;
    if (runs != nullptr && max_runs != 0) {
        mb->arg0 = INSTAR_ALLOCATION_RUNS;
        mb->gpa = addr(runs);
        mb->len = max_runs * sizeof(instar_allocation_run);
    }
    const int64_t ret = hypercall_issue(mb);
    *data = (mb->out_flags & INSTAR_ALLOCATION_DATA) != 0;
    *length = mb->out_size;
    return ret;
}

int64_t hc_discard(uint32_t device, uint64_t offset, uint64_t len) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    note_device_change(device);
    in_flight = 0; // settles
    instar_hypercall* mb = prepare(INSTAR_HC_DISCARD);
    mb->device = device;
    mb->offset = offset;
    mb->len = len;
    return hypercall_issue(mb);
}

int64_t hc_discard_ranges(uint32_t device, const instar_range* ranges, uint64_t count) {
    if (flush_gathered() != 0) return -INSTAR_EIO; // the writes before come first
    note_device_change(device);
    in_flight = 0; // settles
    instar_hypercall* mb = prepare(INSTAR_HC_DISCARD_RANGES);
    mb->device = device;
    mb->gpa = addr(ranges);
    mb->len = count;
    return hypercall_issue(mb);
}

int64_t hc_grow_memory(uint64_t size, uint64_t* ram) {
    instar_hypercall* mb = prepare(INSTAR_HC_GROW_MEMORY);
    mb->arg0 = size;
    const int64_t ret = hypercall_issue(mb);
    *ram = mb->out_size;
    return ret;
}

int64_t hc_compress(uint32_t kind, instar_compress_job* jobs, uint64_t count) {
    instar_hypercall* mb = prepare(INSTAR_HC_COMPRESS);
    mb->arg0 = kind;
    mb->gpa = addr(jobs);
    mb->len = count;
    return hypercall_issue(mb);
}

void hc_progress(uint64_t done, uint64_t total) {
    instar_hypercall* mb = prepare(INSTAR_HC_PROGRESS);
    mb->arg0 = done;
    mb->arg1 = total;
    hypercall_issue(mb);
}

void hc_log(const char* text, uint64_t len) {
    instar_hypercall* mb = prepare(INSTAR_HC_LOG);
    mb->gpa = addr(text);
    mb->len = len < INSTAR_MAX_LOG_LINE ? len : INSTAR_MAX_LOG_LINE;
    hypercall_issue(mb);
}

void log_str(const char* text) {
    uint64_t n = 0;
    while (text[n] != '\0') ++n;
    hc_log(text, n);
}

void hc_exit(int32_t status) {
    // Gathered writes are part of the output: a run whose last writes failed did not succeed.
    if (flush_gathered() != 0 && status == static_cast<int32_t>(Status::Ok)) status = static_cast<int32_t>(Status::IoError);
    instar_hypercall* mb = prepare(INSTAR_HC_EXIT);
    mb->arg0 = static_cast<uint32_t>(status);
    for (;;) {
        hypercall_issue(mb); // the host never resumes a guest after EXIT
    }
}

} // namespace instar::guest
