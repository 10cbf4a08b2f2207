// End-to-end tests of qcow2 info through the real encoder and host decoder, and hostile images.
#include <doctest/doctest.h>

#include "hosted_support.h"
#include "qcow2_format.h"
#include "qcow2_test_image.h"

#include <boost/json.hpp>

#include <string>

using namespace instar;
using instar::guest::Status;
using qcow2::test::ImageSpec;
using qcow2::test::put_be;

namespace {

hosted::HostedInfo run(const std::vector<std::uint8_t>& img, std::size_t budget = 8u << 20) {
    hosted::MemoryDevice dev(img);
    return hosted::run_info(qcow2::info, dev, {}, budget);
}

boost::json::object json_of(const std::vector<std::uint8_t>& img) {
    auto r = run(img);
    REQUIRE(r.status == Status::Ok);
    REQUIRE(r.decode_error.empty());
    return hosted::debug_json(r.info).as_object();
}

bool probe(const std::vector<std::uint8_t>& img) {
    hosted::MemoryDevice dev(img);
    bool match = true;
    REQUIRE(qcow2::probe(dev, &match) == Status::Ok);
    return match;
}

} // namespace

TEST_CASE("probe: qcow2 v2/v3 yes, qcow v1 and garbage no") {
    CHECK(probe(ImageSpec{}.build()));
    auto img = ImageSpec{}.build();
    put_be(img, 4, 1, 4);
    CHECK_FALSE(probe(img));
    CHECK_FALSE(probe({}));
    CHECK_FALSE(probe({'Q', 'F', 'I', 0xfb}));
    CHECK_FALSE(probe(std::vector<std::uint8_t>(4096, 0)));
}

TEST_CASE("plain v3 image") {
    auto j = json_of(ImageSpec{}.build());
    CHECK(j["format"] == "qcow2");
    CHECK(j["virtual-size"] == 1048576);
    CHECK(j["cluster-size"] == 65536);
    CHECK(j["encrypted"] == false);
    CHECK(j["dirty-flag"] == false);
    CHECK(j["files"].as_array().empty());
    CHECK(j["snapshots"].as_array().empty());
    auto expected = boost::json::parse(R"({"type":"qcow2","data":{"compat":"1.1","extended-l2":false,
        "lazy-refcounts":false,"corrupt":false,"refcount-bits":16,"compression-type":"zlib"}})");
    CHECK(j["format-specific"] == expected);
    CHECK(boost::json::serialize(j["format-specific"].as_object()["data"]) ==
          R"({"compat":"1.1","extended-l2":false,"lazy-refcounts":false,"corrupt":false,"refcount-bits":16,"compression-type":"zlib"})");
}

TEST_CASE("v2 image: compat 0.10, no v3 keys") {
    ImageSpec s;
    s.version = 2;
    auto j = json_of(s.build());
    CHECK(boost::json::serialize(j["format-specific"].as_object()["data"]) ==
          R"({"compat":"0.10","refcount-bits":16,"compression-type":"zlib"})");
    CHECK(j["dirty-flag"] == false);
}

TEST_CASE("features: dirty, corrupt, lazy refcounts, extended L2, zstd, refcount bits, data file") {
    ImageSpec s;
    s.incompatible = 0x1f;
    s.compatible = 1;
    s.autoclear = 2;
    s.refcount_order = 0;
    s.compression_type = 1;
    s.size = 1000; // qemu reports whole sectors
    s.extensions.push_back({0x44415441, {'d', '.', 'r', 'a', 'w'}});
    auto j = json_of(s.build());
    CHECK(j["dirty-flag"] == true);
    CHECK(j["virtual-size"] == 512);
    CHECK(boost::json::serialize(j["format-specific"].as_object()["data"]) ==
          R"({"compat":"1.1","data-file":"d.raw","data-file-raw":true,"extended-l2":true,"lazy-refcounts":true,)"
          R"("corrupt":true,"refcount-bits":1,"compression-type":"zstd"})");
    REQUIRE(j["files"].as_array().size() == 1);
    CHECK(j["files"].as_array()[0] == boost::json::parse(R"({"role":"data-file","name":"d.raw"})"));
}

TEST_CASE("data file bit without a name is refused; a name without the bit is reported but not opened") {
    ImageSpec s;
    s.incompatible = 4;
    CHECK(run(s.build()).status == Status::Corrupt);
    s.incompatible = 0;
    s.extensions.push_back({0x44415441, {'x'}});
    auto j = json_of(s.build());
    CHECK(j["files"].as_array().empty());
    CHECK(j["format-specific"].as_object()["data"].as_object()["data-file"] == "x");
    CHECK_FALSE(j["format-specific"].as_object()["data"].as_object().contains("data-file-raw"));
}

TEST_CASE("backing file and format") {
    ImageSpec s;
    s.backing = "base.qcow2";
    s.extensions.push_back({0xe2792aca, {'q', 'c', 'o', 'w', '2'}});
    auto j = json_of(s.build());
    CHECK(j["backing-filename-format"] == "qcow2");
    CHECK(j["files"] == boost::json::parse(R"([{"role":"backing","name":"base.qcow2"}])"));
    s.extensions.clear();
    j = json_of(s.build());
    CHECK_FALSE(j.contains("backing-filename-format"));
    s.backing = std::string(1024, 'a');
    CHECK(run(s.build()).status == Status::Corrupt);
    s.backing = std::string(1023, 'a');
    CHECK(run(s.build()).status == Status::Ok);
}

TEST_CASE("snapshots") {
    ImageSpec s;
    s.snapshots.push_back({"1", "s1", 1795252344, 414102000, 0, 0, qcow2::test::snapshot_extra(0, 1 << 20, 0)});
    s.snapshots.push_back({"2", "with vm", 1795252345, 5, 2500000000ull, 0, qcow2::test::snapshot_extra(12345, 1 << 20, 777)});
    s.snapshots.push_back({"3", "v2 style", 7, 8, 9, 99, {}});
    auto j = json_of(s.build());
    CHECK(j["snapshots"] == boost::json::parse(R"([
      {"id":"1","name":"s1","vm-state-size":0,"date-sec":1795252344,"date-nsec":414102000,"vm-clock-sec":0,"vm-clock-nsec":0,"icount":0},
      {"id":"2","name":"with vm","vm-state-size":12345,"date-sec":1795252345,"date-nsec":5,"vm-clock-sec":2,"vm-clock-nsec":500000000,"icount":777},
      {"id":"3","name":"v2 style","vm-state-size":99,"date-sec":7,"date-nsec":8,"vm-clock-sec":0,"vm-clock-nsec":9}])"));
}

TEST_CASE("bitmaps") {
    ImageSpec s;
    s.add_bitmaps({qcow2::test::bitmap_entry("b1", 2, 16), qcow2::test::bitmap_entry("b2", 0, 20),
                   qcow2::test::bitmap_entry("b3", 3, 9)});
    auto j = json_of(s.build());
    auto data = j["format-specific"].as_object()["data"].as_object();
    CHECK(data["bitmaps"] == boost::json::parse(R"([{"name":"b1","granularity":65536,"flags":["auto"]},
        {"name":"b2","granularity":1048576,"flags":[]},{"name":"b3","granularity":512,"flags":["in-use","auto"]}])"));
    // count mismatch with the directory
    auto img = s.build();
    put_be(img, 112 + 8, 2, 4);
    CHECK(run(img).status == Status::Corrupt);
    put_be(img, 112 + 8, 4, 4);
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("AES and LUKS encryption") {
    ImageSpec s;
    s.crypt_method = 1;
    auto j = json_of(s.build());
    CHECK(j["encrypted"] == true);
    CHECK(j["format-specific"].as_object()["data"].as_object()["encrypt"] == boost::json::parse(R"({"format":"aes"})"));
    s = ImageSpec{};
    s.add_luks();
    j = json_of(s.build());
    CHECK(j["encrypted"] == true);
    CHECK(boost::json::serialize(j["format-specific"].as_object()["data"].as_object()["encrypt"]) ==
          R"({"format":"luks","cipher-alg":"aes-256","cipher-mode":"xts","ivgen-alg":"plain64","hash-alg":"sha256",)"
          R"("detached-header":false,"payload-offset":2068480,"master-key-iters":1538,)"
          R"("uuid":"141d80a3-f8ac-4172-b864-55637b48cb20","slots":[{"active":true,"iters":8036,"stripes":4000,"key-offset":4096},)"
          R"({"active":false,"key-offset":262144},{"active":false,"key-offset":520192},{"active":false,"key-offset":778240},)"
          R"({"active":false,"key-offset":1036288},{"active":false,"key-offset":1294336},{"active":false,"key-offset":1552384},)"
          R"({"active":false,"key-offset":1810432}]})");
    // LUKS without its header extension, and a header window too small for the LUKS header
    s.extensions.clear();
    CHECK(run(s.build()).status == Status::Corrupt);
    s = ImageSpec{};
    s.add_luks();
    put_be(s.extensions[0].second, 8, 591, 8);
    CHECK(run(s.build()).status == Status::Corrupt);
}

TEST_CASE("hostile: 1 PiB virtual size in a tiny file uses bounded memory") {
    ImageSpec s;
    s.size = 1ull << 50;
    auto img = s.build();
    hosted::MemoryDevice dev(img);
    auto r = hosted::run_info(qcow2::info, dev, {}, 1u << 20); // 1 MiB budget
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (1ull << 50));
    CHECK(dev.reads() < 10);
}

TEST_CASE("hostile: tables past the end of the file") {
    ImageSpec s;
    s.snapshots.push_back({"1", "s", 0, 0, 0, 0, {}});
    auto img = s.build();
    put_be(img, 64, 1ull << 40, 8);
    CHECK(run(img).status == Status::Corrupt);
    s = ImageSpec{};
    s.add_bitmaps({qcow2::test::bitmap_entry("b1", 2, 16)});
    img = s.build();
    put_be(img, 112 + 8 + 16, 1ull << 40, 8);
    CHECK(run(img).status == Status::Corrupt);
    s = ImageSpec{};
    s.add_luks();
    img = s.build();
    put_be(img, 112 + 8, 1ull << 40, 8);
    CHECK(run(img).status == Status::Corrupt);
}

TEST_CASE("hostile: snapshot table larger than 64 MiB, 65536 snapshots of garbage") {
    ImageSpec s;
    s.snapshots.push_back({"1", "s", 0, 0, 0, 0, {}});
    auto img = s.build();
    put_be(img, 60, 65536, 4);
    // Every entry after the first reads zeros from the rest of the file, then runs past its end.
    auto r = run(img, 1u << 20);
    CHECK(r.status == Status::Corrupt);
    // Entries with maximal names fill 64 MiB long before 65536 entries: TooLarge, bounded memory.
    ImageSpec big;
    big.cluster_bits = 9;
    auto b = big.build();
    const std::size_t table = 4 * 512;
    b.resize(table + (66u << 20));
    put_be(b, 60, 65536, 4);
    put_be(b, 64, table, 8);
    constexpr std::size_t entry = (40 + 2 * 0xffff + 7) / 8 * 8;
    for (std::size_t off = table; off + 40 <= b.size(); off += entry) {
        put_be(b, off + 12, 0xffff, 2);
        put_be(b, off + 14, 0xffff, 2);
    }
    hosted::MemoryDevice dev(b);
    auto rb = hosted::run_info(qcow2::info, dev, {}, 1u << 20);
    CHECK(rb.status == Status::TooLarge);
}

TEST_CASE("hostile: truncation at every structure boundary gives a clean status") {
    ImageSpec s;
    s.cluster_bits = 9;
    s.backing = "b";
    s.snapshots.push_back({"1", "s1", 1, 2, 3, 4, qcow2::test::snapshot_extra(5, 6, 7)});
    s.add_bitmaps({qcow2::test::bitmap_entry("b1", 2, 16, 0x600)});
    s.add_luks();
    const auto img = s.build();
    REQUIRE(run(img).status == Status::Ok);
    for (std::size_t len = 0; len <= img.size(); len += (len < 8 * 512 ? 1 : 512)) {
        std::vector<std::uint8_t> t(img.begin(), img.begin() + len);
        auto r = run(t, 1u << 20);
        CHECK((r.status == Status::Ok || r.status == Status::Corrupt || r.status == Status::Unsupported ||
               r.status == Status::TooLarge));
        CHECK(r.decode_error.empty());
    }
}

TEST_CASE("hostile: single bit flips of the header cluster never crash") {
    ImageSpec s;
    s.snapshots.push_back({"1", "s1", 1, 2, 3, 4, qcow2::test::snapshot_extra(5, 6, 7)});
    s.add_bitmaps({qcow2::test::bitmap_entry("b1", 2, 16)});
    s.extensions.push_back({0xe2792aca, {'r', 'a', 'w'}});
    s.backing = "base";
    const auto img = s.build();
    for (std::size_t byte = 0; byte < 400; ++byte)
        for (int bit = 0; bit < 8; ++bit) {
            auto m = img;
            m[byte] ^= static_cast<std::uint8_t>(1u << bit);
            auto r = run(m, 4u << 20);
            CHECK(r.decode_error.empty());
        }
}
