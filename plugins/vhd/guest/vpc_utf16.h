// UTF-8 to UTF-16 for the names a differencing VHD stores (parent name UTF-16BE, locators UTF-16LE).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::vpc {

// Encodes the UTF-8 string `src` (`len` bytes) as UTF-16 into `dst` (capacity `cap_units` code
// units, each 2 bytes), stopping before a code point that does not fit whole. *units is the count
// written, *complete whether all of `src` fit. False when `src` is not valid UTF-8 (overlong forms,
// surrogates and code points past U+10FFFF included).
bool vpc_utf8_to_utf16(const char* src, size_t len, bool big_endian, uint8_t* dst, size_t cap_units,
                       size_t* units, bool* complete);

} // namespace instar::vpc
