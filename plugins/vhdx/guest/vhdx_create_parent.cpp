// Reading a parent's identity and writing a differencing VHDX's parent locator.
#include "vhdx_create_parent.h"

#include "vhdx_bytes.h"
#include "vhdx_create_text.h"
#include "vhdx_header.h"
#include "vhdx_parent_locator.h"

namespace instar::vhdx {

using guest::Status;

namespace {

void store_le16(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
void store_le32(uint8_t* p, uint32_t v) {
    store_le16(p, v);
    store_le16(p + 2, v >> 16);
}

// Decodes one UTF-8 sequence at s (NUL-terminated); malformed input becomes U+FFFD, one byte at a time.
uint32_t next_code_point(const char*& s) {
    const auto* u = reinterpret_cast<const uint8_t*>(s);
    uint32_t c = u[0];
    int extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0) {
        ++s;
        return 0xFFFD;
    }
    c &= extra == 0 ? 0x7F : extra == 1 ? 0x1F : extra == 2 ? 0x0F : 0x07;
    for (int i = 1; i <= extra; ++i) {
        if ((u[i] & 0xC0) != 0x80) {
            ++s;
            return 0xFFFD;
        }
        c = (c << 6) | (u[i] & 0x3F);
    }
    static constexpr uint32_t MIN[4] = {0, 0x80, 0x800, 0x10000};
    if (c < MIN[extra] || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) {
        ++s;
        return 0xFFFD;
    }
    s += 1 + extra;
    return c;
}

// Appends `s` as UTF-16LE at buf[*at]; false when it would pass `cap`.
bool put_utf16(const char* s, uint8_t* buf, uint32_t cap, uint32_t* at) {
    while (*s != 0) {
        uint32_t c = next_code_point(s);
        uint32_t units[2] = {c, 0};
        int n = 1;
        if (c >= 0x10000) {
            c -= 0x10000;
            units[0] = 0xD800 + (c >> 10);
            units[1] = 0xDC00 + (c & 0x3FF);
            n = 2;
        }
        for (int i = 0; i < n; ++i) {
            if (cap - *at < 2)
                return false;
            store_le16(buf + *at, units[i]);
            *at += 2;
        }
    }
    return true;
}

// The braced string form of a GUID ("{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}"). Lower case: Windows
// parses either case, but libvhdi (20210425) accepts only lower case.
void guid_string(const uint8_t* g, char* out) {
    static constexpr char HEX[] = "0123456789abcdef";
    // Bytes in display order: data1..data3 are little-endian on disk.
    static constexpr int ORDER[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    size_t n = 0;
    out[n++] = '{';
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = HEX[g[ORDER[i]] >> 4];
        out[n++] = HEX[g[ORDER[i]] & 15];
    }
    out[n++] = '}';
    out[n] = 0;
}

} // namespace

Status vhdx_parent_data_write_guid(const guest::CreateRequest& req, guest::CreateTarget& target, uint8_t guid[16]) {
    if (req.backing_fmt != nullptr && !guest::create_str_equal(req.backing_fmt, "vhdx"))
        return ReasonText{}
            .add("A differencing VHDX needs a VHDX parent; backing format '")
            .add(req.backing_fmt)
            .add("' is not supported")
            .fail(target, Status::Unsupported);
    if (req.backing == nullptr)
        return guest::create_fail(target, Status::Invalid,
                                  "A differencing VHDX records its parent's DataWriteGuid: the parent must be "
                                  "readable (-u is not supported)");
    uint8_t sig[8];
    VhdxHeader header;
    Status st = read_at(*req.backing, VHDX_FILE_IDENTIFIER_OFFSET, sig, sizeof sig);
    if (st == Status::Ok)
        st = same_bytes(sig, VHDX_FILE_SIGNATURE, 8) ? Status::Ok : Status::Corrupt;
    if (st == Status::Ok)
        st = vhdx_read_current_header(*req.backing, *req.allocator, &header);
    if (st == Status::NoMemory)
        return guest::create_fail(target, st, "Out of memory reading the parent's header");
    if (st != Status::Ok)
        return ReasonText{}
            .add("A differencing VHDX needs a VHDX parent; '")
            .add(req.backing_file)
            .add("' has no valid VHDX header")
            .fail(target, Status::Unsupported);
    __builtin_memcpy(guid, header.raw + __builtin_offsetof(VhdxHeaderDisk, data_write_guid), 16);
    return Status::Ok;
}

Status vhdx_parent_locator_build(const uint8_t parent_guid[16], const char* path, uint8_t* buf, uint32_t cap,
                                 uint32_t* len) {
    if (cap > VHDX_PARENT_LOCATOR_MAX_SIZE)
        cap = VHDX_PARENT_LOCATOR_MAX_SIZE;
    char linkage[39];
    guid_string(parent_guid, linkage);
    const char* keys[2] = {"parent_linkage", "relative_path"};
    const char* values[2] = {linkage, path};
    constexpr uint32_t COUNT = 2;
    uint32_t at = sizeof(VhdxParentLocatorHeaderDisk) + COUNT * sizeof(VhdxParentLocatorEntryDisk);
    if (cap < at)
        return Status::TooLarge;
    __builtin_memset(buf, 0, at);
    __builtin_memcpy(buf, VHDX_PARENT_LOCATOR_TYPE_VHDX.b, 16);
    store_le16(buf + __builtin_offsetof(VhdxParentLocatorHeaderDisk, key_value_count), COUNT);
    for (uint32_t i = 0; i < COUNT; ++i) {
        uint8_t* e = buf + sizeof(VhdxParentLocatorHeaderDisk) + i * sizeof(VhdxParentLocatorEntryDisk);
        const uint32_t key_at = at;
        if (!put_utf16(keys[i], buf, cap, &at))
            return Status::TooLarge;
        const uint32_t value_at = at;
        if (!put_utf16(values[i], buf, cap, &at))
            return Status::TooLarge;
        if (at - value_at > 0xFFFF) // the length fields have 16 bits
            return Status::TooLarge;
        store_le32(e + __builtin_offsetof(VhdxParentLocatorEntryDisk, key_offset), key_at);
        store_le32(e + __builtin_offsetof(VhdxParentLocatorEntryDisk, value_offset), value_at);
        store_le16(e + __builtin_offsetof(VhdxParentLocatorEntryDisk, key_length), value_at - key_at);
        store_le16(e + __builtin_offsetof(VhdxParentLocatorEntryDisk, value_length), at - value_at);
    }
    *len = at;
    return Status::Ok;
}

} // namespace instar::vhdx
