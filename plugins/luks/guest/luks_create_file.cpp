// The luks format's own file (qemu: block/crypto.c's create): create (qemu-img create -f luks) and
// create_writer (convert -O luks), a LUKS1 header by default and a LUKS2 one for instar's
// luks-version=2. Only the luks module links this (the qcow2 and qcow modules make LUKS1 headers
// inside their own images through luks_create_header).
#include "luks_create.h"

#include <instar/guest/format_util.h>

namespace instar::luks {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::ImageWriter;
using guest::Status;

namespace {

// block/crypto.c's create: the luks file holds the header, then the payload (the disk) of
// `data_size` bytes.
class FileHeader final : public LuksHeaderTarget {
public:
    FileHeader(const CreateRequest& req, CreateTarget& t, uint64_t data_size)
        : req_(req), t_(t), data_size_(data_size) {}
    Status init(uint64_t header_len) override {
        if (data_size_ > UINT64_MAX - header_len)
            return guest::create_fail(t_, Status::Invalid, "The image size is too large for file format 'luks'");
        guest::Prealloc mode = guest::Prealloc::Off;
        if (!guest::create_option_prealloc(req_, &mode) || mode == guest::Prealloc::Metadata)
            return guest::create_fail(t_, Status::Invalid, "Unsupported preallocation mode");
        return t_.set_length(t_.image(), header_len + data_size_, mode);
    }
    Status write(uint64_t offset, const void* buf, size_t len) override { return t_.image().write(offset, buf, len); }

private:
    const CreateRequest& req_;
    CreateTarget& t_;
    uint64_t data_size_;
};

// luks-version (instar's extension option): 1, qemu's LUKS1 (the default), or 2.
Status luks_version(const CreateRequest& req, CreateTarget& t, bool* luks2) {
    const char* v = guest::create_option(req, "luks-version");
    *luks2 = v != nullptr && v[0] == '2' && v[1] == 0;
    if (v == nullptr || *luks2 || (v[0] == '1' && v[1] == 0))
        return Status::Ok;
    char text[guest::CREATE_MAX_REASON] = "Parameter 'luks-version' does not accept value '";
    guest::append_text(text, sizeof text, v);
    guest::append_text(text, sizeof text, "'");
    return guest::create_fail(t, Status::Invalid, text);
}

// The luks image: header, key slot 0 holding the master key for the passphrase, the file grown to
// payload + size. Sets up `*payload` for writing; `*size` is the disk's size (a LUKS2 volume holds
// whole 512-byte sectors: the size is rounded up to one, as qemu's block layer rounds a disk).
Status make_image(const CreateRequest& req, CreateTarget& t, LuksPayload* payload, uint64_t* size) {
    *size = req.size;
    bool luks2 = false;
    if (const Status st = luks_version(req, t, &luks2); st != Status::Ok) return st;
    if (!luks2) {
        FileHeader file(req, t, req.size);
        return luks_create_header(req, t, "", file, &payload->cipher, &payload->offset);
    }
    if (req.size > UINT64_MAX - (LUKS_SECTOR_SIZE - 1))
        return guest::create_fail(t, Status::Invalid, "The image size is too large for file format 'luks'");
    *size = (req.size + LUKS_SECTOR_SIZE - 1) / LUKS_SECTOR_SIZE * LUKS_SECTOR_SIZE;
    payload->whole_units = true;
    FileHeader file(req, t, *size);
    return luks2_create_header(req, t, file, &payload->cipher, &payload->offset);
}

} // namespace

Status create(const CreateRequest& req, CreateTarget& target) {
    if (req.allocator == nullptr) return Status::Invalid;
    auto* payload = guest::arena_new<LuksPayload>(*req.allocator);
    if (payload == nullptr) return Status::NoMemory;
    uint64_t size = 0;
    const Status st = make_image(req, target, payload, &size);
    delete_wiped(*req.allocator, payload);
    return st;
}

Status create_writer(const CreateRequest& req, CreateTarget& target, ImageWriter** out) {
    if (req.allocator == nullptr || out == nullptr) return Status::Invalid;
    auto* payload = guest::arena_new<LuksPayload>(*req.allocator);
    if (payload == nullptr) return Status::NoMemory;
    uint64_t size = 0;
    Status st = make_image(req, target, payload, &size);
    if (st == Status::Ok) st = luks_new_writer(target.image(), *req.allocator, size, *payload, out);
    delete_wiped(*req.allocator, payload);
    return st;
}

} // namespace instar::luks
