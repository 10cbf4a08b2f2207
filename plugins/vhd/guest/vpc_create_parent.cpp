// A differencing VHD's parent identity and parent locator (VHD spec, "Dynamic Disk Header Format").
#include "vpc_create_parent.h"

#include <instar/guest/format_util.h>

#include "vpc_bytes.h"
#include "vpc_footer.h"
#include "vpc_parent.h"
#include "vpc_utf16.h"

namespace instar::vpc {

using guest::CreateRequest;
using guest::CreateTarget;
using guest::Status;

namespace {

constexpr uint32_t LOCATOR_ALIGN = 512; // locator data occupies whole sectors

size_t str_len(const char* s) {
    size_t n = 0;
    while (s[n] != 0)
        ++n;
    return n;
}

// Absolute in POSIX or Windows terms: "/x", "\x", "C:...".
bool is_absolute(const char* p) {
    const bool drive = ((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z')) && p[1] == ':';
    return p[0] == '/' || p[0] == '\\' || drive;
}

// The parent's footer: the copy at offset 0 of a dynamic disk, or the footer at the end of a fixed one.
Status read_parent_footer(guest::BlockDevice& dev, VpcFooter* f) {
    if (dev.size() < VPC_FOOTER_SIZE)
        return Status::Corrupt;
    uint8_t raw[VPC_FOOTER_SIZE];
    Status st = dev.read(0, raw, sizeof raw);
    if (st == Status::Ok && !vpc_footer_has_cookie(raw))
        st = dev.read(dev.size() - VPC_FOOTER_SIZE, raw, sizeof raw);
    if (st != Status::Ok)
        return st;
    return vpc_footer_parse(raw, sizeof raw, f);
}

Status check_parent(const CreateRequest& req, CreateTarget& target, VpcDynamicHeader* h) {
    const char* fmt = req.backing_fmt;
    if (fmt != nullptr && !guest::create_str_equal(fmt, "vpc") && !guest::create_str_equal(fmt, "vhd"))
        return guest::create_fail(target, Status::Invalid,
                                  "A differencing VHD needs a backing file in format 'vpc'");
    if (req.backing == nullptr)
        return Status::Ok; // -u: the parent is not opened, its identity stays zero
    VpcFooter parent;
    if (read_parent_footer(*req.backing, &parent) != Status::Ok)
        return guest::create_fail(target, Status::Invalid,
                                  "The backing file is not a VHD image: a differencing VHD needs a VHD parent");
    __builtin_memcpy(h->parent_unique_id, parent.unique_id, sizeof h->parent_unique_id);
    h->parent_timestamp = parent.timestamp;
    return Status::Ok;
}

// The parent Unicode name: the path's last component, cut to the field (never inside a pair).
Status set_parent_name(const char* path, size_t len, VpcDynamicHeader* h) {
    size_t start = 0;
    for (size_t i = 0; i < len; ++i)
        if (path[i] == '/' || path[i] == '\\')
            start = i + 1;
    size_t units;
    bool complete;
    __builtin_memset(h->parent_unicode_name, 0, VPC_PARENT_NAME_BYTES);
    if (!vpc_utf8_to_utf16(path + start, len - start, true, h->parent_unicode_name, VPC_PARENT_NAME_BYTES / 2,
                           &units, &complete))
        return Status::Invalid;
    return Status::Ok;
}

} // namespace

Status vpc_create_parent(const CreateRequest& req, CreateTarget& target, uint64_t offset, VpcDynamicHeader* h,
                         uint64_t* end) {
    Status st = check_parent(req, target, h);
    if (st != Status::Ok)
        return st;
    const char* path = req.backing_file;
    const size_t len = str_len(path);
    if (set_parent_name(path, len, h) != Status::Ok)
        return guest::create_fail(target, Status::Invalid, "The backing file name is not valid UTF-8");

    // The locator holds the whole path; info() reads at most VPC_MAX_LOCATOR_BYTES back.
    guest::ScopedBuffer data(*req.allocator, VPC_MAX_LOCATOR_BYTES);
    if (!data.p)
        return Status::NoMemory;
    __builtin_memset(data.p, 0, VPC_MAX_LOCATOR_BYTES);
    size_t units;
    bool complete;
    if (!vpc_utf8_to_utf16(path, len, false, data.p, VPC_MAX_LOCATOR_BYTES / 2, &units, &complete) || !complete)
        return guest::create_fail(target, Status::Invalid,
                                  "The backing file name is too long for a VHD parent locator");
    const uint32_t length = static_cast<uint32_t>(units * 2);
    const uint32_t space = (length + LOCATOR_ALIGN - 1) / LOCATOR_ALIGN * LOCATOR_ALIGN;
    VpcParentLocator& l = h->parent_locators[0];
    store4(l.platform_code, is_absolute(path) ? "W2ku" : "W2ru");
    l.data_space = space; // in bytes, as Windows writes it (the spec says sectors)
    l.data_length = length;
    l.data_offset = offset;
    st = target.image().write(offset, data.p, space);
    if (st != Status::Ok)
        return st;
    *end = offset + space;
    return Status::Ok;
}

} // namespace instar::vpc
