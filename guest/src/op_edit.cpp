// INSTAR_OP_EDIT: runs module 0's edit on device 0 (and the files it names) and passes what the
// command prints or reports to the host as INSTAR_REC_EDIT records (docs/edit.md).
#include "create_target.h"
#include "image_table.h"
#include "info_first.h"
#include "runtime.h"

#include <instar/guest/edit_resize.h>
#include <instar/guest/info_sink.h>

namespace instar::guest {
namespace {

// Bytes of stdout or stderr text per record: well under INSTAR_MAX_RECORD_SIZE.
constexpr size_t EDIT_TEXT_RECORD_BYTES = 32u << 10;
// Text the guest sends at most (both streams): below INSTAR_MAX_RECORD_BYTES (16 MiB), so a command
// that prints a line per cluster cannot make the host refuse the whole run.
constexpr size_t EDIT_MAX_TEXT_BYTES = 12u << 20;

class HypercallEditHost final : public EditHost {
public:
    explicit HypercallEditHost(uint8_t* buf) : files_(0), buf_(buf) {}
    Status set_length(BlockDevice& file, uint64_t length, Prealloc mode) override {
        return files_.set_length(file, length, mode);
    }
    Status flush(BlockDevice& file) override {
        const uint32_t index = device_index(file);
        if (index == UINT32_MAX)
            return Status::Invalid;
        return hc_flush(index) == 0 ? Status::Ok : Status::IoError;
    }
    Status add_file(const char* name, BlockDevice** out) override { return files_.add_file(name, out); }
    Status out(const char* text, size_t len) override { return text_record(INSTAR_EDIT_STDOUT, text, len); }
    Status err(const char* text, size_t len) override { return text_record(INSTAR_EDIT_STDERR, text, len); }
    void reason(const char* text, size_t len) override {
        (void)send(INSTAR_EDIT_REASON, text, len < CREATE_MAX_REASON ? len : CREATE_MAX_REASON);
    }
    Status data(uint32_t kind, const void* bytes, size_t len) override {
        if (kind < INSTAR_EDIT_COMMAND_DATA || len > EDIT_MAX_DATA_RECORD)
            return Status::Invalid;
        return send(kind, bytes, len);
    }
    void progress(uint64_t done, uint64_t total) override { hc_progress(done, total); }
    Status started() {
        static constexpr uint8_t NONE = 0;
        return send(INSTAR_EDIT_STARTED, &NONE, 0);
    }

private:
    Status text_record(uint32_t kind, const char* text, size_t len) {
        if (text_sent_ + len > EDIT_MAX_TEXT_BYTES)
            return Status::TooLarge;
        for (size_t done = 0; done < len;) {
            const size_t n = len - done < EDIT_TEXT_RECORD_BYTES ? len - done : EDIT_TEXT_RECORD_BYTES;
            if (const Status st = send(kind, text + done, n); st != Status::Ok)
                return st;
            done += n;
        }
        text_sent_ += len;
        return Status::Ok;
    }
    Status send(uint32_t kind, const void* bytes, size_t len) {
        const instar_edit_record_head head{kind, 0};
        __builtin_memcpy(buf_, &head, sizeof head);
        __builtin_memcpy(buf_ + sizeof head, bytes, len);
        return services().send_record(INSTAR_REC_EDIT, buf_, sizeof head + len);
    }

    HypercallTarget files_; // set_length and add_file as create does them
    uint8_t* buf_;
    size_t text_sent_ = 0;
};

// Resolves RESIZE_FROM_INFO against the size info reported (and the backing file's, when the run
// inspected the chain: qemu zeroes the grown area an overlay's backing reaches into); false when
// qemu-img's checks fail (the host then prints their messages on its ordinary path).
bool resolve_resize(uint8_t* args, uint32_t len, uint64_t current) {
    ResizeArgs r{};
    if (len != sizeof r)
        return false;
    __builtin_memcpy(&r, args, sizeof r);
    if ((r.flags & RESIZE_FROM_INFO) == 0)
        return true;
    if (current > static_cast<uint64_t>(INT64_MAX) || (r.flags & RESIZE_HAS_BACKING) != 0)
        return false;
    const auto cur = static_cast<int64_t>(current);
    const int64_t total =
        resize_new_size(cur, r.new_size, (r.flags & RESIZE_GROW_BY) != 0, (r.flags & RESIZE_SHRINK_BY) != 0);
    if (resize_check(cur, total, r.prealloc != static_cast<uint32_t>(Prealloc::Off), (r.flags & RESIZE_SHRINK) != 0) !=
        ResizeCheck::Ok)
        return false;
    r.new_size = static_cast<uint64_t>(total);
    r.old_size = current;
    r.flags &= ~(RESIZE_FROM_INFO | RESIZE_GROW_BY | RESIZE_SHRINK_BY);
    if (backing_size_from_info(0, &r.backing_size))
        r.flags |= RESIZE_HAS_BACKING;
    __builtin_memcpy(args, &r, sizeof r);
    return true;
}

static_assert(EDIT_TEXT_RECORD_BYTES <= EDIT_MAX_DATA_RECORD && CREATE_MAX_REASON <= EDIT_MAX_DATA_RECORD);
static_assert(sizeof(instar_edit_record_head) + EDIT_MAX_DATA_RECORD <= INSTAR_MAX_RECORD_SIZE);

} // namespace

Status edit_op(const uint8_t* arg, uint32_t arg_len) {
    instar_edit_arg a{};
    if (arg_len < sizeof a)
        return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    const ModuleOps* ops = module(0);
    BlockDevice* image = device(0);
    // The plan: inline after the struct (INSTAR_EDIT_PLAN_INLINE), else a device.
    const bool inline_plan = (a.flags & INSTAR_EDIT_PLAN_INLINE) != 0;
    BlockDevice* plan = !inline_plan && a.plan_device < device_count() ? device(a.plan_device) : nullptr;
    const uint64_t lengths_bytes = (static_cast<uint64_t>(a.file_count) + 1) * sizeof(uint64_t);
    constexpr uint32_t KNOWN_FLAGS = INSTAR_EDIT_WRITE | INSTAR_EDIT_INFO_FIRST | INSTAR_EDIT_INFO_FORCE |
                                     INSTAR_EDIT_INFO_NO_KEY | INSTAR_EDIT_SECRETS | INSTAR_EDIT_INFO_CHAINS |
                                     INSTAR_EDIT_INFO_NO_BACKING | INSTAR_EDIT_PLAN_INLINE;
    if (ops == nullptr || image == nullptr || (a.flags & ~KNOWN_FLAGS) != 0 ||
        a.file_count > INSTAR_MAX_DEVICES || a.extra_count > INSTAR_MAX_DEVICES ||
        static_cast<uint64_t>(a.file_count) + a.extra_count + 1 > a.plan_device || a.args_len > EDIT_MAX_ARGS ||
        (inline_plan ? arg_len - sizeof a != lengths_bytes + a.args_len
                     : arg_len != sizeof a || plan == nullptr || plan->size() != lengths_bytes + a.args_len))
        return Status::Invalid;
    const uint32_t listed = a.file_count + a.extra_count;
    // In the arena, not on the stack: a vmdk may name up to INSTAR_MAX_ADDED_FILES extents.
    auto** devs = static_cast<BlockDevice**>(
        arena().allocate((listed == 0 ? 1 : listed) * sizeof(BlockDevice*), alignof(BlockDevice*)));
    auto* lengths = static_cast<uint64_t*>(arena().allocate(lengths_bytes, alignof(uint64_t)));
    auto* args = static_cast<uint8_t*>(arena().allocate(a.args_len == 0 ? 1 : a.args_len, 16));
    auto* buf = static_cast<uint8_t*>(arena().allocate(sizeof(instar_edit_record_head) + EDIT_MAX_DATA_RECORD, 16));
    if (devs == nullptr || lengths == nullptr || args == nullptr || buf == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < listed; ++i)
        devs[i] = device(i + 1);
    if (inline_plan) {
        __builtin_memcpy(lengths, arg + sizeof a, lengths_bytes);
        if (a.args_len != 0)
            __builtin_memcpy(args, arg + sizeof a + lengths_bytes, a.args_len);
    } else if (plan->read(0, lengths, lengths_bytes) != Status::Ok ||
               (a.args_len != 0 && plan->read(lengths_bytes, args, a.args_len) != Status::Ok)) {
        return Status::IoError;
    }
    // The files' lengths (the host's fstat) let the own block fetch whole blocks of them (devices.cpp).
    note_file_length(0, lengths[0]);
    for (uint32_t i = 0; i < a.file_count; ++i)
        note_file_length(i + 1, lengths[i + 1]);
    // The command's secrets: convert's secrets device, indexed by EDIT_SECRET_*, after the plan's
    // place (read_secrets takes the device's index + 1).
    Secrets secrets;
    if ((a.flags & INSTAR_EDIT_SECRETS) != 0)
        if (const Status st = read_secrets(a.plan_device + (inline_plan ? 1 : 2), EDIT_MAX_SECRETS, &secrets);
            st != Status::Ok)
            return st;
    HypercallEditHost host(buf);
    if (ops->edit == nullptr) {
        static constexpr char NONE[] = "This image format does not support this operation";
        host.reason(NONE, sizeof NONE - 1);
        return Status::Unsupported;
    }
    if ((a.flags & INSTAR_EDIT_INFO_FIRST) != 0) {
        // The image alone: a format that names other files takes the host's ordinary path.
        if (listed != 0)
            return Status::Invalid;
        InfoFirstResult first;
        if (const Status st =
                inspect_first(*ops, *image, lengths[0], (a.flags & INSTAR_EDIT_INFO_FORCE) != 0,
                              (a.flags & INSTAR_EDIT_INFO_NO_KEY) != 0, a.qemu_version, &first);
            st != Status::Ok)
            return st;
        // With INSTAR_EDIT_INFO_CHAINS the backing chain is opened as the command opens it (the
        // inspections each closed by INSTAR_REC_INFO_END); the edit itself changes the image alone.
        // INSTAR_EDIT_INFO_NO_BACKING: the command never opens the backing file, so naming one is
        // no reason to stop (bitmap).
        bool ends = first.lone || ((a.flags & INSTAR_EDIT_INFO_NO_BACKING) != 0 && first.backing_only);
        if ((a.flags & INSTAR_EDIT_INFO_CHAINS) != 0) {
            if (const Status st = end_inspection(); st != Status::Ok)
                return st;
            if (!ends)
                if (const Status st = inspect_backing_chain(0, a.qemu_version, first, &ends); st != Status::Ok)
                    return st;
        }
        // Not started: Ok says the inspection itself succeeded (the host reuses it). A dirty image
        // a command writes is repaired by the host first, a corrupt one refused there (qemu's
        // read-write open, dirty_repair.h).
        if (!ends || ((a.flags & INSTAR_EDIT_WRITE) != 0 && (first.dirty || first.corrupt)))
            return Status::Ok;
        if (static_cast<EditCommand>(a.command) == EditCommand::Resize && !resolve_resize(args, a.args_len, first.size))
            return Status::Ok;
        if (const Status sent = host.started(); sent != Status::Ok)
            return sent;
    }
    EditRequest req{static_cast<EditCommand>(a.command),
                          image,
                          lengths[0],
                          devs,
                          lengths + 1,
                          a.file_count,
                          devs + a.file_count,
                          a.extra_count,
                          (a.flags & INSTAR_EDIT_WRITE) != 0,
                          args,
                          a.args_len,
                          a.unix_time,
                          a.unix_nsec,
                          a.random,
                          a.qemu_version,
                          &arena(),
                          &codecs()};
    req.secrets = secrets.bytes;
    req.secret_lengths = secrets.lengths;
    return ops->edit(req, host);
}

} // namespace instar::guest
