// The VDI emitter (vdi_create.h).
#include "vdi_create.h"

#include <instar/guest/format_util.h>

namespace instar::vdi {

using guest::Status;

namespace {

// Bytes of block map written per device write: 64 KiB (16384 entries) from the arena.
constexpr size_t BMAP_CHUNK = 65536;
// The header_size qemu writes (VirtualBox's 1.1 header without the unused tail).
constexpr uint32_t VDI_HEADER_SIZE_FIELD = 0x180;

// A version-4 UUID from 16 random bytes, in the byte order qemu stores it (qemu_uuid_generate,
// then qemu_uuid_bswap: the version nibble lands in byte 7, the variant bits in byte 8).
void put_uuid(uint8_t* p, const uint8_t* random) {
    for (size_t i = 0; i < 16; ++i)
        p[i] = random[i];
    p[7] = static_cast<uint8_t>((p[7] & 0x0f) | 0x40);
    p[8] = static_cast<uint8_t>((p[8] & 0x3f) | 0x80);
}

// "0x" digits of v, for qemu's size refusal.
size_t put_hex(char* buf, size_t n, uint64_t v) {
    char tmp[20];
    size_t k = 0;
    do {
        tmp[k++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (k)
        buf[n++] = tmp[--k];
    return n;
}

} // namespace

Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, VdiImage* out) {
    const bool is_static = guest::create_option_bool(req, "static", false);
    // qemu: "Silently round up size" to a sector, then refuses what the block map cannot hold.
    if (req.size > UINT64_MAX - (VDI_SECTOR_SIZE - 1))
        return guest::create_fail(target, Status::Unsupported, "Unsupported VDI image size");
    const uint64_t bytes = (req.size + VDI_SECTOR_SIZE - 1) / VDI_SECTOR_SIZE * VDI_SECTOR_SIZE;
    if (bytes > VDI_DISK_SIZE_MAX) {
        char msg[128];
        const char a[] = "Unsupported VDI image size (size is 0x";
        const char b[] = ", max supported is 0x";
        size_t n = 0;
        for (size_t i = 0; a[i]; ++i)
            msg[n++] = a[i];
        n = put_hex(msg, n, bytes);
        for (size_t i = 0; b[i]; ++i)
            msg[n++] = b[i];
        n = put_hex(msg, n, VDI_DISK_SIZE_MAX);
        msg[n++] = ')';
        msg[n] = 0;
        return guest::create_fail(target, Status::Unsupported, msg);
    }
    const uint32_t blocks = static_cast<uint32_t>((bytes + VDI_BLOCK_SIZE - 1) / VDI_BLOCK_SIZE);
    const uint64_t bmap_size = (uint64_t{blocks} * 4 + VDI_SECTOR_SIZE - 1) / VDI_SECTOR_SIZE * VDI_SECTOR_SIZE;
    target.resolved_unit_size(VDI_BLOCK_SIZE);

    VdiImage& img = *out;
    __builtin_memset(&img, 0, sizeof img);
    uint8_t* h = img.raw;
    for (size_t i = 0; VDI_TEXT[i] != 0; ++i)
        h[off::text + i] = static_cast<uint8_t>(VDI_TEXT[i]);
    store_le32(h + off::signature, VDI_SIGNATURE);
    store_le32(h + off::version, VDI_VERSION_1_1);
    store_le32(h + off::header_size, VDI_HEADER_SIZE_FIELD);
    store_le32(h + off::image_type, is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
    store_le32(h + off::offset_bmap, 0x200);
    store_le32(h + off::offset_data, static_cast<uint32_t>(0x200 + bmap_size)); // <= 2^31: fits
    store_le32(h + off::sector_size, VDI_SECTOR_SIZE);
    store_le64(h + off::disk_size, bytes);
    store_le32(h + off::block_size, VDI_BLOCK_SIZE);
    store_le32(h + off::blocks_in_image, blocks);
    store_le32(h + off::blocks_allocated, is_static ? blocks : 0);
    put_uuid(h + off::uuid_image, req.random);
    put_uuid(h + off::uuid_last_snap, req.random + 16);
    img.image_type = is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC;
    img.offset_bmap = 0x200;
    img.offset_data = static_cast<uint32_t>(0x200 + bmap_size);
    img.disk_size = bytes;
    img.blocks_in_image = blocks;
    img.blocks_allocated = is_static ? blocks : 0;

    guest::BlockDevice& dev = target.image();
    if (const Status st = dev.write(0, h, VDI_HEADER_SIZE); st != Status::Ok)
        return guest::create_fail(target, st, "Error writing header");
    if (bmap_size > 0) {
        guest::ScopedBuffer chunk(*req.allocator, BMAP_CHUNK);
        if (chunk.p == nullptr)
            return guest::create_fail(target, Status::NoMemory, "Could not allocate bmap");
        for (uint64_t done = 0; done < bmap_size;) {
            const uint64_t n = bmap_size - done < BMAP_CHUNK ? bmap_size - done : BMAP_CHUNK;
            for (uint64_t i = 0; i < n; i += 4) {
                const uint64_t index = (done + i) / 4;
                const uint32_t v = index >= blocks ? 0 : is_static ? static_cast<uint32_t>(index) : VDI_UNALLOCATED;
                store_le32(chunk.p + i, v);
            }
            if (const Status st = dev.write(VDI_HEADER_SIZE + done, chunk.p, static_cast<size_t>(n)); st != Status::Ok)
                return guest::create_fail(target, st, "Error writing bmap");
            done += n;
        }
    }
    if (is_static) {
        const uint64_t end = VDI_HEADER_SIZE + bmap_size + uint64_t{blocks} * VDI_BLOCK_SIZE;
        if (const Status st = target.set_length(dev, end, guest::Prealloc::Off); st != Status::Ok)
            return guest::create_fail(target, st, "Failed to statically allocate file");
    }
    return Status::Ok;
}

Status create(const guest::CreateRequest& req, guest::CreateTarget& target) {
    VdiImage img;
    return create_image(req, target, &img);
}

} // namespace instar::vdi
