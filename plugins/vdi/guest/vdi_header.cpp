// qemu's vdi_open checks over the VDI header (vdi_header.h), with qemu's refusal texts.
#include "vdi_header.h"

namespace instar::vdi {

using guest::Status;

namespace {

// A bounded text builder for the refusal messages (printf's %u, %x and %08x, without libc).
class Text {
public:
    Text(char* buf, size_t cap) : buf_(buf), cap_(cap) { buf_[0] = 0; }
    Text& s(const char* t) {
        while (*t)
            put(*t++);
        return *this;
    }
    Text& u(uint64_t v) {
        char tmp[24];
        size_t n = 0;
        do {
            tmp[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        while (n)
            put(tmp[--n]);
        return *this;
    }
    Text& x(uint64_t v, size_t width = 1) {
        char tmp[20];
        size_t n = 0;
        do {
            tmp[n++] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v);
        while (n < width && n < sizeof tmp)
            tmp[n++] = '0';
        while (n)
            put(tmp[--n]);
        return *this;
    }
    const char* str() const { return buf_; }

private:
    void put(char c) {
        if (len_ + 1 < cap_) {
            buf_[len_++] = c;
            buf_[len_] = 0;
        }
    }
    char* buf_;
    size_t cap_;
    size_t len_ = 0;
};

bool uuid_is_null(const uint8_t* p) {
    for (size_t i = 0; i < 16; ++i)
        if (p[i] != 0)
            return false;
    return true;
}

} // namespace

bool vdi_signature(const uint8_t* buf, size_t len) {
    return len >= VDI_HEADER_SIZE && load_le32(buf + off::signature) == VDI_SIGNATURE;
}

Status vdi_load(guest::BlockDevice& dev, VdiImage* out, const char** why) {
    const char* ignored = nullptr;
    if (why == nullptr)
        why = &ignored;
    *why = nullptr;
    // qemu's block layer reads zeros past the end of the file, so a short file is a header of zeros
    // after its bytes (it then fails the signature check).
    __builtin_memset(out->raw, 0, sizeof out->raw);
    const uint64_t have = dev.size() < VDI_HEADER_SIZE ? dev.size() : VDI_HEADER_SIZE;
    if (have > 0)
        if (const Status st = dev.read(0, out->raw, static_cast<size_t>(have)); st != Status::Ok)
            return st;
    const uint8_t* h = out->raw;
    Text t(out->message, sizeof out->message);
    uint64_t disk_size = load_le64(h + off::disk_size);
    if (disk_size > VDI_DISK_SIZE_MAX) {
        t.s("Unsupported VDI image size (size is 0x").x(disk_size).s(", max supported is 0x").x(VDI_DISK_SIZE_MAX).s(")");
        *why = t.str();
        return Status::Unsupported;
    }
    // 'VBoxManage convertfromraw' makes odd sizes; qemu rounds them up to a sector.
    disk_size = (disk_size + VDI_SECTOR_SIZE - 1) / VDI_SECTOR_SIZE * VDI_SECTOR_SIZE;
    const uint32_t signature = load_le32(h + off::signature);
    const uint32_t version = load_le32(h + off::version);
    const uint32_t offset_bmap = load_le32(h + off::offset_bmap);
    const uint32_t offset_data = load_le32(h + off::offset_data);
    const uint32_t sector_size = load_le32(h + off::sector_size);
    const uint32_t block_size = load_le32(h + off::block_size);
    const uint32_t blocks = load_le32(h + off::blocks_in_image);
    if (signature != VDI_SIGNATURE) {
        t.s("Image not in VDI format (bad signature ").x(signature, 8).s(")");
        *why = t.str();
        return Status::Corrupt;
    }
    if (version != VDI_VERSION_1_1) {
        t.s("unsupported VDI image (version ").u(version >> 16).s(".").u(version & 0xffff).s(")");
    } else if (offset_bmap % VDI_SECTOR_SIZE != 0) {
        t.s("unsupported VDI image (unaligned block map offset 0x").x(offset_bmap).s(")");
    } else if (offset_data % VDI_SECTOR_SIZE != 0) {
        t.s("unsupported VDI image (unaligned data offset 0x").x(offset_data).s(")");
    } else if (sector_size != VDI_SECTOR_SIZE) {
        t.s("unsupported VDI image (sector size ").u(sector_size).s(" is not 512)");
    } else if (block_size != VDI_BLOCK_SIZE) {
        t.s("unsupported VDI image (block size ").u(block_size).s(" is not 1048576)");
    } else if (disk_size > uint64_t{blocks} * block_size) {
        t.s("unsupported VDI image (disk size ").u(disk_size).s(", image bitmap has room for ")
            .u(uint64_t{blocks} * block_size).s(")");
    } else if (!uuid_is_null(h + off::uuid_link)) {
        t.s("unsupported VDI image (non-NULL link UUID)");
    } else if (!uuid_is_null(h + off::uuid_parent)) {
        t.s("unsupported VDI image (non-NULL parent UUID)");
    } else if (blocks > VDI_BLOCKS_IN_IMAGE_MAX) {
        t.s("unsupported VDI image (too many blocks ").u(blocks).s(", max is ").u(VDI_BLOCKS_IN_IMAGE_MAX).s(")");
    }
    if (out->message[0] != 0) {
        *why = t.str();
        return Status::Unsupported;
    }
    out->image_type = load_le32(h + off::image_type);
    out->offset_bmap = offset_bmap;
    out->offset_data = offset_data;
    out->disk_size = disk_size;
    out->blocks_in_image = blocks;
    out->blocks_allocated = load_le32(h + off::blocks_allocated);
    return Status::Ok;
}

} // namespace instar::vdi
