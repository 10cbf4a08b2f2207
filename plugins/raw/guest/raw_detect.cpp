// Recognition of image formats instar does not support, so they are named, never read as raw.
#include "raw_detect.h"

#include "raw_format.h"

namespace instar::raw {

using guest::Status;

namespace {

constexpr size_t HEAD_BYTES = 128; // covers every magic read from the start of the file

size_t cstrlen(const char* s) {
    size_t n = 0;
    while (s[n])
        ++n;
    return n;
}

bool starts_with(const uint8_t* p, size_t avail, const void* magic, size_t n) {
    if (avail < n)
        return false;
    const auto* m = static_cast<const uint8_t*>(magic);
    for (size_t i = 0; i < n; ++i)
        if (p[i] != m[i])
            return false;
    return true;
}

// A NUL-terminated string field equal to `s` (qemu compares these fields with strcmp).
bool field_is(const uint8_t* p, size_t field, const char* s) {
    const size_t n = cstrlen(s);
    return n < field && starts_with(p, field, s, n) && p[n] == 0;
}

uint32_t le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}
uint32_t be32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) |
           p[3];
}

const char* from_head(const uint8_t* h, size_t n) {
    if (starts_with(h, n, QED_MAGIC, 4)) // includes the NUL
        return "qed";
    // LUKS1 reaches here only without the luks plugin. qemu reads no other version (LUKS2 is raw to
    // it); instar names LUKS2 rather than calling it unrecognised.
    if (starts_with(h, n, LUKS_MAGIC, sizeof LUKS_MAGIC) && n >= sizeof LUKS_MAGIC + 2 && h[sizeof LUKS_MAGIC] == 0) {
        if (h[sizeof LUKS_MAGIC + 1] == 1)
            return "luks";
        if (h[sizeof LUKS_MAGIC + 1] == 2)
            return "luks2";
    }
    if (starts_with(h, n, QCOW_MAGIC, sizeof QCOW_MAGIC) && n >= 8 && be32(h + 4) == QCOW_VERSION)
        return "qcow";
    if (n >= VDI_SIGNATURE_OFFSET + 4 && le32(h + VDI_SIGNATURE_OFFSET) == VDI_SIGNATURE)
        return "vdi";
    if ((starts_with(h, n, PARALLELS_MAGIC, 16) || starts_with(h, n, PARALLELS_MAGIC2, 16)) && n >= 20 &&
        le32(h + 16) == PARALLELS_VERSION)
        return "parallels";
    if (n >= 68 && field_is(h, 32, BOCHS_MAGIC) && field_is(h + 32, 16, BOCHS_REDOLOG_TYPE) &&
        field_is(h + 48, 16, BOCHS_GROWING_TYPE) &&
        (le32(h + 64) == BOCHS_HEADER_VERSION || le32(h + 64) == BOCHS_HEADER_V1))
        return "bochs";
    return nullptr;
}

} // namespace

Status detect_other(guest::BlockDevice& dev, const char** name) {
    *name = nullptr;
    const uint64_t size = dev.size();
    uint8_t head[HEAD_BYTES];
    const size_t n = size < HEAD_BYTES ? static_cast<size_t>(size) : HEAD_BYTES;
    if (n != 0 && dev.read(0, head, n) != Status::Ok)
        return Status::Ok;
    if ((*name = from_head(head, n)) != nullptr)
        return Status::Ok;
    // cloop's preamble is longer than the head buffer.
    const size_t cloop_len = cstrlen(CLOOP_MAGIC_V2_0);
    uint8_t buf[128];
    static_assert(sizeof(CLOOP_MAGIC_V2_0) - 1 <= sizeof(buf));
    if (size >= cloop_len && dev.read(0, buf, cloop_len) == Status::Ok && starts_with(buf, cloop_len, CLOOP_MAGIC_V2_0, cloop_len)) {
        *name = "cloop";
        return Status::Ok;
    }
    if (size >= ISO9660_IDENTIFIER_OFFSET + 5 && dev.read(ISO9660_IDENTIFIER_OFFSET, buf, 5) == Status::Ok &&
        starts_with(buf, 5, ISO9660_IDENTIFIER, 5)) {
        *name = "iso";
        return Status::Ok;
    }
    if (size >= DMG_TRAILER_SIZE && dev.read(size - DMG_TRAILER_SIZE, buf, 4) == Status::Ok &&
        starts_with(buf, 4, DMG_KOLY_MAGIC, 4)) {
        *name = "dmg";
        return Status::Ok;
    }
    return Status::Ok;
}

} // namespace instar::raw
