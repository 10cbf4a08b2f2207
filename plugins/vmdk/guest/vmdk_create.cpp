// `create` for VMDK: qemu's vmdk_co_do_create sequence (options, backing CID, extents, descriptor).
#include "vmdk_create.h"

#include "vmdk_bytes.h"
#include "vmdk_create_descriptor.h"
#include "vmdk_create_extent.h"
#include "vmdk_create_options.h"
#include "vmdk_descriptor.h"
#include "vmdk_format.h"

#include <instar/guest_abi.h>

namespace instar::vmdk {

using guest::Status;

namespace {

// The scratch buffer: grain directory pieces, the backing's descriptor window, descriptor text.
constexpr size_t SCRATCH_BYTES = VMDK_CREATE_GD_CHUNK;
static_assert(SCRATCH_BYTES >= VMDK_DESC_WINDOW);

Status fail(guest::CreateTarget& t, Status st, const char* a, const char* b = nullptr, const char* c = nullptr) {
    char text[guest::CREATE_MAX_REASON];
    TextWriter w(text, sizeof text, nullptr, 0);
    const char* parts[] = {a, b, c};
    for (const char* p : parts)
        if (p != nullptr)
            w.put(p);
    t.reason(text, w.pending());
    return st;
}

// qemu opens the backing file (whatever -u says) and reads its CID with vmdk_read_cid: the
// descriptor window at 0x200 of a sparse file, at 0 of a descriptor file.
Status read_parent_cid(const guest::CreateRequest& req, guest::CreateTarget& t, uint8_t* scratch, uint32_t* cid) {
    if (req.backing == nullptr)
        return fail(t, Status::Invalid, "Could not open '", req.backing_file,
                    "': vmdk records the backing file's CID, so it must be opened (not -u)");
    bool match = false;
    Status st = probe(*req.backing, &match);
    if (st != Status::Ok)
        return st;
    if (!match)
        return fail(t, Status::Invalid, "Invalid backing file format: raw. Must be vmdk");
    uint8_t magic[4];
    if ((st = read_zero_filled(*req.backing, 0, magic, sizeof magic)) != Status::Ok)
        return st;
    const uint32_t m = load_be32(magic);
    const uint64_t at = m == VMDK4_MAGIC || m == VMDK3_MAGIC ? VMDK_EMBEDDED_DESC_OFFSET : 0;
    if ((st = read_zero_filled(*req.backing, at, scratch, VMDK_DESC_WINDOW)) != Status::Ok)
        return st;
    scratch[VMDK_DESC_WINDOW - 1] = 0;
    if (!descriptor_cid(text_of(scratch, VMDK_DESC_WINDOW), false, cid))
        return fail(t, Status::Corrupt, "Failed to read parent CID");
    return Status::Ok;
}

// A flat extent: a hole of `bytes`, plus qemu's file-posix habit of allocating the first block when
// it grows an empty file (allocate_first_block: 4 KiB of zeros, 512 bytes for a smaller file), so
// the allocation matches qemu-img's too.
Status write_flat_extent(guest::CreateTarget& t, guest::BlockDevice& dev, uint64_t bytes, uint8_t* scratch) {
    constexpr size_t FIRST_BLOCK = 4096; // file-posix's MAX_BLOCKSIZE
    if (bytes > INSTAR_MAX_OUTPUT_SIZE)
        return fail(t, Status::TooLarge, "Could not resize file: File too large"); // file-posix on EFBIG
    Status st = t.set_length(dev, bytes, guest::Prealloc::Off);
    if (st != Status::Ok)
        return st;
    const size_t n = bytes < FIRST_BLOCK ? 512 : FIRST_BLOCK;
    __builtin_memset(scratch, 0, n);
    return dev.write(0, scratch, n);
}

// The extent files of split and flat subformats, in order.
Status write_extents(const guest::CreateRequest& req, guest::CreateTarget& t, const CreateSettings& s,
                     const ExtentPlan& plan, uint8_t* scratch) {
    for (uint64_t i = 0; i < plan.count(); ++i) {
        char name[guest::CREATE_MAX_REASON];
        const size_t n = extent_file_name(req.file_name, s, i + 1, name, sizeof name);
        if (n == 0 || n > guest::CREATE_MAX_FILE_NAME)
            return fail(t, Status::Invalid, "Could not create '", n == 0 ? req.file_name : name,
                        "': File name too long");
        guest::BlockDevice* dev = nullptr;
        Status st = t.add_file(name, &dev);
        if (st != Status::Ok)
            return st;
        const auto bytes = static_cast<uint64_t>(plan.size_of(i));
        st = s.flat ? write_flat_extent(t, *dev, bytes, scratch)
                    : write_sparse_extent(t, *dev, sparse_layout(bytes, s.compress, s.zeroed_grain), scratch);
        if (st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

} // namespace

Status create(const guest::CreateRequest& req, guest::CreateTarget& target) {
    CreatedImage made;
    return create_image(req, target, &made);
}

Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, CreatedImage* out) {
    if (req.allocator == nullptr || req.random == nullptr || req.file_name == nullptr)
        return Status::Invalid;
    CreateSettings s;
    CreateError err;
    Status st = read_create_settings(req, &s, &err);
    if (st != Status::Ok) {
        target.reason(err.text, err.len);
        return st;
    }
    const ExtentPlan plan(s);
    if (plan.count() > INSTAR_MAX_ADDED_FILES)
        return fail(target, Status::TooLarge, "instar creates at most 32768 extent files (64 TiB in 2 GiB extents)");

    Buffer scratch(*req.allocator, SCRATCH_BYTES);
    if (!scratch.p)
        return Status::NoMemory;
    uint32_t parent_cid = 0xffffffff;
    if (s.backing_file != nullptr && (st = read_parent_cid(req, target, scratch.p, &parent_cid)) != Status::Ok)
        return st;

    guest::BlockDevice& image = target.image();
    const bool monolithic = !s.split && !s.flat;
    if (monolithic) {
        st = write_sparse_extent(target, image, sparse_layout(s.size, s.compress, s.zeroed_grain), scratch.p);
    } else {
        st = write_extents(req, target, s, plan, scratch.p);
    }
    if (st != Status::Ok)
        return st;

    // qemu's g_random_int(): the CID is random, so images differ from qemu-img's only there.
    const DescriptorFields fields{load_le32(req.random), parent_cid, req.file_name};
    TextWriter w(reinterpret_cast<char*>(scratch.p), SCRATCH_BYTES, &image,
                 monolithic ? VMDK_CREATE_DESC_OFFSET_SECTORS * 512 : 0);
    emit_descriptor(w, s, fields, plan);
    if ((st = w.flush()) != Status::Ok)
        return st;
    if (!s.flat)
        target.resolved_unit_size(VMDK_CREATE_GRAIN_SECTORS * 512);
    *out = CreatedImage{s, fields.cid, parent_cid, w.total()};
    return Status::Ok;
}

} // namespace instar::vmdk
