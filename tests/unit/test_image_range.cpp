// backing_bytes_asked (ops/image_range.h): the host's decoder of an edit's untrusted request for
// backing-chain bytes (RESIZE_DATA_NEED_BACKING).
#include "ops/image_range.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <vector>

using instar::EditReport;
using instar::backing_bytes_asked;
namespace guest = instar::guest;

namespace {

std::vector<std::uint8_t> record(std::uint64_t offset, std::uint64_t length) {
    const guest::ResizeNeedBacking n{offset, length};
    std::vector<std::uint8_t> bytes(sizeof n);
    std::memcpy(bytes.data(), &n, sizeof n);
    return bytes;
}

} // namespace

TEST_CASE("a well-formed request is taken as sent") {
    EditReport r;
    r.data.emplace_back(guest::RESIZE_DATA_NEED_BACKING, record(1 << 20, 64 << 10));
    const auto need = backing_bytes_asked(r);
    REQUIRE(need.size() == 1);
    CHECK(need[0].offset == (1u << 20));
    CHECK(need[0].length == (64u << 10));
    r.data.emplace(r.data.begin(), guest::RESIZE_DATA_DROPPED_FILE, std::vector<std::uint8_t>(4)); // other kinds pass
    CHECK(backing_bytes_asked(r).size() == 1);
    r.data.emplace_back(guest::RESIZE_DATA_NEED_BACKING, record(3 << 20, 64 << 10)); // a second range, in order
    const auto two = backing_bytes_asked(r);
    REQUIRE(two.size() == 2);
    CHECK(two[1].offset == (3u << 20));
}

TEST_CASE("no request, or a malformed one, is none") {
    EditReport none;
    CHECK(backing_bytes_asked(none).empty());
    auto one = [](std::vector<std::uint8_t> bytes) {
        EditReport r;
        r.data.emplace_back(guest::RESIZE_DATA_NEED_BACKING, std::move(bytes));
        return !backing_bytes_asked(r).empty();
    };
    CHECK_FALSE(one({1, 2, 3}));                                               // short
    CHECK_FALSE(one(record(0, 0)));                                            // empty
    CHECK_FALSE(one(record(0, guest::RESIZE_MAX_BACKING_BYTES * 2)));          // over the bound
    CHECK_FALSE(one(record(4096, 65536)));                                     // not a multiple
    CHECK_FALSE(one(record(UINT64_MAX - 65535, 65536)));                       // past int64
    CHECK_FALSE(one(record((std::uint64_t{1} << 63) - 65536, 65536 * 2)));     // its end past int64
    CHECK(one(record((std::uint64_t{1} << 63) - 131072, 65536)));              // the last one allowed
    EditReport thrice;
    for (std::uint64_t k = 0; k < 3; ++k)
        thrice.data.emplace_back(guest::RESIZE_DATA_NEED_BACKING, record(k * 512, 512));
    CHECK(backing_bytes_asked(thrice).empty());                                // RESIZE_MAX_BACKING_RANGES
    EditReport bad_second;
    bad_second.data.emplace_back(guest::RESIZE_DATA_NEED_BACKING, record(0, 512));
    bad_second.data.emplace_back(guest::RESIZE_DATA_NEED_BACKING, record(256, 512));
    CHECK(backing_bytes_asked(bad_second).empty());                            // every one checked
}
