// INSTAR_OP_CHECK: runs module 0's check on device 0 and sends what it found as INSTAR_REC_CHECK
// records: the stderr lines in chunks, then one result (docs/check.md).
#include "runtime.h"

#include <new>

namespace instar::guest {
namespace {

// Bytes of stderr text per record: well under INSTAR_MAX_RECORD_SIZE.
constexpr size_t CHECK_TEXT_RECORD_BYTES = 32u << 10;
// A read-only check's reads of this length or more skip the read windows (below, in check_op).
constexpr uint64_t CHECK_DIRECT_READ = 64u << 10;
// And its windows start at this length: its first short reads (header, L1 table) lie near the
// file's start; a 256 KiB first fetch made the host read and populate 192 KiB more for them
// (A/B, 1 GiB half-allocated image, 64 KiB clusters: ~0.3-0.7 ms of ~15 ms).
constexpr uint64_t CHECK_FIRST_WINDOW = 64u << 10;
class RecordSink final : public CheckSink {
public:
    explicit RecordSink(uint8_t* buf) : buf_(buf) {}
    void line(const char* text, size_t len) override {
        if (failed_ != Status::Ok)
            return;
        if (sent_ + used_ + len > CHECK_MAX_TEXT_BYTES || len > CHECK_TEXT_RECORD_BYTES) {
            truncated_ = true;
            return;
        }
        if (used_ + len > CHECK_TEXT_RECORD_BYTES)
            flush();
        __builtin_memcpy(buf_ + sizeof(instar_check_record_head) + used_, text, len);
        used_ += len;
    }
    Status flush() {
        if (used_ == 0 || failed_ != Status::Ok)
            return failed_;
        instar_check_record_head head{INSTAR_CHECK_TEXT, 0};
        __builtin_memcpy(buf_, &head, sizeof head);
        failed_ = services().send_record(INSTAR_REC_CHECK, buf_, sizeof head + used_);
        sent_ += used_;
        used_ = 0;
        return failed_;
    }
    bool truncated() const { return truncated_; }

private:
    uint8_t* buf_;
    size_t used_ = 0;
    size_t sent_ = 0;
    bool truncated_ = false;
    Status failed_ = Status::Ok;
};

// With -r, the host adds the image once more, as an output (writes may extend it): qemu's repair
// allocates new refcount structures past the end of the file (rebuild_refcount_structure) and grows
// it for a refcount block outside it. The module sees one device whose size is the file's current
// length: reads and writes go to the output, and a write past the end extends it.
class GrowingImage final : public BlockDevice {
public:
    GrowingImage(BlockDevice& out, uint64_t length) : out_(out), len_(length) {}
    uint64_t size() const override { return len_; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > len_ || len > len_ - offset)
            return Status::IoError;
        return out_.read(offset, buf, len);
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        const Status st = out_.write(offset, buf, len);
        if (st == Status::Ok && offset + len > len_) // out_ checked offset + len against its limit
            len_ = offset + len;
        return st;
    }
    // Past the end already reads as zeros: only the part inside the file is discarded (qemu
    // discards a freed cluster the file ends inside of, e.g. a table shorter than a cluster).
    Status discard(uint64_t offset, uint64_t len) override {
        if (offset >= len_ || len == 0)
            return Status::Ok;
        return out_.discard(offset, len < len_ - offset ? len : len_ - offset);
    }
    BlockDevice& output() { return out_; }
    // CheckRequest::set_length: the file cut or grown (with a hole) to `length`.
    Status set_length(uint64_t length) {
        const uint32_t index = device_index(out_);
        if (index == UINT32_MAX)
            return Status::Invalid;
        if (hc_set_length(index, length, INSTAR_FILL_HOLE) != 0)
            return Status::IoError;
        len_ = length;
        return Status::Ok;
    }

private:
    BlockDevice& out_;
    uint64_t len_;
};

constinit GrowingImage* growing = nullptr;

Status flush_device(BlockDevice& dev) {
    const uint32_t index = device_index(growing != nullptr && &dev == growing ? growing->output() : dev);
    if (index == UINT32_MAX)
        return Status::Invalid;
    return hc_flush(index) == 0 ? Status::Ok : Status::IoError;
}

Status set_image_length(BlockDevice& dev, uint64_t length) {
    if (growing == nullptr || &dev != growing)
        return Status::Invalid;
    return growing->set_length(length);
}

} // namespace

Status check_op(const uint8_t* arg, uint32_t arg_len) {
    instar_check_arg a{};
    if (arg_len != sizeof a)
        return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    const ModuleOps* ops = module(0);
    BlockDevice* image = device(0);
    if (ops == nullptr || image == nullptr || (a.fix & ~(INSTAR_CHECK_FIX_LEAKS | INSTAR_CHECK_FIX_ERRORS)) != 0 ||
        a.file_count >= device_count() || a.file_count > INSTAR_MAX_DEVICES - 1)
        return Status::Invalid;
    // -r: device file_count + 1, when present, is the image again as a growable output.
    if (a.fix && device_count() == a.file_count + 2 && device(a.file_count + 1) != nullptr) {
        void* mem = arena().allocate(sizeof(GrowingImage), alignof(GrowingImage));
        if (mem == nullptr)
            return Status::NoMemory;
        growing = new (mem) GrowingImage(*device(a.file_count + 1), image->size());
        image = growing;
    }
    // In the arena, not on the stack: a vmdk may name up to INSTAR_MAX_ADDED_FILES extents.
    auto** files = static_cast<BlockDevice**>(
        arena().allocate((a.file_count == 0 ? 1 : a.file_count) * sizeof(BlockDevice*), alignof(BlockDevice*)));
    if (files == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < a.file_count; ++i)
        files[i] = device(i + 1);
    auto* buf = static_cast<uint8_t*>(arena().allocate(sizeof(instar_check_record_head) + CHECK_TEXT_RECORD_BYTES, 16));
    if (buf == nullptr)
        return Status::NoMemory;
    RecordSink sink(buf);
    CheckResult r;
    if (ops->check == nullptr) {
        r.error = -CHECK_ENOTSUP;
    } else {
        // A read-only check walks tables spread through the file (at 512-byte clusters, 37461 reads
        // of a 1 GiB image, an exit each): short reads moving forward come from 2 MiB windows
        // (devices.cpp). Tables of CHECK_DIRECT_READ or more (a 64 KiB cluster's L2 table or
        // refcount block) are few and far apart: each is read straight into its buffer, which the
        // host makes present before it reads, where a window's copy would first-touch every page of
        // it in the guest (a fault each, ~10 us on a nested host). -r reads through a writable
        // device, which windows never serve.
        if (!a.fix)
            allow_read_windows(CHECK_DIRECT_READ - 1, CHECK_FIRST_WINDOW);
        else
            allow_discard_gathering(); // a repair frees each leaked cluster with a discard of its own
        CheckRequest req{image, files, a.file_count, &arena(), &codecs(), a.fix, a.qemu_version, flush_device};
        if (growing != nullptr)
            req.set_length = set_image_length;
        const Status st = ops->check(req, sink, &r);
        if (st != Status::Ok) {
            sink.flush();
            return st;
        }
    }
    if (const Status st = sink.flush(); st != Status::Ok)
        return st;
    struct {
        instar_check_record_head head;
        instar_check_result result;
    } rec{};
    rec.head.kind = INSTAR_CHECK_RESULT;
    rec.result = instar_check_result{r.corruptions, r.leaks, r.check_errors, r.corruptions_fixed, r.leaks_fixed,
                                     r.image_end_offset, r.total_clusters, r.allocated_clusters,
                                     r.fragmented_clusters, r.compressed_clusters, r.error,
                                     sink.truncated() ? INSTAR_CHECK_TEXT_TRUNCATED : 0u};
    return services().send_record(INSTAR_REC_CHECK, &rec, sizeof rec);
}

} // namespace instar::guest
