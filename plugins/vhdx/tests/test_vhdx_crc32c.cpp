// Unit tests for CRC-32C.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "vhdx_crc32c.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace instar::vhdx;

TEST_CASE("crc32c: the standard check value and the skipped field") {
    const char* s = "123456789";
    const auto* p = reinterpret_cast<const std::uint8_t*>(s);
    CHECK((crc32c_update(0xFFFFFFFFu, p, 9) ^ 0xFFFFFFFFu) == 0xE3069283u);
    std::uint8_t a[12] = {1, 2, 3, 4, 9, 9, 9, 9, 5, 6, 7, 8};
    std::uint8_t b[12] = {1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8};
    CHECK(crc32c_skipping(a, 12, 4) == (crc32c_update(0xFFFFFFFFu, b, 12) ^ 0xFFFFFFFFu));
}
