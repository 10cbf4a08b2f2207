// CRC-32C with a table built at compile time (reflected polynomial 0x82F63B78).
#include "vhdx_crc32c.h"

namespace instar::vhdx {

namespace {

struct Table {
    uint32_t v[256];
};

constexpr Table make_table() {
    Table t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t.v[i] = c;
    }
    return t;
}

constexpr Table TABLE = make_table();

} // namespace

uint32_t crc32c_update(uint32_t state, const uint8_t* data, size_t len) {
    for (size_t i = 0; i < len; ++i)
        state = TABLE.v[(state ^ data[i]) & 0xFF] ^ (state >> 8);
    return state;
}

uint32_t crc32c_skipping(const uint8_t* data, size_t len, size_t skip) {
    static constexpr uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t s = crc32c_update(0xFFFFFFFFu, data, skip);
    s = crc32c_update(s, zero, 4);
    s = crc32c_update(s, data + skip + 4, len - skip - 4);
    return s ^ 0xFFFFFFFFu;
}

} // namespace instar::vhdx
