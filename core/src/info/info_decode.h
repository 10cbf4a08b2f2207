// Decoding of the guest's INFO records into an ImageInfo, with every bound re-checked.
#pragma once

#include "info/image_info.h"
#include "util/expected.h"

#include <cstdint>
#include <span>

namespace instar {

// `bytes` is the concatenation of the guest's INFO records. Any malformed token, over-long string,
// bad key, unbalanced or too-deep nesting, or too many snapshots/files is an error (the whole report
// is discarded: a guest that sends garbage is not believed in part).
// `require_format` is false when decoding the report of a failed run (only the reason matters).
Expected<ImageInfo> decode_info(std::span<const std::uint8_t> bytes, bool require_format = true);

} // namespace instar
