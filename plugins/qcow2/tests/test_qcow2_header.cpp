// Unit tests for the qcow2 header parser (qcow2_header.cpp).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "qcow2_header.h"
#include "qcow2_test_image.h"

#include <cstring>

using namespace instar::qcow2;
using instar::guest::Status;
using test::ImageSpec;
using test::put_be;

namespace {

Status parse(const std::vector<std::uint8_t>& img, Qcow2Header* h) {
    Qcow2HeaderDisk d{};
    std::memcpy(&d, img.data(), std::min(img.size(), sizeof d));
    return qcow2_header_parse(d, h);
}

Status parse(const ImageSpec& s) {
    Qcow2Header h;
    return parse(s.build(), &h);
}

} // namespace

TEST_CASE("v3 header fields") {
    ImageSpec s;
    s.compatible = 1;
    s.incompatible = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
    s.refcount_order = 6;
    Qcow2Header h;
    REQUIRE(parse(s.build(), &h) == Status::Ok);
    CHECK(h.version == 3);
    CHECK(h.cluster_bits == 16);
    CHECK(h.cluster_size() == 65536);
    CHECK(h.size == 1048576);
    CHECK(h.l1_size == 1);
    CHECK(h.l1_table_offset == 3 * 65536);
    CHECK(h.refcount_table_offset == 65536);
    CHECK(h.refcount_table_clusters == 1);
    CHECK(h.incompatible_features == 3);
    CHECK(h.compatible_features == 1);
    CHECK(h.refcount_order == 6);
    CHECK(h.header_length == 112);
    CHECK(h.compression_type == 0);
    CHECK(h.extensions_end() == 65536);
}

TEST_CASE("v2 header ignores the v3 fields") {
    ImageSpec s;
    s.version = 2;
    auto img = s.build();
    put_be(img, 72, 0xffffffffffffffffull, 8); // would be unknown incompatible bits in v3
    Qcow2Header h;
    REQUIRE(parse(img, &h) == Status::Ok);
    CHECK(h.version == 2);
    CHECK(h.header_length == 72);
    CHECK(h.refcount_order == 4);
    CHECK(h.incompatible_features == 0);
}

TEST_CASE("compression type zstd needs the incompatible bit, and vice versa") {
    ImageSpec s;
    s.compression_type = 1;
    CHECK(parse(s) == Status::Corrupt);
    s.incompatible = QCOW2_INCOMPAT_COMPRESSION;
    Qcow2Header h;
    REQUIRE(parse(s.build(), &h) == Status::Ok);
    CHECK(h.compression_type == 1);
    s.compression_type = 0;
    CHECK(parse(s) == Status::Corrupt);
    s.compression_type = 2;
    CHECK(parse(s) == Status::Unsupported);
    // header_length 104: the field is absent, zlib
    s.compression_type = 1;
    s.incompatible = 0;
    s.header_length = 104;
    REQUIRE(parse(s.build(), &h) == Status::Ok);
    CHECK(h.compression_type == 0);
}

TEST_CASE("versions, cluster sizes and feature bits qemu refuses") {
    ImageSpec s;
    s.version = 1;
    CHECK(parse(s) == Status::Unsupported);
    s.version = 4;
    CHECK(parse(s) == Status::Unsupported);
    s.version = 3;
    s.cluster_bits = 8;
    CHECK(parse(s) == Status::Unsupported);
    s.cluster_bits = 22;
    CHECK(parse(s) == Status::Unsupported);
    s.cluster_bits = 9;
    CHECK(parse(s) == Status::Ok);
    s.cluster_bits = 21;
    CHECK(parse(s) == Status::Ok);
    s.cluster_bits = 16;
    s.incompatible = 1u << 5;
    CHECK(parse(s) == Status::Unsupported);
    s.incompatible = 1ull << 63;
    CHECK(parse(s) == Status::Unsupported);
    s.incompatible = QCOW2_INCOMPAT_EXTL2;
    CHECK(parse(s) == Status::Ok);
    s.cluster_bits = 13;
    CHECK(parse(s) == Status::Unsupported);
    s.cluster_bits = 16;
    s.incompatible = 0;
    s.refcount_order = 7;
    CHECK(parse(s) == Status::Unsupported);
    s.refcount_order = 4;
    s.header_length = 100;
    CHECK(parse(s) == Status::Corrupt);
    s.header_length = 112;
    s.crypt_method = 3;
    CHECK(parse(s) == Status::Unsupported);
    s.crypt_method = 0;
    s.autoclear = QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    CHECK(parse(s) == Status::Corrupt);
}

TEST_CASE("header length beyond the cluster and backing offset beyond the cluster") {
    ImageSpec s;
    s.cluster_bits = 9;
    s.header_length = 520;
    CHECK(parse(s) == Status::Corrupt);
    s.header_length = 112;
    auto img = s.build();
    put_be(img, 8, 513, 8);
    Qcow2Header h;
    CHECK(parse(img, &h) == Status::Corrupt);
}

TEST_CASE("L1, refcount and snapshot table limits") {
    ImageSpec s;
    s.size = 1ull << 50; // 1 PiB: 2^21 L1 entries of 64 KiB clusters, legal
    Qcow2Header h;
    REQUIRE(parse(s.build(), &h) == Status::Ok);
    CHECK(h.l1_size == (1u << 21));
    CHECK(h.size == (1ull << 50));
    s.l1_size = (1u << 21) - 1;
    CHECK(parse(s) == Status::Corrupt); // L1 too small for the disk
    s.l1_size = (32u << 20) / 8 + 1;
    CHECK(parse(s) == Status::TooLarge);
    s.l1_size = 0;
    s.size = 1ull << 63; // needs 2^34 L1 entries: qemu's "Image is too big"
    CHECK(parse(s) == Status::TooLarge);
    s.size = ~0ull;
    CHECK(parse(s) == Status::TooLarge);
    s.size = 1 << 20;

    auto img = s.build();
    put_be(img, 56, (8u << 20) / 65536 + 1, 4); // refcount table clusters
    CHECK(parse(img, &h) == Status::TooLarge);
    put_be(img, 56, 0, 4);
    CHECK(parse(img, &h) == Status::Corrupt);
    put_be(img, 56, 1, 4);
    put_be(img, 48, 65536 + 512, 8); // unaligned refcount table
    CHECK(parse(img, &h) == Status::Corrupt);
    put_be(img, 48, 0x7fffffffffff0000ull, 8); // end overflows int64
    CHECK(parse(img, &h) == Status::Corrupt);
    put_be(img, 48, 65536, 8);
    put_be(img, 60, 65537, 4);
    CHECK(parse(img, &h) == Status::TooLarge);
    put_be(img, 60, 0, 4);
    put_be(img, 64, 100, 8); // qemu validates the offset even with no snapshots
    CHECK(parse(img, &h) == Status::Corrupt);
    put_be(img, 64, 0, 8);
    put_be(img, 40, 3 * 65536 + 8, 8); // unaligned L1
    CHECK(parse(img, &h) == Status::Corrupt);
}

TEST_CASE("bad magic and all-zero header") {
    std::vector<std::uint8_t> zeros(112, 0);
    Qcow2Header h;
    CHECK(parse(zeros, &h) == Status::Corrupt);
    auto img = ImageSpec{}.build();
    img[3] = 0xfa;
    CHECK(parse(img, &h) == Status::Corrupt);
}

TEST_CASE("refusals carry qemu-img's words") {
    auto why = [](const std::vector<std::uint8_t>& img) {
        Qcow2HeaderDisk d{};
        std::memcpy(&d, img.data(), std::min(img.size(), sizeof d));
        Qcow2Header h;
        HeaderProblem p;
        qcow2_header_parse(d, &h, &p);
        return std::string(p.text, p.len);
    };
    ImageSpec s;
    auto img = s.build();
    put_be(img, 36, 0, 4); // l1_size
    CHECK(why(img) == "L1 table is too small");
    img = s.build();
    put_be(img, 36, 0x400001, 4);
    CHECK(why(img) == "Active L1 table too large");
    img = s.build();
    put_be(img, 72, 0x8000000000000120ull, 8);
    CHECK(why(img) == "Unsupported qcow2 feature(s): Unknown incompatible feature: 8000000000000120");
    img = s.build();
    put_be(img, 60, 0x10001, 4); // nb_snapshots
    CHECK(why(img) == "Snapshot table too large");
    img = s.build();
    put_be(img, 20, 22, 4); // cluster_bits
    CHECK(why(img) == "Unsupported cluster size: 2^22");
    img = s.build();
    put_be(img, 24, 0xffffffffffffffffull, 8); // size beyond int64: instar's limit, named
    CHECK(why(img).rfind("virtual size 18446744073709551615 exceeds instar's QCOW2_MAX_VIRTUAL_SIZE", 0) == 0);
    CHECK(why(s.build()).empty());
}
