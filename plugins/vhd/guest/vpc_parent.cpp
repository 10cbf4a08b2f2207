// Selection and decoding of a differencing VHD's parent path.
#include <instar/guest/format_util.h>
#include "vpc_parent.h"

#include "vpc_bytes.h"

namespace instar::vpc {

using guest::Status;

namespace {

using Buffer = guest::ScopedBuffer;

// Reads one locator's UTF-16LE path into `out`; *len = 0 when it is unusable.
Status read_locator(guest::BlockDevice& dev, const VpcParentLocator& l, uint8_t* raw, char* out, size_t* len) {
    *len = 0;
    if (l.data_length == 0 || l.data_length > VPC_MAX_LOCATOR_BYTES)
        return Status::Ok;
    uint64_t end;
    if (!add_u64(l.data_offset, l.data_length, &end) || end > dev.size())
        return Status::Corrupt;
    const Status st = dev.read(l.data_offset, raw, l.data_length);
    if (st != Status::Ok)
        return st;
    if (!guest::utf16_to_utf8(raw, l.data_length / 2, false, out, guest::INFO_MAX_STRING, len))
        return Status::TooLarge;
    return Status::Ok;
}

} // namespace

Status vpc_report_parent(guest::BlockDevice& dev, guest::Allocator& alloc, const VpcDynamicHeader& h,
                         uint8_t covered, guest::InfoSink& sink) {
    Buffer raw(alloc, VPC_MAX_LOCATOR_BYTES);
    Buffer out(alloc, guest::INFO_MAX_STRING);
    if (!raw.p || !out.p)
        return Status::NoMemory;
    char* text = reinterpret_cast<char*>(out.p);
    size_t len = 0;
    static constexpr const char* codes[] = {"W2ru", "W2ku"};
    for (const char* code : codes) {
        for (uint32_t i = 0; i < VPC_PARENT_LOCATOR_COUNT && len == 0; ++i) {
            const VpcParentLocator& l = h.parent_locators[i];
            if (!same4(l.platform_code, code) || (covered >> i) & 1u)
                continue;
            const Status st = read_locator(dev, l, raw.p, text, &len);
            if (st != Status::Ok)
                return st;
        }
        if (len != 0)
            break;
    }
    if (len == 0 && !guest::utf16_to_utf8(h.parent_unicode_name, VPC_PARENT_NAME_BYTES / 2, true, text,
                                       guest::INFO_MAX_STRING, &len))
        return Status::TooLarge;
    if (len != 0)
        sink.file_reference(guest::FileRole::Backing, text, len);
    return Status::Ok;
}

} // namespace instar::vpc
