// The parent of a differencing VHD: chosen from the parent locators or the parent name.
#pragma once

#include "vpc_dynamic_header.h"

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::vpc {

// Longest parent locator data read (bytes of UTF-16): a path the host could ever accept fits, as
// its UTF-8 form is at most INFO_MAX_STRING bytes.
inline constexpr uint32_t VPC_MAX_LOCATOR_BYTES = 2 * guest::INFO_MAX_STRING;

// Reports the parent path (UTF-8, exactly as stored, backslashes kept) as a Backing reference.
// Preference: the W2ru (relative) locator, then W2ku (absolute), then the parent Unicode name. A
// locator whose data an allocated block covers (bit i of `covered`, VpcImage::covered_locators) is
// skipped: qemu-io or qemu-img wrote the disk as a dynamic one, over it. Nothing is reported when
// none of them names a file.
guest::Status vpc_report_parent(guest::BlockDevice& dev, guest::Allocator& alloc, const VpcDynamicHeader& h,
                                uint8_t covered, guest::InfoSink& sink);

} // namespace instar::vpc
