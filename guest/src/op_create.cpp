// INSTAR_OP_CREATE: unpacks the host's request and gives module 0's create() a CreateTarget whose
// files are host devices: device 0 the new image, device 1 the backing file when flagged, then the
// external data file when flagged, and the files the module adds (INSTAR_HC_ADD_FILE) after them.
#include "create_target.h"
#include "image_table.h"

#include <instar/guest/arena_new.h>

namespace instar::guest {
namespace {

// Splits the NUL-terminated strings after the header; false when they do not add up exactly.
bool split_strings(const char* p, uint32_t len, const char** out, uint32_t want) {
    if (len == 0 || p[len - 1] != 0) return false;
    uint32_t n = 0;
    for (uint32_t i = 0; i < len; ++i) {
        if (n == want) return false; // trailing strings nobody asked for
        out[n++] = p + i;
        while (p[i] != 0) ++i;
    }
    return n == want;
}

} // namespace

Status HypercallTarget::set_length(BlockDevice& file, uint64_t length, Prealloc mode) {
    const uint32_t index = device_index(file);
    uint32_t fill = 0;
    switch (mode) {
    case Prealloc::Off: fill = INSTAR_FILL_HOLE; break;
    case Prealloc::Falloc: fill = INSTAR_FILL_FALLOC; break;
    case Prealloc::Full: fill = INSTAR_FILL_ZEROS; break;
    default: return Status::Invalid;
    }
    if (index == UINT32_MAX) return Status::Invalid;
    return hc_set_length(index, length, fill) == 0 ? Status::Ok : Status::IoError;
}

Status HypercallTarget::add_file(const char* name, BlockDevice** out) {
    size_t len = 0;
    while (name[len] != 0 && len <= CREATE_MAX_FILE_NAME) ++len;
    if (len == 0 || len > CREATE_MAX_FILE_NAME) return Status::Invalid;
    const int64_t index = hc_add_file(name, len);
    if (index < 0) return Status::IoError;
    BlockDevice* dev = attach_device(static_cast<uint32_t>(index));
    if (dev == nullptr) return Status::NoMemory;
    *out = dev;
    return Status::Ok;
}

void HypercallTarget::reason(const char* text, size_t len) {
    hc_record(INSTAR_REC_REASON, text, len < CREATE_MAX_REASON ? len : CREATE_MAX_REASON);
}

bool unpack_create(const uint8_t* data, uint32_t len, UnpackedCreate& out) {
    instar_create_arg& a = out.arg;
    if (len < sizeof a) return false;
    __builtin_memcpy(&a, data, sizeof a);
    if (a.strings_len != len - sizeof a || a.option_count > MAX_CREATE_OPTIONS) return false;
    const uint32_t want = 3 + 2 * a.option_count;
    if (!split_strings(reinterpret_cast<const char*>(data + sizeof a), a.strings_len, out.strings, want))
        return false;
    for (uint32_t i = 0; i < a.option_count; ++i) out.options[i] = {out.strings[3 + 2 * i], out.strings[4 + 2 * i]};
    CreateRequest& req = out.req;
    req.size = a.size;
    req.options = out.options;
    req.option_count = a.option_count;
    req.file_name = out.strings[0];
    req.backing_file = (a.flags & INSTAR_CREATE_HAS_BACKING) ? out.strings[1] : nullptr;
    req.backing_fmt = (a.flags & INSTAR_CREATE_HAS_BACKING_FMT) ? out.strings[2] : nullptr;
    req.backing = nullptr;
    req.backing_size = a.backing_size;
    req.unix_time = a.unix_time;
    req.random = a.random;
    req.qemu_version = a.qemu_version;
    req.allocator = &arena();
    req.codecs = &codecs();
    return true;
}

Status create_op(const uint8_t* arg, uint32_t arg_len) {
    // The unpacked request holds ~3 KiB of pointers: keep it off the small exception-free stack's way.
    auto* u = static_cast<UnpackedCreate*>(arena().allocate(sizeof(UnpackedCreate), alignof(UnpackedCreate)));
    if (u == nullptr) return Status::NoMemory;
    *u = UnpackedCreate{};
    if (!unpack_create(arg, arg_len, *u)) return Status::Invalid;
    const ModuleOps* ops = module(0);
    BlockDevice* image = device(0);
    BlockDevice* backing = (u->arg.flags & INSTAR_CREATE_BACKING_DEVICE) ? device(1) : nullptr;
    const uint32_t data_index = (u->arg.flags & INSTAR_CREATE_BACKING_DEVICE) ? 2 : 1;
    BlockDevice* data_file = (u->arg.flags & INSTAR_CREATE_DATA_FILE_DEVICE) ? device(data_index) : nullptr;
    // The image's secret: the device after the others, one instar_secret_table entry for image 0.
    Secrets secrets;
    if (u->arg.flags & INSTAR_CREATE_SECRET_DEVICE) {
        const uint32_t secret_index = data_index + ((u->arg.flags & INSTAR_CREATE_DATA_FILE_DEVICE) ? 1 : 0);
        if (const Status st = read_secrets(secret_index + 1, 1, &secrets); st != Status::Ok) return st;
        if (secrets.bytes != nullptr) {
            u->req.secret = secrets.bytes[0];
            u->req.secret_len = secrets.lengths[0];
        }
    }
    if (ops == nullptr || image == nullptr || ((u->arg.flags & INSTAR_CREATE_BACKING_DEVICE) && backing == nullptr) ||
        ((u->arg.flags & INSTAR_CREATE_DATA_FILE_DEVICE) && data_file == nullptr))
        return Status::Invalid;
    HypercallTarget target(0);
    if (ops->size < sizeof(ModuleOps) || ops->create == nullptr)
        return create_fail(target, Status::Unsupported, "this format's plugin cannot create images");
    u->req.backing = backing;
    u->req.data_file = data_file;
    u->req.codecs = nullptr; // create writes no data
    const Status st = ops->create(u->req, target);
    if (st != Status::Ok) return st;
    const instar_create_record rec{target.unit()};
    return hc_record(INSTAR_REC_CREATE, &rec, sizeof rec) == 0 ? Status::Ok : Status::IoError;
}

Status existing_files(uint32_t image_device, const uint8_t* lengths, uint32_t count, BlockDevice*** out) {
    *out = nullptr;
    if (count == 0)
        return Status::Ok;
    auto* files = static_cast<BlockDevice**>(arena().allocate(count * sizeof(BlockDevice*), alignof(BlockDevice*)));
    if (files == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < count; ++i) {
        const uint64_t index = uint64_t{image_device} + 1 + i;
        BlockDevice* file = index > UINT32_MAX ? nullptr : device(static_cast<uint32_t>(index));
        if (file == nullptr)
            return Status::Invalid;
        uint64_t length = 0;
        __builtin_memcpy(&length, lengths + 8 * uint64_t{i}, 8);
        files[i] = arena_new<ExistingTarget>(arena(), *file, length);
        if (files[i] == nullptr)
            return Status::NoMemory;
    }
    *out = files;
    return Status::Ok;
}

} // namespace instar::guest
