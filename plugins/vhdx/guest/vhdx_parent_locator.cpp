// Parsing of the VHDX parent locator.
#include <instar/guest/format_util.h>
#include "vhdx_parent_locator.h"

#include "vhdx_bytes.h"

namespace instar::vhdx {

using guest::Status;

namespace {

// True if the UTF-16LE key equals the ASCII name.
bool key_is(const uint8_t* key, uint32_t key_len, const char* name) {
    uint32_t n = 0;
    while (name[n])
        ++n;
    if (key_len != 2 * n)
        return false;
    for (uint32_t i = 0; i < n; ++i)
        if (key[2 * i] != static_cast<uint8_t>(name[i]) || key[2 * i + 1] != 0)
            return false;
    return true;
}

} // namespace

Status vhdx_parent_locator_parse(const uint8_t* item, uint32_t item_len, char* out, size_t* len) {
    *len = 0;
    if (item_len < sizeof(VhdxParentLocatorHeaderDisk))
        return Status::Corrupt;
    VhdxParentLocatorHeaderDisk h;
    __builtin_memcpy(&h, item, sizeof h);
    const uint32_t count = load_le16(h.key_value_count);
    if (sizeof h + static_cast<uint64_t>(count) * sizeof(VhdxParentLocatorEntryDisk) > item_len)
        return Status::Corrupt;
    static constexpr const char* keys[] = {"relative_path", "absolute_win32_path", "volume_path"};
    for (const char* wanted : keys) {
        for (uint32_t i = 0; i < count; ++i) {
            VhdxParentLocatorEntryDisk e;
            __builtin_memcpy(&e, item + sizeof h + i * sizeof e, sizeof e);
            const uint64_t ko = load_le32(e.key_offset), vo = load_le32(e.value_offset);
            const uint32_t kl = load_le16(e.key_length), vl = load_le16(e.value_length);
            if (ko + kl > item_len || vo + vl > item_len)
                return Status::Corrupt;
            if (!key_is(item + ko, kl, wanted))
                continue;
            if (!guest::utf16_to_utf8(item + vo, vl / 2, false, out, guest::INFO_MAX_STRING, len))
                return Status::TooLarge;
            if (*len != 0)
                return Status::Ok;
        }
    }
    return Status::Ok;
}

Status vhdx_report_parent(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxRegion& metadata_region,
                          const VhdxMetadataItem& item, guest::InfoSink& sink) {
    if (item.length > VHDX_PARENT_LOCATOR_MAX_SIZE)
        return Status::TooLarge;
    Buffer raw(alloc, item.length ? item.length : 1);
    Buffer text(alloc, guest::INFO_MAX_STRING);
    if (!raw.p || !text.p)
        return Status::NoMemory;
    uint64_t at;
    if (!add_u64(metadata_region.file_offset, item.offset, &at))
        return Status::Corrupt;
    Status st = read_at(dev, at, raw.p, item.length);
    if (st != Status::Ok)
        return st;
    size_t len = 0;
    st = vhdx_parent_locator_parse(raw.p, item.length, reinterpret_cast<char*>(text.p), &len);
    if (st == Status::Ok && len != 0)
        sink.file_reference(guest::FileRole::Backing, reinterpret_cast<char*>(text.p), len);
    return st;
}

} // namespace instar::vhdx
