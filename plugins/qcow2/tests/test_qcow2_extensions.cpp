// Unit tests for the qcow2 header extension walk (qcow2_extensions.cpp).
#include <doctest/doctest.h>

#include "qcow2_extensions.h"
#include "qcow2_test_image.h"

#include <cstring>
#include <string>

using namespace instar::qcow2;
using instar::guest::Status;
using test::append_be;
using test::ImageSpec;

namespace {

// The parsed strings point into the image, so it outlives each call.
std::vector<std::uint8_t> img;

Status walk(const ImageSpec& s, Qcow2Extensions* ext) {
    img = s.build();
    Qcow2HeaderDisk d{};
    std::memcpy(&d, img.data(), sizeof d);
    Qcow2Header h;
    Status st = qcow2_header_parse(d, &h);
    if (st != Status::Ok)
        return st;
    return qcow2_extensions_parse(h, img.data(), h.header_length, h.extensions_end(), ext);
}

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

} // namespace

TEST_CASE("backing format, data file, feature table and unknown extensions") {
    ImageSpec s;
    s.incompatible = QCOW2_INCOMPAT_DATA_FILE;
    s.extensions.push_back({QCOW2_EXT_MAGIC_BACKING_FORMAT, bytes("qcow2")});
    s.extensions.push_back({QCOW2_EXT_MAGIC_FEATURE_TABLE, std::vector<std::uint8_t>(48 * 3, 'x')});
    s.extensions.push_back({0x12345678, bytes("ignored")});
    s.extensions.push_back({QCOW2_EXT_MAGIC_DATA_FILE, bytes("disk.raw")});
    Qcow2Extensions e;
    REQUIRE(walk(s, &e) == Status::Ok);
    CHECK(std::string(e.backing_format, e.backing_format_len) == "qcow2");
    REQUIRE(e.has_data_file);
    CHECK(std::string(e.data_file, e.data_file_len) == "disk.raw");
    CHECK(e.nb_bitmaps == 0);
    CHECK_FALSE(e.has_crypto_header);
}

TEST_CASE("strings end at a NUL, as in qemu's C strings") {
    ImageSpec s;
    s.extensions.push_back({QCOW2_EXT_MAGIC_BACKING_FORMAT, {'r', 'a', 'w', 0, 'x'}});
    Qcow2Extensions e;
    REQUIRE(walk(s, &e) == Status::Ok);
    CHECK(std::string(e.backing_format, e.backing_format_len) == "raw");
}

TEST_CASE("backing format of 16 bytes is refused") {
    ImageSpec s;
    s.extensions.push_back({QCOW2_EXT_MAGIC_BACKING_FORMAT, bytes("0123456789abcdef")});
    Qcow2Extensions e;
    CHECK(walk(s, &e) == Status::Corrupt);
}

TEST_CASE("bitmaps extension") {
    ImageSpec s;
    s.add_bitmaps({test::bitmap_entry("b1", 2, 16)});
    Qcow2Extensions e;
    REQUIRE(walk(s, &e) == Status::Ok);
    CHECK(e.nb_bitmaps == 1);
    CHECK(e.bitmap_directory_size == 32);
    CHECK(e.bitmap_directory_offset == 5 * 65536);
    s.autoclear = 0; // written by a program unaware of bitmaps: ignored
    REQUIRE(walk(s, &e) == Status::Ok);
    CHECK(e.nb_bitmaps == 0);
}

TEST_CASE("bitmaps extension limits") {
    auto ext = [](std::uint32_t nb, std::uint32_t reserved, std::uint64_t size, std::uint64_t off) {
        std::vector<std::uint8_t> b;
        append_be(b, nb, 4);
        append_be(b, reserved, 4);
        append_be(b, size, 8);
        append_be(b, off, 8);
        return b;
    };
    ImageSpec s;
    s.autoclear = 1;
    Qcow2Extensions e;
    s.extensions = {{QCOW2_EXT_MAGIC_BITMAPS, ext(0, 0, 32, 65536)}};
    CHECK(walk(s, &e) == Status::Corrupt);
    s.extensions = {{QCOW2_EXT_MAGIC_BITMAPS, ext(65536, 0, 32, 65536)}};
    CHECK(walk(s, &e) == Status::TooLarge);
    s.extensions = {{QCOW2_EXT_MAGIC_BITMAPS, ext(1, 1, 32, 65536)}};
    CHECK(walk(s, &e) == Status::Corrupt);
    s.extensions = {{QCOW2_EXT_MAGIC_BITMAPS, ext(1, 0, 1ull << 40, 65536)}};
    CHECK(walk(s, &e) == Status::TooLarge);
    s.extensions = {{QCOW2_EXT_MAGIC_BITMAPS, ext(1, 0, 32, 65537)}};
    CHECK(walk(s, &e) == Status::Corrupt);
    auto short_ext = ext(1, 0, 32, 65536);
    short_ext.pop_back();
    s.extensions = {{QCOW2_EXT_MAGIC_BITMAPS, short_ext}};
    CHECK(walk(s, &e) == Status::Corrupt);
}

TEST_CASE("crypto header extension") {
    ImageSpec s;
    s.add_luks();
    Qcow2Extensions e;
    REQUIRE(walk(s, &e) == Status::Ok);
    REQUIRE(e.has_crypto_header);
    CHECK(e.crypto_header_offset == 6 * 65536);
    CHECK(e.crypto_header_length == 2068480);
    s.crypt_method = 1; // AES: no crypto header allowed
    CHECK(walk(s, &e) == Status::Corrupt);
    s.crypt_method = 2;
    s.extensions[0].second[7] = 1; // unaligned offset
    CHECK(walk(s, &e) == Status::Corrupt);
}

TEST_CASE("an extension running past the extension area is refused") {
    ImageSpec s;
    s.cluster_bits = 9;
    s.extensions.push_back({0x1, std::vector<std::uint8_t>(300, 0)});
    auto img = s.build();
    test::put_be(img, 112 + 4, 1000, 4); // length beyond the 512-byte cluster
    Qcow2HeaderDisk d{};
    std::memcpy(&d, img.data(), sizeof d);
    Qcow2Header h;
    REQUIRE(qcow2_header_parse(d, &h) == Status::Ok);
    Qcow2Extensions e;
    CHECK(qcow2_extensions_parse(h, img.data(), h.header_length, h.extensions_end(), &e) == Status::Corrupt);
}

TEST_CASE("the number of extensions is bounded") {
    ImageSpec s;
    s.cluster_bits = 21;
    for (int i = 0; i < 5000; ++i)
        s.extensions.push_back({0x1, {}});
    Qcow2Extensions e;
    CHECK(walk(s, &e) == Status::TooLarge);
}
