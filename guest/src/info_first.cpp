// Info first (info_first.h): the inspection shared by INSTAR_OP_EDIT's INSTAR_EDIT_INFO_FIRST and
// INSTAR_OP_INFO_FIRST, and the latter's operation.
#include "info_first.h"

#include <instar/guest/info_sink.h>

namespace instar::guest {
namespace {

// Info's encoder, watched for what decides whether the edit may run here.
class WatchedInfo final : public InfoSink {
public:
    explicit WatchedInfo(InfoEncoder& to) : to_(to) {}
    void format(const char* name) override { to_.format(name); }
    void virtual_size(uint64_t bytes) override {
        size_ = bytes;
        have_size_ = true;
        to_.virtual_size(bytes);
    }
    void cluster_size(uint64_t bytes) override {
        cluster_size_ = bytes;
        to_.cluster_size(bytes);
    }
    void encrypted(bool yes) override {
        encrypted_ = encrypted_ || yes;
        to_.encrypted(yes);
    }
    void dirty(bool yes) override { to_.dirty(yes); }
    void backing_format(const char* name, size_t len) override { to_.backing_format(name, len); }
    void snapshot(const SnapshotInfo& s) override { to_.snapshot(s); }
    void file_reference(FileRole role, const char* name, size_t len) override {
        references_ = true;
        to_.file_reference(role, name, len);
    }
    void specific_type(const char* type) override { to_.specific_type(type); }
    void begin_object(const char* key) override { to_.begin_object(key); }
    void end_object() override { to_.end_object(); }
    void begin_list(const char* key) override { to_.begin_list(key); }
    void end_list() override { to_.end_list(); }
    void put_string(const char* key, const char* value, size_t len) override { to_.put_string(key, value, len); }
    void put_uint(const char* key, uint64_t value) override { to_.put_uint(key, value); }
    void put_int(const char* key, int64_t value) override { to_.put_int(key, value); }
    void put_bool(const char* key, bool value) override { to_.put_bool(key, value); }
    void reason(const char* text, size_t len) override { to_.reason(text, len); }

    // The command may run in this start: nothing else to open, no key to ask for, a size to check with.
    bool lone() const { return !references_ && !encrypted_ && have_size_; }
    uint64_t size() const { return size_; }
    uint64_t cluster_size() const { return cluster_size_; }

private:
    InfoEncoder& to_;
    uint64_t size_ = 0;
    uint64_t cluster_size_ = 0;
    bool have_size_ = false;
    bool references_ = false;
    bool encrypted_ = false;
};

// The image as info sees it: read-only, exactly the file's length (an output device's size() is
// the room it may grow to, not the file's length).
class InfoView final : public BlockDevice {
public:
    InfoView(BlockDevice& dev, uint64_t length) : dev_(dev), length_(length) {}
    uint64_t size() const override { return length_; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (offset > length_ || len > length_ - offset)
            return Status::IoError;
        return dev_.read(offset, buf, len);
    }
    Status write(uint64_t, const void*, size_t) override { return Status::Invalid; }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        if (offset >= length_)
            return Status::IoError;
        const Status st = dev_.allocation(offset, data, length);
        if (st == Status::Ok && *length > length_ - offset)
            *length = length_ - offset;
        return st;
    }

private:
    BlockDevice& dev_;
    uint64_t length_;
};

// Bytes of info tokens per record, as INSTAR_OP_INFO sends them.
constexpr size_t INFO_FIRST_RECORD_BYTES = 32u << 10;

Status send_info_chunk(void*, const uint8_t* data, size_t len) {
    return services().send_record(INSTAR_REC_INFO, data, len);
}

// Set while an operation INSTAR_OP_INFO_FIRST started runs.
const InfoFirstResult* g_started = nullptr;

} // namespace

const InfoFirstResult* info_first_result() { return g_started; }

Status inspect_first(const ModuleOps& ops, BlockDevice& image, uint64_t length, bool force, uint32_t qemu_version,
                     InfoFirstResult* out) {
    if (ops.info == nullptr)
        return Status::Invalid;
    InfoView view(image, length);
    if (!force) {
        bool match = false;
        if (ops.probe == nullptr)
            return Status::Invalid;
        if (const Status st = ops.probe(view, &match); st != Status::Ok || !match)
            return st != Status::Ok ? st : Status::Unsupported;
    }
    auto* info_buf = static_cast<uint8_t*>(arena().allocate(INFO_FIRST_RECORD_BYTES, 16));
    if (info_buf == nullptr)
        return Status::NoMemory;
    InfoEncoder encoder(info_buf, INFO_FIRST_RECORD_BYTES, send_info_chunk, nullptr);
    WatchedInfo watched(encoder);
    BlockDevice* const no_files[1] = {nullptr};
    const InfoRequest info_req{&view, &arena(), no_files, 0, qemu_version};
    const Status st = ops.info(info_req, watched);
    const Status flushed = encoder.finish();
    if (st != Status::Ok || flushed != Status::Ok)
        return st != Status::Ok ? st : flushed;
    out->lone = watched.lone();
    out->size = watched.size();
    out->cluster_size = watched.cluster_size();
    return Status::Ok;
}

Status info_first_op(const uint8_t* arg, uint32_t arg_len) {
    instar_info_first_arg a{};
    if (arg_len < sizeof a)
        return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    const ModuleOps* ops = module(0);
    BlockDevice* image = device(0);
    // Only the read-only operations that open one image as info does (device 0, module 0) run here.
    if (ops == nullptr || image == nullptr || (a.flags & ~INSTAR_INFO_FORCE) != 0 || a.reserved != 0)
        return Status::Invalid;
    const uint8_t* op_arg = arg + sizeof a;
    const auto op_len = static_cast<uint32_t>(arg_len - sizeof a);
    if (a.op == INSTAR_OP_CHECK) { // a check that reads: no repair, no other file
        instar_check_arg c{};
        if (op_len != sizeof c)
            return Status::Invalid;
        __builtin_memcpy(&c, op_arg, sizeof c);
        if (c.fix != 0 || c.file_count != 0)
            return Status::Invalid;
    } else if (a.op == INSTAR_OP_MAP) { // a plan naming the image alone (op_map.cpp checks the rest)
        if (op_len != sizeof(instar_map_arg))
            return Status::Invalid;
    } else {
        return Status::Invalid;
    }
    InfoFirstResult first;
    if (const Status st = inspect_first(*ops, *image, image->size(), (a.flags & INSTAR_INFO_FORCE) != 0,
                                        a.qemu_version, &first);
        st != Status::Ok)
        return st;
    // Not started: Ok says the inspection itself succeeded (the host reuses it).
    if (!first.lone || first.size > a.max_virtual_size)
        return Status::Ok;
    static constexpr uint8_t NOTHING = 0;
    if (const Status sent = services().send_record(INSTAR_REC_STARTED, &NOTHING, 0); sent != Status::Ok)
        return sent;
    g_started = &first;
    const Status st = dispatch(a.op, op_arg, op_len);
    g_started = nullptr;
    return st;
}

} // namespace instar::guest
